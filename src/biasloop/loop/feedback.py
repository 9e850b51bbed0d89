"""Performative feedback: how group shares respond to service quality.

The population state is a frozen dataclass and each rule is one pure function
``rule(state, quality, config) -> state`` registered in ``FEEDBACK_RULES``::

    >>> from biasloop.config import FeedbackConfig
    >>> state = PopulationState.uniform(["a", "b"])
    >>> new = retention_feedback(state, {"a": 1.0, "b": 0.0}, FeedbackConfig(alpha=0.0, beta=1.0))
    >>> new.shares
    {'a': 1.0, 'b': 0.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from biasloop.config.schema import FeedbackConfig
from biasloop.registry import Registry


@dataclass(frozen=True)
class PopulationState:
    """Group user counts ``N(g)`` and shares ``p(g) = N(g) / Σ_h N(h)``."""

    population: dict[str, float]

    @classmethod
    def uniform(cls, groups: Sequence[str]) -> PopulationState:
        return cls({g: 1.0 / len(groups) for g in groups})

    @classmethod
    def from_shares(cls, shares: Mapping[str, float]) -> PopulationState:
        total = sum(shares.values())
        return cls({g: v / total for g, v in shares.items()})

    @property
    def shares(self) -> dict[str, float]:
        total = sum(self.population.values())
        if total <= 0:  # every group left: fall back to uniform rather than divide by zero
            return {g: 1.0 / len(self.population) for g in self.population}
        return {g: n / total for g, n in self.population.items()}


FeedbackRule = Callable[[PopulationState, Mapping[str, float], FeedbackConfig], PopulationState]
FEEDBACK_RULES: Registry[FeedbackRule] = Registry("feedback rule")


def _floor_shares(state: PopulationState, min_share: float) -> PopulationState:
    """Raise every share to at least ``min_share``, renormalise, keep the population total."""
    if min_share <= 0:
        return state
    total = sum(state.population.values())
    floored = {g: max(p, min_share) for g, p in state.shares.items()}
    mass = sum(floored.values())
    return PopulationState({g: total * p / mass for g, p in floored.items()})


@FEEDBACK_RULES.register("static")
def static_feedback(
    state: PopulationState, quality: Mapping[str, float], config: FeedbackConfig
) -> PopulationState:
    """``p_{t+1} = p_t``: the control, a self-consuming loop with no performative effect."""
    return state


@FEEDBACK_RULES.register("retention")
def retention_feedback(
    state: PopulationState, quality: Mapping[str, float], config: FeedbackConfig
) -> PopulationState:
    """Retention dynamics after Hashimoto et al. (2018).

    ``N_{t+1}(g) = N_t(g) · ν(q_t(g)) + b_g`` with ``ν(q) = clip(α + β·q, 0, 1)``
    and ``b_g = config.arrivals``; shares are ``p = N / Σ N``.
    """
    population = {
        g: n * min(max(config.alpha + config.beta * quality[g], 0.0), 1.0) + config.arrivals
        for g, n in state.population.items()
    }
    return _floor_shares(PopulationState(population), config.min_share)


@FEEDBACK_RULES.register("exponential")
def exponential_feedback(
    state: PopulationState, quality: Mapping[str, float], config: FeedbackConfig
) -> PopulationState:
    """Multiplicative weights: ``p_{t+1}(g) ∝ p_t(g) · exp(η · (q_t(g) − Σ_h p_t(h) q_t(h)))``."""
    shares = state.shares
    average = sum(shares[g] * quality[g] for g in shares)
    weights = {g: p * math.exp(config.eta * (quality[g] - average)) for g, p in shares.items()}
    return _floor_shares(PopulationState.from_shares(weights), config.min_share)
