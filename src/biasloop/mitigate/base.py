"""Mitigation plug-ins, one registry for both studies.

A :class:`Mitigation` may act at three points, and registers under its
``mitigation.name``:

* ``curate`` (SCPL): which of the ``k`` served candidates become the accepted
  synthetic set ``S_t`` and with what loss weight;
* ``rewrite`` (both studies): how augmented/synthetic training records are
  rewritten before fine-tuning (a warning tag, masked cues);
* ``loss_term`` (both studies): an extra term added to every training step's loss.

A mitigation that only rewrites or only adds a loss term curates like ``none``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from biasloop.config.schema import MitigationConfig
from biasloop.config.section import Params
from biasloop.errors import ConfigError
from biasloop.models.base import ExtraLoss
from biasloop.registry import Registry


class NoParams(Params):
    """A mitigation without options of its own."""


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
    """What a curation rule may look at besides the candidates.

    A rule that cannot do what it promises for a group (e.g. hold a group to its
    target share when it has nothing accepted) says so with :meth:`count_fallback`;
    the loop logs it and reports it as a ``fallback_<name>`` metric row per group.
    """

    config: MitigationConfig
    params: BaseModel | None = None  # default: the named mitigation's, from ``config.params``
    groups: Sequence[str]
    shares: Mapping[str, float]
    target_shares: Mapping[str, float]
    rng: np.random.Generator
    fallbacks: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.params is None:
            object.__setattr__(self, "params", mitigation_params(self.config))

    def count_fallback(self, name: str, group: str) -> None:
        """Record that fallback ``name`` happened for ``group``."""
        self.fallbacks[(name, group)] += 1


@dataclass(frozen=True, kw_only=True)
class TrainingContext:
    """What a rewrite may look at: its config and where the name table lives."""

    config: MitigationConfig
    names_file: str | None = None
    params: BaseModel | None = None  # default: the named mitigation's, from ``config.params``

    def __post_init__(self) -> None:
        if self.params is None:
            object.__setattr__(self, "params", mitigation_params(self.config))


Curation = Callable[[Sequence[CandidateSet], CurationContext], list[Accepted]]
Rewrite = Callable[[Sequence[dict[str, Any]], TrainingContext], list[dict[str, Any]]]
LossTerm = Callable[[Any], ExtraLoss]  # (the mitigation's params) -> loss term


def first_candidates(served: Sequence[CandidateSet], context: CurationContext) -> list[Accepted]:
    """Accept the first sampled candidate of every query (plain self-consumption)."""
    return [
        Accepted(
            query_id=c.query_id,
            group=c.group,
            prompt=c.prompt,
            response=c.responses[0],
            reward=c.rewards[0],
        )
        for c in served
    ]


@dataclass(frozen=True, kw_only=True)
class Mitigation:
    """A registered mitigation; parts left ``None`` change nothing.

    ``thresholded``: acceptance depends on the reward threshold ``mitigation.threshold``,
    so resampling rejected queries (``on_reject: resample``) can help.
    ``Params``: the pydantic model of its own options, given as ``mitigation.params.<name>``
    and handed to it as ``context.params``. ``summary``: one line for ``biasloop list``.
    """

    curate: Curation = first_candidates
    rewrite: Rewrite | None = None
    loss_term: LossTerm | None = None
    thresholded: bool = False
    Params: type[BaseModel] = NoParams
    check: Callable[[Any], None] | None = None  # (params) -> None; raises before any work
    summary: str = ""


MITIGATIONS: Registry[Mitigation] = Registry(
    "mitigation", field="mitigation.name", discover="biasloop.mitigate"
)


def register_curation(
    name: str, *, thresholded: bool = False, Params: type[BaseModel] = NoParams  # noqa: N803
) -> Callable[[Curation], Curation]:
    """Register a curation-only mitigation under ``name`` (decorator).

    Its summary is the first line of the function's docstring.
    """

    def decorate(curate: Curation) -> Curation:
        summary = (curate.__doc__ or "").strip().splitlines()[0] if curate.__doc__ else ""
        MITIGATIONS.register(name)(
            Mitigation(curate=curate, thresholded=thresholded, Params=Params, summary=summary)
        )
        return curate

    return decorate


def mitigation_params(config: MitigationConfig, name: str | None = None) -> BaseModel:
    """``mitigation.params.<name>`` (default: the configured mitigation's) validated by that
    mitigation's ``Params``, as a one-line error."""
    from biasloop.config.load import format_validation_error

    name = name or config.name
    mitigation = MITIGATIONS.get(name)
    given = config.params.get(name, {})
    if not isinstance(given, Mapping):
        raise ConfigError(
            f"mitigation.params.{name} = {given!r}: valid: a mapping of "
            f"{', '.join(mitigation.Params.model_fields) or 'no options'}"
        )
    try:
        return mitigation.Params(**given)
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, model=mitigation.Params, prefix=f"mitigation.params.{name}.")
        ) from None


def check_mitigation(config: MitigationConfig) -> None:
    """Fail before any work on an unknown mitigation, bad params, or an option it cannot use."""
    mitigation = MITIGATIONS.get(config.name)
    # The configured mitigation, then every other one a condition may switch to.
    for name in dict.fromkeys([config.name, *config.params]):
        registered = MITIGATIONS.get(name, where=f"mitigation.params.{name}")
        params = mitigation_params(config, name)
        if registered.check is not None:
            registered.check(params)
    if config.on_reject == "resample" and not mitigation.thresholded:
        thresholded = [n for n in MITIGATIONS.names() if MITIGATIONS.get(n).thresholded]
        raise ConfigError(
            f"mitigation.on_reject: 'resample' needs a mitigation with a reward threshold; "
            f"{config.name!r} has none; valid: drop, or mitigation.name one of "
            f"{', '.join(thresholded)}"
        )


def is_augmented(record: Mapping[str, Any]) -> bool:
    """Training records written by a model (``source: synthetic``) are the augmented ones."""
    return record.get("source") == "synthetic"


def prepare_training_records(
    records: Sequence[dict[str, Any]], context: TrainingContext
) -> list[dict[str, Any]]:
    """The records as the configured mitigation rewrites them (unchanged if it does not)."""
    rewrite = MITIGATIONS.get(context.config.name).rewrite
    return list(records) if rewrite is None else rewrite(records, context)


def training_loss_term(config: MitigationConfig) -> ExtraLoss | None:
    """The configured mitigation's extra loss term, if it has one."""
    loss_term = MITIGATIONS.get(config.name).loss_term
    return None if loss_term is None else loss_term(mitigation_params(config))

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
