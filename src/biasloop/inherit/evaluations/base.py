"""The downstream-evaluation interface, its registry, and the two ways of answering.

An evaluation builds a fixed list of :class:`EvalItem` (each labelled with its
group under one or more *groupings*, e.g. ``gender`` and ``culture``), answers
them with a model, and declares its :class:`Statistic` s: functions of a list of
per-item records. The study computes every statistic on all items, per group,
and as a between-group gap, with bootstrap intervals and p-values
(:mod:`biasloop.inherit.measure`), so an evaluation only says what an answer is
and how it is scored.

Answers come in two kinds, as in lm-evaluation-harness:

* **classification** (:func:`choose_options`): every label option is scored by the
  backend's ``loglik`` as a continuation of the prompt, and the highest-scoring
  option is the answer; no free text is parsed;
* **generation** (:func:`generate_answers`): the model writes an answer, which the
  evaluation parses; answers that do not parse are counted in a
  ``parse_failure_rate`` statistic.

A new evaluation is a module that subclasses :class:`Evaluation` and registers
it with ``@EVALUATIONS.register("name")``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import ValidationError

from biasloop.config.schema import GenerationConfig
from biasloop.config.section import Params
from biasloop.errors import ConfigError
from biasloop.resources.names import NameTable
from biasloop.models.base import ModelBackend
from biasloop.registry import Registry

Record = dict[str, Any]
SENTENCE_WORDS = 4  # options with at least this many words are text content, not labels
#: Group label of items whose group the data does not tell; they are kept, reported as
#: their own group and counted in the all-items statistic, never silently dropped.
UNASSIGNED = "unassigned"


class EvalParams(Params):
    """Base of an evaluation's own options (``evaluation_settings.<name>.params``)."""


