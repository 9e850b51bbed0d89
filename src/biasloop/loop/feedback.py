"""Performative feedback: how group shares respond to service quality.

The population state is a frozen dataclass and each rule is one pure function
``rule(state, quality, params, *, min_share) -> state`` with its own typed
``Params``, registered in ``FEEDBACK_RULES``::

    >>> state = PopulationState.uniform(["a", "b"], total=200)
    >>> retention = FEEDBACK_RULES.get("retention")
    >>> new = retention(state, {"a": 1.0, "b": 0.0}, retention.Params(alpha=0.0, beta=1.0))
    >>> new.population, new.shares
    ({'a': 100.0, 'b': 0.0}, {'a': 1.0, 'b': 0.0})

A config names the rule in ``feedback.rule`` and gives its params under
``feedback.params.<rule>`` (:func:`feedback_params`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from biasloop.config.schema import FeedbackConfig
from biasloop.config.section import Params
from biasloop.errors import ConfigError
from biasloop.registry import Registry


@dataclass(frozen=True)
class PopulationState:
    """Group user counts ``N(g)`` and shares ``p(g) = N(g) / Σ_h N(h)``.

    ``N`` is in users: a loop starts from ``N_0(g) = feedback.initial_population · p_0(g)``,
    and the retention rule's ``arrivals`` adds users in the same unit.
    """

    population: dict[str, float]

    @classmethod
    def uniform(cls, groups: Sequence[str], *, total: float = 1.0) -> PopulationState:
        return cls({g: total / len(groups) for g in groups})

    @classmethod
    def from_shares(cls, shares: Mapping[str, float], *, total: float = 1.0) -> PopulationState:
        mass = sum(shares.values())
        return cls({g: total * v / mass for g, v in shares.items()})

    @property
    def extinct(self) -> bool:
        """Every group has left (``Σ N = 0``): shares are then undefined."""
        return sum(self.population.values()) <= 0

    @property
    def shares(self) -> dict[str, float]:
        """``p(g) = N(g) / Σ N``; uniform when every group has left (see :attr:`extinct`).

        The loop logs that fallback and counts it as ``fallback_uniform_shares``.
        """
        total = sum(self.population.values())
        if total <= 0:
            return {g: 1.0 / len(self.population) for g in self.population}
        return {g: n / total for g, n in self.population.items()}


class NoParams(Params):
    """A rule without options."""


Step = Callable[..., "PopulationState"]


@dataclass(frozen=True)
class FeedbackRule:
    """A registered rule: its step ``step(state, quality, params, *, min_share)`` and ``Params``."""

    step: Step
    Params: type[BaseModel] = NoParams
    summary: str = ""

    def __call__(self, state: PopulationState, quality: Mapping[str, float],
                 params: BaseModel | None = None, *, min_share: float = 0.0) -> PopulationState:
        """``p_{t+1}`` from ``p_t`` and the groups' quality ``q_t`` (default params if none)."""
        return self.step(state, quality, params or self.Params(), min_share=min_share)


FEEDBACK_RULES: Registry[FeedbackRule] = Registry("feedback rule", field="feedback.rule")


def register_feedback_rule(
    name: str, *, Params: type[BaseModel] = NoParams  # noqa: N803
) -> Callable[[Step], Step]:
    """Register ``step(state, quality, params, *, min_share) -> state`` under ``name``.

    Its summary (``biasloop list feedback-rule``) is the first line of its docstring.
    """

    def decorate(step: Step) -> Step:
        doc = (step.__doc__ or "").strip()
        FEEDBACK_RULES.register(name)(
            FeedbackRule(step, Params, doc.splitlines()[0] if doc else "")
        )
        return step

    return decorate


def feedback_params(config: FeedbackConfig, rule: str | None = None) -> BaseModel:
    """``feedback.params.<rule>`` validated by that rule's ``Params`` (one-line error)."""
    from biasloop.config.load import format_validation_error

    rule = rule or config.rule
    registered = FEEDBACK_RULES.get(rule)
    try:
        return registered.Params(**config.params.get(rule, {}))
    except ValidationError as err:
        raise ConfigError(format_validation_error(
            err, model=registered.Params, prefix=f"feedback.params.{rule}."
        )) from None
    except TypeError:  # params.<rule> is not a mapping
        raise ConfigError(
            f"feedback.params.{rule} = {config.params.get(rule)!r}: valid: a mapping of "
            f"{', '.join(registered.Params.model_fields) or 'no options'}"
        ) from None


