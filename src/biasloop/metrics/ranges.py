"""The range every reported metric can take, so intervals never leave it.

A mean over seeds ± a Student-t half-width can leave a bounded metric's range
(a disparate bias of [0.80, 1.05]); :func:`biasloop.metrics.stats.mean_ci_across_seeds`
clips such an interval to the range given here and marks the row as clipped.

SCPL metrics are listed by name. An inheritance metric is named
``<evaluation>.<statistic>`` with optional suffixes, and its range follows from
the statistic's:

* ``…_gap`` of a statistic in ``[a, b]`` lies in ``[0, b − a]``;
* ``…_ratio`` lies in ``[0, 1]``;
* ``…_p_value`` lies in ``[0, 1]``.

    >>> metric_range("disparate_bias")
    (0.0, 1.0)
    >>> metric_range("bbq.bias_score_ambiguous_gap")
    (0.0, 2.0)
    >>> metric_range("crows_pairs.percent_stereotype")
    (0.0, 100.0)
    >>> metric_range("hiring.yes_log_odds") is None
    True
"""

from __future__ import annotations

import math

UNIT = (0.0, 1.0)
SIGNED_UNIT = (-1.0, 1.0)
PERCENT = (0.0, 100.0)
NON_NEGATIVE = (0.0, math.inf)

#: SCPL metrics (rows of the loop's ``metrics.parquet``).
LOOP_RANGES: dict[str, tuple[float, float]] = {
    "quality": UNIT,
    "disparate_bias": UNIT,
    "disparate_ratio": UNIT,
    "preference_bias": UNIT,
    "majority_lean": SIGNED_UNIT,
    "attribute_share": UNIT,
    "group_share": UNIT,
    "acceptance_rate": UNIT,
    "distinct_2": UNIT,
    "mean_length": NON_NEGATIVE,
    "perplexity": (1.0, math.inf),
}

#: Statistics of the downstream evaluations, by statistic name.
STATISTIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": UNIT,
    "accuracy_ambiguous": UNIT,
    "accuracy_disambiguated": UNIT,
    "macro_f1": UNIT,
    "selection_rate": UNIT,
    "parse_failure_rate": UNIT,
    "negative_adjective_share": UNIT,
    "bias_score_ambiguous": SIGNED_UNIT,
    "bias_score_disambiguated": SIGNED_UNIT,
    "pro_anti_gap": SIGNED_UNIT,
    "percent_stereotype": PERCENT,
    "ss": PERCENT,
    "lms": PERCENT,
    "icat": PERCENT,
    "mean_salary": NON_NEGATIVE,
}


def metric_range(metric: str) -> tuple[float, float] | None:
    """``(low, high)`` that ``metric`` always lies in, or None when it is unbounded or unknown."""
    if metric.startswith("fallback_"):
        return NON_NEGATIVE  # counts of fallbacks
    if metric in LOOP_RANGES:
        return LOOP_RANGES[metric]
    if metric.endswith("_p_value"):
        return UNIT
    statistic = metric.rsplit(".", 1)[-1]
    if statistic.endswith("_ratio"):
        return UNIT
    if statistic.endswith("_gap") and statistic[: -len("_gap")] in STATISTIC_RANGES:
        low, high = STATISTIC_RANGES[statistic[: -len("_gap")]]
        return 0.0, high - low
    return STATISTIC_RANGES.get(statistic)
