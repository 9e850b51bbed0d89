"""Curation plug-ins: how served candidates become the accepted synthetic set S_t."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from biasloop.config.schema import MitigationConfig
from biasloop.registry import Registry


@dataclass(frozen=True, kw_only=True)
class CandidateSet:
    """The ``k`` candidate responses drawn for one served query, with their group rewards."""

    query_id: str
    group: str
    prompt: str
    responses: list[str]
    rewards: list[float]

    def best(self) -> int:
        """Index of the highest-reward candidate (the first one on ties)."""
        return int(np.argmax(self.rewards))


@dataclass(frozen=True, kw_only=True)
class Accepted:
    """One accepted synthetic example with its training loss weight."""

    query_id: str
    group: str
    prompt: str
    response: str
    reward: float
    weight: float = 1.0


@dataclass(frozen=True, kw_only=True)
class CurationContext:
    """What a curation rule may look at besides the candidates."""

    config: MitigationConfig
    groups: Sequence[str]
    shares: Mapping[str, float]
    target_shares: Mapping[str, float]
    rng: np.random.Generator


Curation = Callable[[Sequence[CandidateSet], CurationContext], list[Accepted]]
CURATIONS: Registry[Curation] = Registry("mitigation")

# Mitigations whose acceptance depends on the reward threshold, so that resampling
# rejected queries can help.
THRESHOLDED = {"reward_rejection", "balanced_reward_rejection"}


def acceptance_rates(
    served: Sequence[CandidateSet], accepted: Sequence[Accepted], groups: Sequence[str]
) -> dict[str, float]:
    """``accepted_g / served_g`` per group (counts of distinct accepted queries; NaN if unserved)."""
    rates = {}
    for group in groups:
        n_served = sum(1 for c in served if c.group == group)
        n_accepted = len({a.query_id for a in accepted if a.group == group})
        rates[group] = n_accepted / n_served if n_served else float("nan")
    return rates
