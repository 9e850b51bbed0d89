"""How the report words things: numbers, intervals, p-values, metric names and notes.

One convention for every card, table, label and caption: three decimals (fewer for
large values), ``—`` for a missing value, ``n/a`` for an undefined p-value.

    >>> fmt(0.12345), fmt(1234.5), fmt(float("nan")), fmt_p(0.0002), fmt_delta(0.5)
    ('0.123', '1,234', '—', '< 0.001', '+0.500')
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MISSING = "—"
CLIPPED_MARK = "†"  # an across-seed interval clipped to its metric's range

# What each known metric is, in a few words (formulas in docs/concepts.md).
METRIC_NOTES = {
    "preference_bias": "total variation between the model's and the real references' attribute "
    "distributions on group-neutral prompts (0 = no lean)",
    "disparate_bias": "max − min group quality",
    "disparate_ratio": "min / max group quality (1 = equal service)",
    "quality": "mean service quality q; overall = mean over groups",
    "majority_lean": "P_model(a = majority) − P_ref(a = majority)",
    "attribute_share": "share of responses whose attribute is the group",
    "group_share": "group shares p_t(g) of served queries",
    "acceptance_rate": "accepted / served queries",
    "distinct_2": "unique / total word bigrams of responses",
    "perplexity": "perplexity on held-out real references",
    "mean_length": "mean words per response",
}
# What each fallback means (rows ``fallback_*``, counted by the loop).
FALLBACK_NOTES = {
    "fallback_uniform_shares": "every group had left (N = 0); the generation served uniform shares",
    "fallback_uniform_model_attributes": "no model response had an attribute; the model's "
    "attribute distribution was taken as uniform",
    "fallback_uniform_reference_attributes": "no reference response had an attribute; the "
    "reference distribution was taken as uniform",
    "fallback_group_dropped": "balanced rejection accepted nothing from this group, so its "
    "target share went to the other groups",
}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any) -> str:
    """A number as people read it: 3 decimals, fewer for large values, '—' for missing."""
    if _missing(value):
        return MISSING
    if not isinstance(value, (int, float)):
        return str(value)
    magnitude = abs(value)
    if magnitude < 0.0005:
        value = 0.0  # no "-0.000"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}"


def fmt_ci(low: Any, high: Any, clipped: Any = False) -> str:
    """``[low, high]``, marked when the interval was clipped to its metric's range.

    ``clipped`` counts when it is a true boolean, Python's or NumPy's (a row read from a
    frame carries ``numpy.bool_``); a missing flag (NaN) does not.
    """
    marked = isinstance(clipped, (bool, np.bool_)) and bool(clipped)
    return f"[{fmt(low)}, {fmt(high)}]" + (CLIPPED_MARK if marked else "")


def fmt_p(value: Any) -> str:
    if _missing(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def fmt_delta(value: Any) -> str:
    text = fmt(value)
    return text if text == MISSING or text.startswith("-") else f"+{text}"


def short_number(value: object) -> str:
    """A setting's value in a label or a sentence: ``0.5``, ``1e-05``, ``3``, ``static``."""
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def metric_title(metric: str, group: str = "") -> str:
    """A metric's name in a title: ``disparate bias``, ``quality (female)``."""
    return metric.replace("_", " ") + (f" ({group})" if group else "")


def significant(p_value: float) -> bool:
    """Below 0.05 (an undefined p-value never is)."""
    return not math.isnan(p_value) and p_value < 0.05


def breakable(label: str) -> str:
    """A label that may wrap after its commas (a zero-width space, still plain text)."""
    return label.replace(",", ",\u200b")
