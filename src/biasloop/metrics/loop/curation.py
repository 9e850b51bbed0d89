"""What the mitigation's curation kept of the served queries' candidates."""

from __future__ import annotations

from biasloop.metrics.loop.base import Estimate, LoopMetricContext, register_loop_metric


@register_loop_metric("acceptance_rate")
def acceptance_rate(context: LoopMetricContext) -> list[Estimate]:
    """``#accepted queries of g / #served queries of g``, per group (none after the last model)."""
    if context.curation is None:
        return []
    return [Estimate(rate, group=group, n=sum(1 for s in context.served_groups if s == group))
            for group, rate in context.curation["acceptance_rate"].items()]


@register_loop_metric("curation_fallbacks")
def curation_fallbacks(context: LoopMetricContext) -> list[Estimate]:
    """Per group, how often curation fell back (rows ``fallback_<name>``, e.g. a group dropped)."""
    if context.curation is None:
        return []
    counts = {(f["name"], f["group"]): f["count"] for f in context.curation.get("fallbacks", [])}
    return [Estimate(counts.get((name, group), 0), group=group, metric=f"fallback_{name}")
            for name in sorted({n for n, _ in counts}) for group in context.groups]
