"""Which group the model's answers to neutral prompts favour, against the real data."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from biasloop.metrics import scpl
from biasloop.metrics.loop.base import Estimate, LoopMetricContext, register_loop_metric

log = logging.getLogger("biasloop.loop")


def _resampled(context: LoopMetricContext,
               statistic: Callable[[Sequence[str | None], Sequence[str | None]], float]) -> list[Estimate]:
    """``statistic(model attributes, reference attributes)`` with a bootstrap interval over the
    model's responses (the reference is fixed)."""
    if context.attributes is None:
        return []
    model, reference = context.attributes
    groups = context.groups
    # The bootstrap resamples numbers: code each attribute by its group's index (−1: none).
    codes = [groups.index(a) if a in groups else -1 for a in model]

    def decoded(sample: np.ndarray) -> float:
        return statistic([groups[int(c)] if c >= 0 else None for c in sample], reference)

    return [Estimate(*context.interval([codes], decoded), n=len(codes))]


@register_loop_metric("preference_bias")
def preference_bias(context: LoopMetricContext) -> list[Estimate]:
    """``½ Σ_g |P_model(a=g) − P_ref(a=g)|`` on neutral prompts (total-variation distance)."""
    return _resampled(context, lambda m, r: scpl.preference_bias(m, r, context.groups))


@register_loop_metric("majority_lean")
def majority_lean(context: LoopMetricContext) -> list[Estimate]:
    """``P_model(a=maj) − P_ref(a=maj)`` ∈ [−1, 1]: the signed lean toward the majority group."""
    return _resampled(
        context, lambda m, r: scpl.majority_lean(m, r, context.groups, context.majority)
    )


@register_loop_metric("attribute_share")
def attribute_share(context: LoopMetricContext) -> list[Estimate]:
    """``P_model(a=g) = #{a(y)=g} / #{a(y) ∈ G}`` per group, over the neutral responses."""
    if context.attributes is None:
        return []
    model, _ = context.attributes
    shares = scpl.attribute_distribution(model, context.groups)
    attributed = sum(1 for a in model if a in context.groups)
    return [Estimate(shares[g], group=g, n=attributed) for g in context.groups]


@register_loop_metric("fallback_uniform_attributes")
def fallback_uniform_attributes(context: LoopMetricContext) -> list[Estimate]:
    """1 when no model (or reference) response has an attribute, so its distribution is uniform."""
    if context.attributes is None:
        return []
    estimates = []
    for source, attributes in zip(("model", "reference"), context.attributes):
        unattributed = not any(a in context.groups for a in attributes)
        if unattributed:
            log.warning("generation %d: no %s response has an attribute; its attribute "
                        "distribution falls back to uniform", context.generation, source)
        estimates.append(Estimate(float(unattributed),
                                  metric=f"fallback_uniform_{source}_attributes"))
    return estimates
