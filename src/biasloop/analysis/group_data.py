"""Group-data misalignment: which groups texts are about, against target proportions.

Each text's cues (gender words, first names, culture terms; see
:mod:`biasloop.resources.cues`) are counted per axis; a text *is about* group ``g``
on an axis when all of its cues on that axis point to ``g`` (texts with no cue,
or cues of several groups, are counted apart as ``none`` and ``mixed``).

For a set of texts with ``n_g`` texts about each group ``g`` of an axis
(``N = Σ n_g``) and target proportions ``π_g``, the detected share is
``n_g / N`` and the misalignment is tested with Pearson's chi-square
goodness-of-fit test, ``χ² = Σ_g (n_g − N π_g)² / (N π_g)`` on ``G − 1`` degrees
of freedom (``scipy.stats.chisquare``). The total variation distance
``½ Σ_g |n_g / N − π_g|`` says how far apart the two are.

Two sets of texts are read: what a model writes for *neutral* prompts (no group
asked for: any skew is the model's), and the augmented data, against the groups
its prompts targeted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import chisquare

from biasloop.resources.cues import CueLexicon, detect_groups, dominant_group


def about_counts(
    texts: Sequence[str], lexicons: Sequence[CueLexicon], axis: str
) -> Counter[str]:
    """How many texts are about each group of ``axis`` (plus ``none`` and ``mixed``)."""
    return Counter(dominant_group(detect_groups(t, lexicons).get(axis)) for t in texts)


def proportion_test(
    counts: Mapping[str, int], targets: Mapping[str, float]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Detected against target shares per group, and the chi-square test over the groups."""
    groups = list(targets)
    observed = np.array([counts.get(g, 0) for g in groups], dtype=float)
    total = observed.sum()
    target = np.array([targets[g] for g in groups], dtype=float)
    target = target / target.sum()
    table = pd.DataFrame(
        {
            "group": groups,
            "texts": observed.astype(int),
            "detected_share": observed / total if total else np.nan,
            "target_share": target,
        }
    )
    if total:
        statistic, p_value = chisquare(observed, total * target)
        distance = 0.5 * float(np.abs(observed / total - target).sum())
    else:
        statistic = p_value = distance = float("nan")
    summary = {
        "texts_with_group": int(total),
        "texts_none": int(counts.get("none", 0)),
        "texts_mixed": int(counts.get("mixed", 0)),
        "chi2": float(statistic),
        "p_value": float(p_value),
        "total_variation": distance,
    }
    return table, summary
