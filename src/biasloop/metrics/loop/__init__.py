"""Loop metrics as plug-ins: one module per family, one registration per metric.

The built-ins (``biasloop list metric``):

* :mod:`.quality`: ``quality``, ``disparate_bias``, ``disparate_ratio``;
* :mod:`.attributes`: ``preference_bias``, ``majority_lean``, ``attribute_share``,
  ``fallback_uniform_attributes``;
* :mod:`.population`: ``group_share``, ``fallback_uniform_shares``;
* :mod:`.text`: ``distinct_2``, ``mean_length``;
* :mod:`.perplexity`: ``perplexity``;
* :mod:`.curation`: ``acceptance_rate``, ``curation_fallbacks``.

The formulas themselves are the pure functions of :mod:`biasloop.metrics.scpl`.
"""

from biasloop.metrics.loop.base import (
    LOOP_METRICS,
    Estimate,
    LoopMetric,
    LoopMetricContext,
    compute_loop_metrics,
    default_loop_metrics,
    register_loop_metric,
)

__all__ = [
    "LOOP_METRICS",
    "Estimate",
    "LoopMetric",
    "LoopMetricContext",
    "compute_loop_metrics",
    "default_loop_metrics",
    "register_loop_metric",
]
