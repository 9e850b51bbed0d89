"""Confidence intervals by bootstrap (scipy), and mean ± t-interval across seeds (clipped to range)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats


def bootstrap_ci(
    samples: Sequence[Sequence[float]],
    statistic: Callable[..., float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(value, ci_low, ci_high)`` of ``statistic(*samples)`` by percentile bootstrap.

    Each sample is resampled independently (e.g. one sample per group for a gap
    between groups). With ``n_resamples=0`` or a sample of size < 2 the interval
    collapses to the point estimate.
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    value = float(statistic(*arrays))
    if n_resamples == 0 or any(a.size < 2 for a in arrays):
        return value, value, value
    if all(np.ptp(a) == 0 for a in arrays):
        return value, value, value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            [a for a in arrays],
            lambda *xs: statistic(*xs),
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=False,
            paired=False,
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
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
