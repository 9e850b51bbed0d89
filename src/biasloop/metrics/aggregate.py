"""Across-seed summaries of the tidy metric table."""

from __future__ import annotations

import pandas as pd

from biasloop.metrics.stats import mean_ci_across_seeds


def summarize_seeds(metrics: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Mean ± Student-t interval over seeds for each generation × condition × group × metric.

    With a single seed the row keeps that seed's own (bootstrap) interval. Columns:
    ``generation, condition, group, metric, value, ci_low, ci_high, seeds``.
    """
    rows = []
    keys = ["generation", "condition", "group", "metric"]
    for key, frame in metrics.groupby(keys, sort=False, dropna=False):
        values = frame["value"].dropna().tolist()
        if len(frame) == 1 or len(values) < 2:
            value, low, high = (float(frame["value"].mean()), float(frame["ci_low"].mean()),
                                float(frame["ci_high"].mean()))
        else:
            value, low, high = mean_ci_across_seeds(values, confidence=confidence)
        rows.append({**dict(zip(keys, key)), "value": value, "ci_low": low, "ci_high": high,
                     "seeds": int(frame["seed"].nunique())})
    return pd.DataFrame(rows, columns=[*keys, "value", "ci_low", "ci_high", "seeds"])