def check_feedback(config: FeedbackConfig) -> None:
    """The rule exists, and every rule under ``feedback.params`` exists and accepts its params."""
    FEEDBACK_RULES.get(config.rule)
    for rule in config.params:
        FEEDBACK_RULES.get(rule, where=f"feedback.params.{rule}")
        feedback_params(config, rule)


def floor_shares(shares: Mapping[str, float], min_share: float) -> dict[str, float]:
    """Shares with every group at ``min_share`` or more, summing to 1.

    Groups below the floor are set to exactly ``min_share``; the rest share the
    remaining mass ``1 − k·min_share`` in proportion to their shares, repeated until
    no share falls below the floor (raising a share lowers the others, which can push
    another group under it). Needs ``min_share · |G| ≤ 1``.

        >>> floor_shares({"a": 1.0, "b": 0.0}, 0.1)
        {'a': 0.9, 'b': 0.1}
    """
    if min_share <= 0:
        return dict(shares)
    if min_share * len(shares) > 1 + 1e-12:
        raise ValueError(
            f"feedback.min_share: {min_share} × {len(shares)} groups exceeds 1; "
            f"valid: at most {1 / len(shares):g}"
        )
    floored: dict[str, float] = {}
    free = dict(shares)
    while free:
        free_mass = 1.0 - min_share * len(floored)
        free_total = sum(free.values())
        scaled = {
            g: (p * free_mass / free_total if free_total > 0 else free_mass / len(free))
            for g, p in free.items()
        }
        below = [g for g, p in scaled.items() if p < min_share]
        if not below:
            result = {**floored, **scaled}
            return {g: result[g] for g in shares}
        for group in below:
            floored[group] = min_share
            del free[group]
    return {g: floored[g] for g in shares}


def _floor_state(state: PopulationState, min_share: float) -> PopulationState:
    """The state with its shares floored (:func:`floor_shares`), keeping the population total."""
    if min_share <= 0 or state.extinct:
        return state
    total = sum(state.population.values())
    floored = floor_shares(state.shares, min_share)
    return PopulationState({g: total * floored[g] for g in state.population})


@register_feedback_rule("static")
def static_feedback(state: PopulationState, quality: Mapping[str, float], params: BaseModel,
                    *, min_share: float = 0.0) -> PopulationState:
    """``p_{t+1} = p_t``: the control, a self-consuming loop with no performative effect."""
    return state


class RetentionParams(Params):
    """Options of the retention rule."""

    alpha: float = Field(0.5, description="ν(q) = clip(α + β·q, 0, 1): retention at quality 0.")
    beta: float = Field(0.5, description="Slope of ν in quality.")
    arrivals: float = Field(
        0.0, ge=0.0,
        description="New users b_g added to every group each generation (users, the unit of "
        "feedback.initial_population).",
    )


@register_feedback_rule("retention", Params=RetentionParams)
def retention_feedback(state: PopulationState, quality: Mapping[str, float],
                       params: RetentionParams, *, min_share: float = 0.0) -> PopulationState:
    """Retention dynamics after Hashimoto et al. (2018): ``N_{t+1}(g) = N_t(g)·ν(q_t(g)) + b_g``.

    ``ν(q) = clip(α + β·q, 0, 1)`` and ``b_g = params.arrivals`` new users per group;
    shares are ``p = N / Σ N``. ``N`` counts users
    (``N_0 = feedback.initial_population · p_0``).
    """
    population = {
        g: n * min(max(params.alpha + params.beta * quality[g], 0.0), 1.0) + params.arrivals
        for g, n in state.population.items()
    }
    return _floor_state(PopulationState(population), min_share)


class ExponentialParams(Params):
    """Options of the exponential (multiplicative-weights) rule."""

    eta: float = Field(5.0, ge=0.0, description="Step size η.")


@register_feedback_rule("exponential", Params=ExponentialParams)
def exponential_feedback(state: PopulationState, quality: Mapping[str, float],
                         params: ExponentialParams, *, min_share: float = 0.0) -> PopulationState:
    """Multiplicative weights: ``p_{t+1}(g) ∝ p_t(g) · exp(η · (q_t(g) − Σ_h p_t(h) q_t(h)))``."""
    shares = state.shares
    average = sum(shares[g] * quality[g] for g in shares)
    weights = {g: p * math.exp(params.eta * (quality[g] - average)) for g, p in shares.items()}
    return _floor_state(
        PopulationState.from_shares(weights, total=sum(state.population.values())), min_share
    )
