"""Perplexity of the current model on held-out real text (model collapse)."""

from __future__ import annotations

from biasloop.metrics.loop.base import Estimate, LoopMetricContext, register_loop_metric


@register_loop_metric("perplexity")
def perplexity(context: LoopMetricContext) -> list[Estimate]:
    """``exp(−Σ log p(tokens) / Σ #tokens)`` of ``M_t`` on held-out real references."""
    value, texts = context.perplexity
    return [Estimate(value, n=texts)]
