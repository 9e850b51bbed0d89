"""Significance tests: each γ against γ = 0 (paired by item) and between groups.

Both tests work on per-item records and any statistic of a list of records, so
they apply unchanged to accuracy, macro-F1, bias scores or SS.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

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
