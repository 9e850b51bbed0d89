"""The statistics layer of both studies and the report.

* Intervals: one percentile bootstrap (:func:`bootstrap_interval`) and the mean ±
  t-interval across seeds, clipped to the metric's range (:func:`mean_ci_across_seeds`).
* Tests on per-item records, for any statistic of a list of records (accuracy,
  macro-F1, bias scores, SS):

  * :func:`paired_permutation_p_value` (sign-flip test). The two conditions answered
    the same items. Under the null hypothesis the condition labels of each item's
    pair of answers are exchangeable, so each pair is swapped with probability ½ and
    the statistic difference recomputed ``B`` times:
    ``p = (1 + #{|d*| ≥ |d|}) / (1 + B)``.
  * :func:`paired_bootstrap_p_value`. Items (pairs) are resampled with replacement
    and the difference recomputed; the two-sided percentile p-value is
    ``p = min(1, 2 · min((1 + #{d* ≤ 0}), (1 + #{d* ≥ 0})) / (1 + B))``.
  * :func:`group_permutation_p_value`. Within one condition, group labels are
    shuffled among the items (within blocks of counterfactual variants when the
    items come in blocks) and the between-group gap recomputed:
    ``p = (1 + #{gap* ≥ gap}) / (1 + B)``.

* Multiple-comparison control over a family of p-values (:func:`adjust_p_values`).

The tests are written here rather than with ``scipy.stats.permutation_test``
because they must skip resamples where the statistic is undefined (NaN) and
shuffle labels within blocks of counterfactual variants, which scipy does not do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats


def bootstrap_interval(
    samples: Sequence[Sequence[Any]],
    statistic: Callable[..., float],
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float, float]:
    """``(value, low, high)``: ``statistic(*samples)`` and its percentile-bootstrap interval.

    The one bootstrap of both studies. Each sample (one group's responses or records)
    is resampled with replacement on its own, ``n_resamples`` times from a generator
    seeded with ``seed``; the interval is the ``(1 − c)/2`` and ``(1 + c)/2``
    percentiles of the resampled statistic, so it never leaves the statistic's range.
    Resamples whose statistic is undefined (NaN: e.g. no anti-stereotypical item
    drawn) are skipped; when more than half are, the interval is NaN.
    ``scipy.stats.bootstrap`` has no such rule, hence this loop. With
    ``n_resamples = 0``, a sample smaller than 2 or an undefined value the interval
    collapses to the value.

        >>> value, low, high = bootstrap_interval([[0, 1, 1, 1]], np.mean, n_resamples=200,
        ...                                       confidence=0.9, seed=0)
        >>> value, 0.0 <= low <= value <= high <= 1.0
        (0.75, True)
    """
    value = float(statistic(*samples))
    if n_resamples == 0 or any(len(s) < 2 for s in samples) or math.isnan(value):
        return value, value, value
    generator = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        resampled = [[s[int(i)] for i in generator.integers(0, len(s), len(s))] for s in samples]
        draws.append(statistic(*resampled))
    values = np.asarray(draws, dtype=float)
    values = values[~np.isnan(values)]
    if values.size * 2 < n_resamples:
        return value, math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return value, float(low), float(high)


def mean_ci_across_seeds(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float, float, bool]:
    """Mean over seeds and its Student-t interval, kept inside the metric's range.

    ``mean ± t_{(1+c)/2, n−1} · s/√n``. A bounded metric (a share, a rate, a TV
    distance, a gap) cannot lie outside ``bounds``, so an interval reaching past
    them is clipped to them; clipping removes only impossible values and keeps the
    interval's coverage. Returns ``(mean, low, high, clipped)``.

        >>> mean, low, high, clipped = mean_ci_across_seeds([0.9, 1.0], bounds=(0.0, 1.0))
        >>> round(mean, 3), round(low, 3), high, clipped
        (0.95, 0.315, 1.0, True)
    """
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if array.size < 2:
        return mean, mean, mean, False
    half = float(stats.t.ppf((1 + confidence) / 2, array.size - 1) * array.std(ddof=1) / np.sqrt(array.size))
    low, high = mean - half, mean + half
    if bounds is None:
        return mean, low, high, False
    clipped_low, clipped_high = max(low, float(bounds[0])), min(high, float(bounds[1]))
    return mean, clipped_low, clipped_high, (clipped_low, clipped_high) != (low, high)


#: Multiple-comparison corrections offered (statsmodels ``multipletests`` names).
CORRECTIONS = {"holm": "Holm (family-wise error)", "fdr_bh": "Benjamini–Hochberg (false discovery rate)"}


def adjust_p_values(p_values: Sequence[float], *, method: str) -> np.ndarray:
    """The family's p-values adjusted for multiple comparisons (statsmodels ``multipletests``).

    ``holm``: ``p_(i) ← max_{j≤i} min(1, (m − j + 1) · p_(j))`` over the sorted p-values,
    controlling the family-wise error; ``fdr_bh``: ``p_(i) ← min_{j≥i} min(1, m · p_(j) / j)``,
    controlling the false discovery rate. ``m`` counts the defined p-values; NaN stays NaN.

        >>> adjust_p_values([0.01, 0.04, 0.03, float("nan")], method="holm").round(3).tolist()
        [0.03, 0.06, 0.06, nan]
        >>> adjust_p_values([0.01, 0.04, 0.03], method="fdr_bh").round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r}; valid: {', '.join(CORRECTIONS)}")
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(values.shape, np.nan)
    defined = ~np.isnan(values)
    if defined.any():
        adjusted[defined] = multipletests(values[defined], method=method)[1]
    return adjusted


