"""The mean-field loop: one pure step per generation, and a seeded simulation of many.

The state of generation ``t`` is the user population ``N_t`` (group shares ``p_t``),
the model's attribute distribution ``a_t`` and the accepted synthetic mass of every
earlier generation (for ``loop.data_policy: accumulate``). One step mirrors the
neural loop's serve → curate → evaluate → feedback → assemble → train:

1. **evaluate**: ``q_t = quality_of(a_t)`` (:mod:`.response`);
2. **serve and curate**: simulated candidate sets by ``p_t`` with rewards of mean
   ``q_t(g)``, curated by the configured mitigation (:mod:`.curation`); accepted mass
   ``A_t(g) = n·p_t(g)·w_t(g)``;
3. **feedback**: ``p_{t+1} = F(p_t, q_t)`` with the configured rule of
   ``FEEDBACK_RULES`` and its ``feedback.params``;
4. **assemble**: the group mix ``m_t`` of ``D_{t+1}`` (:mod:`.assembly`);
5. **train**: ``a_{t+1} = (1 − ρ)·a_base + ρ·m_t`` (:mod:`.response`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from biasloop.config.schema import ExperimentConfig, MitigationConfig
from biasloop.loop.feedback import FEEDBACK_RULES, PopulationState, feedback_params
from biasloop.mitigate import mitigation_params
from biasloop.seeding import rng
from biasloop.tracking import Track
from biasloop.simulate.assembly import synthetic_generations, training_mix
from biasloop.simulate.curation import CurationOutcome, curate_simulated
from biasloop.simulate.response import ResponseParams, quality_of, trained_attributes


def normalised(values: Mapping[str, float]) -> dict[str, float]:
    total = sum(values.values())
    return {g: v / total for g, v in values.items()}


@dataclass(frozen=True, kw_only=True)
class SimulationSettings:
    """Everything a simulation reads, resolved once from an :class:`ExperimentConfig`."""

    groups: tuple[str, ...]
    generations: int
    response: ResponseParams
    initial_shares: dict[str, float]
    initial_population: float
    initial_attributes: dict[str, float]
    reference_attributes: dict[str, float]
    feedback_rule: str
    feedback_params: BaseModel
    min_share: float
    mitigation: MitigationConfig
    mitigation_params: BaseModel
    loop_type: str
    synthetic_fraction: float
    data_policy: str
    queries_per_generation: int
    candidate_sets: int
    reward: str
    reward_concentration: float
    seed: int = 0
    condition: str = "main"

    @classmethod
    def from_config(cls, config: ExperimentConfig, groups: Sequence[str], *, seed: int | None = None,
                    condition: str = "main") -> SimulationSettings:
        """The settings of ``config`` for ``groups`` (the task's groups, in order)."""
        sim = config.simulate
        uniform = {g: 1.0 / len(groups) for g in groups}
        reference = normalised(sim.reference_attributes) if sim.reference_attributes else uniform
        return cls(
            groups=tuple(groups),
            generations=config.loop.generations,
            response=ResponseParams(rate=sim.rate, quality_min=sim.quality_min,
                                    quality_max=sim.quality_max, exponent=sim.exponent),
            initial_shares=normalised(config.loop.initial_shares) if config.loop.initial_shares
            else uniform,
            initial_population=config.feedback.initial_population,
            initial_attributes=normalised(sim.initial_attributes) if sim.initial_attributes
            else reference,
            reference_attributes=reference,
            feedback_rule=config.feedback.rule,
            feedback_params=feedback_params(config.feedback),
            min_share=config.feedback.min_share,
            mitigation=config.mitigation,
            mitigation_params=mitigation_params(config.mitigation),
            loop_type=config.loop.type,
            synthetic_fraction=config.loop.synthetic_fraction,
            data_policy=config.loop.data_policy,
            queries_per_generation=config.loop.queries_per_generation,
            candidate_sets=sim.candidate_sets,
            reward=sim.reward,
            reward_concentration=sim.reward_concentration,
            seed=config.seed if seed is None else seed,
            condition=condition,
        )

    def replace(self, **changes: object) -> SimulationSettings:
        return dataclasses.replace(self, **changes)

    @property
    def majority(self) -> str:
        """The group with the largest initial share (the first on ties), as in the neural loop."""
        return max(self.groups, key=lambda g: self.initial_shares[g])


@dataclass(frozen=True, kw_only=True)
class SimulationState:
    """Generation ``t``'s input: population ``N_t``, attributes ``a_t``, past accepted masses."""

    generation: int
    population: PopulationState
    attributes: dict[str, float]
    synthetic: tuple[dict[str, float], ...] = ()  # A_0, …, A_{t-1}

    @classmethod
    def initial(cls, settings: SimulationSettings) -> SimulationState:
        return cls(
            generation=0,
            population=PopulationState.from_shares(settings.initial_shares,
                                                   total=settings.initial_population),
            attributes=dict(settings.initial_attributes),
        )

    def quality(self, settings: SimulationSettings) -> dict[str, float]:
        """``q_t(g) = q_min + (q_max − q_min)·a_t(g)^κ``."""
        return quality_of(self.attributes, settings.response)


@dataclass(frozen=True, kw_only=True)
class Generation:
    """One simulated generation: its input state, quality, curation and training mix."""

    state: SimulationState
    quality: dict[str, float]
    curation: CurationOutcome | None = None  # None for the final model M_T
    mix: dict[str, float] | None = None


def step(state: SimulationState, settings: SimulationSettings) -> tuple[Generation, SimulationState]:
    """Generation ``t`` of the loop: ``(what happened at t, the state of t + 1)``."""
    t, groups = state.generation, settings.groups
    quality = state.quality(settings)
    shares = state.population.shares
    curation = curate_simulated(
        groups=groups, shares=shares, quality=quality, target_shares=settings.initial_shares,
        mitigation=settings.mitigation, params=settings.mitigation_params,
        candidate_sets=settings.candidate_sets, reward=settings.reward,
        concentration=settings.reward_concentration,
        reward_rng=rng(settings.seed, settings.condition, t, "rewards"),
        curate_rng=rng(settings.seed, settings.condition, t, "curate"), label=f"{t}-",
    )
    accepted = {g: settings.queries_per_generation * shares[g] * curation.accepted_per_served[g]
                for g in groups}
    synthetic = (*state.synthetic, accepted)
    rule = FEEDBACK_RULES.get(settings.feedback_rule)
    population = rule(state.population, quality, settings.feedback_params,
                      min_share=settings.min_share)
    mix = training_mix([synthetic[s] for s in synthetic_generations(t, settings.data_policy)],
                       population.shares, synthetic_fraction=settings.synthetic_fraction,
                       queries_per_generation=settings.queries_per_generation)
    base = state.attributes if settings.loop_type == "incremental" else settings.initial_attributes
    attributes = trained_attributes(base, mix, settings.response.rate)
    following = SimulationState(generation=t + 1, population=population, attributes=attributes,
                                synthetic=synthetic)
    return Generation(state=state, quality=quality, curation=curation, mix=mix), following


def simulate(settings: SimulationSettings, *, start: SimulationState | None = None,
             track: Track | None = None) -> list[Generation]:
    """Generations ``0 … T`` (``T = loop.generations``; the last one only evaluates ``M_T``).

    Seeded by ``settings.seed`` and ``settings.condition`` alone, so a simulation
    repeats exactly.
    """
    state = start or SimulationState.initial(settings)
    history: list[Generation] = []
    steps = range(state.generation, settings.generations)
    for _ in (track("simulate", steps) if track is not None else steps):
        generation, state = step(state, settings)
        history.append(generation)
    history.append(Generation(state=state, quality=state.quality(settings)))
    return history
