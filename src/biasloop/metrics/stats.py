"""Confidence intervals by bootstrap (scipy), and mean ± t-interval across seeds."""

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


def mean_ci_across_seeds(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval ``mean ± t_{(1+c)/2, n-1} · s/√n`` over seeds."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if array.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf((1 + confidence) / 2, array.size - 1) * array.std(ddof=1) / np.sqrt(array.size))
    return mean, mean - half, mean + half
