"""Across-seed summaries of the tidy metric table (one implementation for runs and comparisons)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from biasloop.metrics.ranges import metric_range
from biasloop.metrics.stats import mean_ci_across_seeds

SUMMARY_KEYS = ("generation", "condition")


def summarize_seeds(
    metrics: pd.DataFrame, *, confidence: float = 0.95, dims: Sequence[str] = ()
) -> pd.DataFrame:
    """Mean ± Student-t interval over seeds per generation × condition × dims × group × metric.

    The interval is clipped to the metric's range (:func:`biasloop.metrics.ranges.metric_range`)
    and ``ci_clipped`` says where it was. Seeds whose value is NaN are left out. A row
    with a single seed keeps that seed's own (bootstrap) interval. Columns:
    ``generation, condition, *dims, group, metric, value, ci_low, ci_high, ci_clipped, seeds``.
    """
    keys = [*SUMMARY_KEYS, *dims, "group", "metric"]
    columns = [*keys, "value", "ci_low", "ci_high", "ci_clipped", "seeds"]
    rows = []
    for key, frame in metrics.groupby(keys, sort=False, dropna=False):
        defined = frame.dropna(subset=["value"])
        if len(defined) < 2:
            one = defined if len(defined) else frame
            value, low, high, clipped = (float(one["value"].mean()), float(one["ci_low"].mean()),
                                         float(one["ci_high"].mean()), False)
        else:
            value, low, high, clipped = mean_ci_across_seeds(
                defined["value"].tolist(), confidence=confidence,
                bounds=metric_range(str(dict(zip(keys, key))["metric"])),
            )
        rows.append({**dict(zip(keys, key)), "value": value, "ci_low": low, "ci_high": high,
                     "ci_clipped": clipped, "seeds": int(defined["seed"].nunique())})
    return pd.DataFrame(rows, columns=columns)