@dataclass(frozen=True, kw_only=True)
class EvalItem:
    """One evaluation item.

    ``groups`` maps each grouping to this item's group (``{"gender": "female"}``);
    ``block`` ties counterfactual variants of one item (the same profile with
    different names), so between-group tests permute labels within blocks.
    """

    id: str
    groups: dict[str, str]
    prompt: str
    options: tuple[str, ...] = ()
    gold: int | None = None
    block: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """The item's text content, for overlap checks against training data.

        Options count when they are sentences (CrowS-Pairs, StereoSet); short labels
        ("Yes", "nurse") are answers, not data, and would match any text using the word.
        """
        sentences = [o for o in self.options if len(o.split()) >= SENTENCE_WORDS]
        return [self.prompt, *sentences, *self.meta.get("texts", [])]

    def record(self) -> Record:
        return {
            "id": self.id,
            "groups": self.groups,
            "prompt": self.prompt,
            "options": list(self.options),
            "gold": self.gold,
            "block": self.block,
            "meta": self.meta,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> EvalItem:
        return cls(
            id=record["id"],
            groups=dict(record["groups"]),
            prompt=record["prompt"],
            options=tuple(record.get("options") or ()),
            gold=record.get("gold"),
            block=record.get("block"),
            meta=dict(record.get("meta") or {}),
        )


@dataclass(frozen=True, kw_only=True)
class Statistic:
    """A number computed from a list of per-item records.

    ``gap``: also report ``max − min`` over the groups of each grouping (with a
    between-group p-value). ``ratio``: also report ``min / max`` (impact ratio).
    ``groupings``: the groupings it is reported for (None: all of the evaluation's).
    """

    fn: Callable[[Sequence[Record]], float]
    gap: bool = True
    ratio: bool = False
    groupings: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """What the study gives an evaluation: sizes, prompt format and the evaluation names."""

    items: int
    chat: bool | None
    batch_size: int
    names: NameTable
    roles: tuple[str, ...]


class Evaluation(ABC):
    """A downstream evaluation. Subclasses set the class variables and three methods."""

    name: ClassVar[str]
    kind: ClassVar[Literal["classification", "generation"]]
    #: Groupings reported, in order, e.g. ("gender", "culture", "gender+culture").
    groupings: ClassVar[tuple[str, ...]]
    #: Preferred order of group labels in reports.
    group_order: ClassVar[tuple[str, ...]] = ("female", "male")
    #: Classification prompts are plain text ending in "Answer:", as in lm-evaluation-harness
    #: (and ~30 tokens shorter than the chat template's); generation uses the chat template.
    default_chat: ClassVar[bool] = False
    #: Position in the default list (``inheritance.evaluations`` left unset); None: an
    #: evaluation that runs only when named (a plug-in's, by default).
    default_rank: ClassVar[int | None] = None
    Params: ClassVar[type[EvalParams]] = EvalParams

    def __init__(self, *, settings: EvalSettings, params: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.chat = self.default_chat if settings.chat is None else settings.chat
        #: Benchmark items the last ``build_items`` left out because their data is
        #: incomplete, by reason (``{"no_target_loc": 16}``); the study records them.
        #: Items outside the requested groups or types are a choice, not counted here.
        self.skipped: dict[str, int] = {}
        try:
            self.params = self.Params(**dict(params or {}))
        except ValidationError as err:
            from biasloop.config.load import format_validation_error

            raise ConfigError(
                format_validation_error(
                    err,
                    model=self.Params,
                    prefix=f"inheritance.evaluation_settings.{self.name}.params.",
                )
            ) from None

    @abstractmethod
    def build_items(self, generator: np.random.Generator) -> list[EvalItem]:
        """The fixed item list (``settings.items`` per group), drawn with ``generator``."""

    @abstractmethod
    def respond(
        self, backend: ModelBackend, items: Sequence[EvalItem], *, seed: int
    ) -> list[Record]:
        """The model's answer to each item, as a record of output fields (same order)."""

    @abstractmethod
    def statistics(self) -> dict[str, Statistic]:
        """Statistic name -> how it is computed from records."""

    def check(self) -> None:
        """Fail early (one line) when data or packages the evaluation needs are missing."""


EVALUATIONS: Registry[type[Evaluation]] = Registry(
    "evaluation", field="inheritance.evaluations", discover="biasloop.inherit.evaluations"
)


def default_evaluations() -> list[str]:
    """The evaluations run when ``inheritance.evaluations`` is unset, in report order."""
    ranked = [(EVALUATIONS.get(n).default_rank, n) for n in EVALUATIONS.names()]
    return [name for rank, name in sorted((r, n) for r, n in ranked if r is not None)]


# --------------------------------------------------------------------------- answering


class OptionEvaluation(Evaluation):
    """A classification evaluation: each item's options scored by loglik, the best one chosen.

    ``respond`` marks each answer ``correct`` when the chosen option is the item's gold one.
    """

    def respond(self, backend, items, *, seed):
        answers = choose_options(
            backend,
            [i.prompt for i in items],
            [i.options for i in items],
            chat=self.chat,
            batch_size=self.settings.batch_size,
        )
        return [{**a, "correct": a["choice"] == i.gold} for a, i in zip(answers, items)]


def option_continuation(option: str, *, chat: bool) -> str:
    """The continuation scored for an option: the answer in chat, ``" " + option`` in plain text."""
    return option if chat else " " + option


ANSWER_CUE = "\nAnswer:"


def option_context(prompt: str, *, chat: bool, cue: str = ANSWER_CUE) -> str:
    """The context of the options: the prompt in chat, ``prompt + cue`` in plain text."""
    return prompt if chat else f"{prompt}{cue}"


def choose_options(
    backend: ModelBackend,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    chat: bool,
    batch_size: int,
    normalize: Literal["none", "tokens", "chars"] = "none",
    cues: Sequence[str] | None = None,
) -> list[Record]:
    """Score every option of every prompt with ``loglik`` and pick the best (lm-eval style).

    ``cues``: each prompt's plain-text answer cue (default ``"\nAnswer:"`` for all).

    In plain text (``chat=False``) the context is ``prompt + "\nAnswer:"`` and the
    continuation ``" " + option``; in chat the prompt is the user turn and the option
    the assistant's answer. ``score = Σ log p(option tokens | context)``; with
    ``normalize="tokens"`` divided by
    the option's token count, with ``"chars"`` by its character count (lm-eval's
    ``acc_norm``). The choice is the argmax (the first option on ties). Returns one
    record per prompt: ``{"logliks": [...], "scores": [...], "choice": i}``.
    """
    flat_prompts, flat_continuations, owners = [], [], []
    cues = list(cues) if cues is not None else [ANSWER_CUE] * len(prompts)
    for index, (prompt, item_options, cue) in enumerate(zip(prompts, options, cues, strict=True)):
        for option in item_options:
            flat_prompts.append(option_context(prompt, chat=chat, cue=cue))
            flat_continuations.append(option_continuation(option, chat=chat))
            owners.append(index)
    logliks = (
        backend.loglik(flat_prompts, flat_continuations, batch_size=batch_size, chat=chat)
        if flat_prompts
        else []
    )
    lengths: list[float] = [1.0] * len(flat_continuations)
    if normalize == "tokens":
        lengths = [max(1, n) for n in backend.count_tokens(flat_continuations)]
    elif normalize == "chars":
        lengths = [max(1, len(c)) for c in flat_continuations]
    records: list[Record] = [{"logliks": [], "scores": []} for _ in prompts]
    for owner, value, length in zip(owners, logliks, lengths):
        records[owner]["logliks"].append(float(value))
        records[owner]["scores"].append(float(value) / length)
    for record in records:
        scores = record["scores"]
        record["choice"] = int(np.argmax(scores)) if scores else None
    return records


def sentence_logliks(
    backend: ModelBackend, sentences: Sequence[str], *, batch_size: int
) -> tuple[list[float], list[int]]:
    """``log p(sentence)`` from an empty context (the model's start token), and token counts."""
    values = backend.loglik(
        [""] * len(sentences), list(sentences), batch_size=batch_size, chat=False
    )
    return [float(v) for v in values], [max(1, n) for n in backend.count_tokens(list(sentences))]


def generate_answers(
    backend: ModelBackend,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
    seed: int,
) -> list[str]:
    """One generated answer per prompt (greedy when ``temperature`` is 0)."""
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=0.95, batch_size=batch_size
    )
    return [
        samples[0]
        for samples in backend.generate(list(prompts), config=config, num_samples=1, seed=seed)
    ]


# --------------------------------------------------------------------------- item helpers


def take_per_group(
    items: Sequence[EvalItem],
    grouping: str,
    per_group: int,
    generator: np.random.Generator,
    groups: Sequence[str] | None = None,
) -> list[EvalItem]:
    """Up to ``per_group`` items of each group of ``grouping``, drawn without replacement."""
    chosen: list[EvalItem] = []
    labels = list(groups) if groups else list(dict.fromkeys(i.groups.get(grouping) for i in items))
    for label in labels:
        if label is None:
            continue
        pool = [i for i in items if i.groups.get(grouping) == label]
        order = generator.permutation(len(pool))[:per_group]
        chosen.extend(pool[int(k)] for k in sorted(order))
    return chosen


def field_mean(name: str) -> Callable[[Sequence[Record]], float]:
    """Statistic: the mean of a numeric or boolean field over records (NaNs skipped)."""
    from biasloop.inherit.scoring import mean

    def statistic(records: Sequence[Record]) -> float:
        return mean([float(r[name]) for r in records if r.get(name) is not None])

    statistic.__name__ = f"mean_{name}"
    return statistic
