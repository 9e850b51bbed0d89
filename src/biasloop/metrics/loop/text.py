"""Properties of the evaluation responses' text: diversity and length."""

from __future__ import annotations

from biasloop.metrics import scpl
from biasloop.metrics.loop.base import Estimate, LoopMetricContext, register_loop_metric


@register_loop_metric("distinct_2")
def distinct_2(context: LoopMetricContext) -> list[Estimate]:
    """``distinct-2 = #unique bigrams / #bigrams`` over all evaluation responses (collapse)."""
    return [Estimate(scpl.distinct_n(context.responses, 2), n=len(context.responses))]


@register_loop_metric("mean_length")
def mean_length(context: LoopMetricContext) -> list[Estimate]:
    """Mean response length in words, ``mean_y |y|``, per group and over all responses."""
    texts = context.by_group(context.responses)
    return [
        *(Estimate(scpl.mean_length(t), group=g, n=len(t)) for g, t in texts.items()),
        Estimate(scpl.mean_length(context.responses), n=len(context.responses)),
    ]
