"""Curation mitigations: no curation, reward-based rejection sampling and its controls.

Each rule is registered under its ``mitigation.name``; they act where candidates
are served, in the SCPL loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from biasloop.config.section import Params

from biasloop.mitigate.base import (
    Accepted,
    CandidateSet,
    CurationContext,
    first_candidates,
    register_curation,
)


def _accept(candidates: CandidateSet, index: int, weight: float = 1.0) -> Accepted:
    return Accepted(
        query_id=candidates.query_id,
        group=candidates.group,
        prompt=candidates.prompt,
        response=candidates.responses[index],
        reward=candidates.rewards[index],
        weight=weight,
    )


register_curation("none")(first_candidates)


@register_curation("reward_rejection", thresholded=True)
def reward_rejection(served: Sequence[CandidateSet], context: CurationContext) -> list[Accepted]:
    """Best-of-k by the query group's reward, accepted iff ``max_i r_g(y_i) ≥ τ``."""
    threshold = context.config.threshold
    return [_accept(c, c.best()) for c in served if c.rewards[c.best()] >= threshold]


@register_curation("balanced_reward_rejection", thresholded=True)
def balanced_reward_rejection(
    served: Sequence[CandidateSet], context: CurationContext
) -> list[Accepted]:
    """Reward rejection, then per-group counts held to the target shares.

    With ``A`` the reward-accepted set and ``π`` the target shares (uniform unless
    ``loop.initial_shares`` says otherwise), group ``g`` gets the quota
    ``round(|A| · π_g / Σ_{h: A_h ≠ ∅} π_h)`` among groups with any accepted item:
    its highest-reward items when it has enough, otherwise all of them plus
    draws with replacement from them. This undoes the skew that performative
    feedback puts into who is served. A served group with nothing accepted cannot
    be held to its share: it is counted as the fallback ``group_dropped`` and its
    share goes to the other groups.
    """
    accepted = reward_rejection(served, context)
    by_group = {g: [a for a in accepted if a.group == g] for g in context.groups}
    present = [g for g in context.groups if by_group[g]]
    served_groups = {c.group for c in served}
    for group in context.groups:
        if group in served_groups and not by_group[group]:
            context.count_fallback("group_dropped", group)
    if not present:
        return []
    mass = sum(context.target_shares[g] for g in present)
    result: list[Accepted] = []
    for group in present:
        items = sorted(by_group[group], key=lambda a: -a.reward)
        quota = int(round(len(accepted) * context.target_shares[group] / mass))
        if quota <= len(items):
            result.extend(items[:quota])
        else:
            extra = context.rng.integers(0, len(items), size=quota - len(items))
            result.extend(items + [items[int(i)] for i in extra])
    return result


class RandomRejectionParams(Params):
    """Options of ``random_rejection``."""

    acceptance_rate: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Fixed acceptance rate; unset matches reward rejection's on the same "
        "candidates.",
    )


@register_curation("random_rejection", Params=RandomRejectionParams)
def random_rejection(served: Sequence[CandidateSet], context: CurationContext) -> list[Accepted]:
    """Control with the same acceptance rate as reward rejection but no use of reward.

    The rate is ``mitigation.params.random_rejection.acceptance_rate`` when set, else
    the share of queries that reward rejection would accept on these same candidates;
    each query is kept with its first candidate with that probability, independent
    of reward.
    """
    rate = context.params.acceptance_rate
    if rate is None:
        rate = len(reward_rejection(served, context)) / len(served) if served else 0.0
    keep = context.rng.random(len(served)) < rate
    return [_accept(c, 0) for c, kept in zip(served, keep) if kept]


@register_curation("reweight")
def reweight(served: Sequence[CandidateSet], context: CurationContext) -> list[Accepted]:
    """Accept every first candidate with inverse-share loss weights.

    ``w_g = π_g / p̂_g`` where ``p̂_g`` is group g's share of the served queries and
    ``π_g`` its target share, so each group carries its target share of the loss;
    weights are normalised to mean 1 over the accepted set.
    """
    counts = {g: sum(1 for c in served if c.group == g) for g in context.groups}
    total = sum(counts.values())
    raw = {
        g: (context.target_shares[g] / (counts[g] / total)) if counts[g] else 0.0
        for g in context.groups
    }
    weights = np.array([raw[c.group] for c in served], dtype=float)
    if weights.size and weights.mean() > 0:
        weights = weights / weights.mean()
    return [_accept(c, 0, float(w)) for c, w in zip(served, weights)]
