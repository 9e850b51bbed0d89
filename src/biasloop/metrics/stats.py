"""Confidence intervals: one percentile bootstrap, and mean ± t-interval across seeds (clipped to range)."""

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
