"""The user population's state: group shares ``p_t`` (an input of generation ``t``)."""

from __future__ import annotations

from biasloop.metrics.loop.base import Estimate, LoopMetricContext, register_loop_metric


@register_loop_metric("group_share")
def group_share(context: LoopMetricContext) -> list[Estimate]:
    """``p_t(g) = N_t(g) / Σ_h N_t(h)``, the share of served queries from group ``g``."""
    return [Estimate(context.shares[g], group=g) for g in context.groups]


@register_loop_metric("fallback_uniform_shares")
def fallback_uniform_shares(context: LoopMetricContext) -> list[Estimate]:
    """1 when every group has left (``Σ N_t = 0``) and shares fell back to uniform, else 0."""
    return [Estimate(float(context.extinct))]