Record = dict[str, Any]
RecordStatistic = Callable[[Sequence[Record]], float]


def _pairs(a: Sequence[Record], b: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """Records of ``a`` and ``b`` with the same ``id``, aligned (ids in ``a``'s order)."""
    by_id = {r["id"]: r for r in b}
    kept = [r for r in a if r["id"] in by_id]
    return kept, [by_id[r["id"]] for r in kept]


def paired_permutation_p_value(
    a: Sequence[Record],
    b: Sequence[Record],
    statistic: RecordStatistic,
    *,
    resamples: int,
    seed: int,
) -> float:
    """Two-sided sign-flip permutation p-value of ``statistic(a) − statistic(b)``."""
    a, b = _pairs(a, b)
    if not a:
        return math.nan
    observed = statistic(a) - statistic(b)
    if math.isnan(observed):
        return math.nan
    generator = np.random.default_rng(seed)
    extreme = 0
    for _ in range(resamples):
        swap = generator.random(len(a)) < 0.5
        left = [y if s else x for x, y, s in zip(a, b, swap)]
        right = [x if s else y for x, y, s in zip(a, b, swap)]
        diff = statistic(left) - statistic(right)
        # Ties count as extreme (a conservative test); tolerance guards float noise.
        if not math.isnan(diff) and abs(diff) >= abs(observed) - 1e-12:
            extreme += 1
    return (1 + extreme) / (1 + resamples)


def paired_bootstrap_p_value(
    a: Sequence[Record],
    b: Sequence[Record],
    statistic: RecordStatistic,
    *,
    resamples: int,
    seed: int,
) -> float:
    """Two-sided paired-bootstrap p-value of ``statistic(a) − statistic(b)``."""
    a, b = _pairs(a, b)
    if not a:
        return math.nan
    if math.isnan(statistic(a) - statistic(b)):
        return math.nan
    generator = np.random.default_rng(seed)
    below = above = 0
    for _ in range(resamples):
        index = generator.integers(0, len(a), len(a))
        diff = statistic([a[i] for i in index]) - statistic([b[i] for i in index])
        if math.isnan(diff):
            continue
        below += diff <= 0
        above += diff >= 0
    return min(1.0, 2 * min(1 + below, 1 + above) / (1 + resamples))


def group_permutation_p_value(
    records: Sequence[Record],
    labels: Sequence[str],
    gap_statistic: Callable[[Sequence[Record], Sequence[str]], float],
    *,
    resamples: int,
    seed: int,
    blocks: Sequence[str | None] | None = None,
) -> float:
    """One-sided (gap ≥ observed) permutation p-value of a between-group gap.

    ``gap_statistic(records, labels)`` computes the gap for a labelling. With
    ``blocks``, labels are shuffled only among items of the same block.
    """
    if not records:
        return math.nan
    observed = gap_statistic(records, labels)
    if math.isnan(observed):
        return math.nan
    generator = np.random.default_rng(seed)
    labels = list(labels)
    if blocks is None or all(b is None for b in blocks):
        groups_of = [list(range(len(labels)))]
    else:
        positions: dict[Any, list[int]] = {}
        for i, block in enumerate(blocks):
            positions.setdefault(block if block is not None else f"__{i}", []).append(i)
        groups_of = list(positions.values())
    extreme = 0
    for _ in range(resamples):
        shuffled = list(labels)
        for members in groups_of:
            values = [labels[i] for i in members]
            for i, j in zip(members, generator.permutation(len(members))):
                shuffled[i] = values[int(j)]
        value = gap_statistic(records, shuffled)
        if not math.isnan(value) and value >= observed - 1e-12:
            extreme += 1
    return (1 + extreme) / (1 + resamples)


PAIRED_TESTS = {"permutation": paired_permutation_p_value, "bootstrap": paired_bootstrap_p_value}
