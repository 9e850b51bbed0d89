"""Service quality per group and the gap between groups (SPEC section 2)."""

from __future__ import annotations

import numpy as np

from biasloop.metrics import scpl
from biasloop.metrics.loop.base import Estimate, LoopMetricContext, register_loop_metric


def _samples(context: LoopMetricContext) -> list[list[float]]:
    return list(context.by_group(context.quality).values())


@register_loop_metric("quality")
def quality(context: LoopMetricContext) -> list[Estimate]:
    """``quality[g] = mean_{x ∈ E_g} q(g, x, M(x))`` per group; overall ``(1/|G|) Σ_g quality[g]``."""
    estimates = [Estimate(*context.interval([values], np.mean), group=group, n=len(values))
                 for group, values in context.by_group(context.quality).items()]
    samples = _samples(context)
    overall = context.interval(samples, lambda *xs: float(np.mean([np.mean(x) for x in xs])))
    return [*estimates, Estimate(*overall, n=sum(len(v) for v in samples))]


@register_loop_metric("disparate_bias")
def disparate_bias(context: LoopMetricContext) -> list[Estimate]:
    """``max_g quality[g] − min_g quality[g]``, with a bootstrap interval over responses."""
    samples = _samples(context)
    return [Estimate(*context.interval(samples, scpl.disparate_bias), n=sum(map(len, samples)))]


@register_loop_metric("disparate_ratio")
def disparate_ratio(context: LoopMetricContext) -> list[Estimate]:
    """``min_g quality[g] / max_g quality[g]`` (1 when all are 0), with a bootstrap interval."""
    samples = _samples(context)
    return [Estimate(*context.interval(samples, scpl.disparate_ratio), n=sum(map(len, samples)))]
