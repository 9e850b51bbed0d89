"""The task interface for the self-consuming loop.

A task has named groups, a query pool per group and split, real reference
responses per group, a per-group service quality ``q(g, query, response) ∈ [0, 1]``
and optionally an attribute function ``a(response)`` naming the group whose
preference a response expresses. Tasks register under a name in ``TASKS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from biasloop.config.schema import TaskConfig
from biasloop.errors import ConfigError
from biasloop.registry import Registry
from biasloop.tasks.query import Query, Split



class TaskParams(BaseModel):
    """Base for a task's own options (``task.params`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(ABC):
    """A loop task. Subclasses set ``name``, ``Params`` and implement the methods."""

    name: str
    Params: type[TaskParams] = TaskParams

    def __init__(self, *, config: TaskConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.params = self.Params(**config.params)

    @property
    @abstractmethod
    def groups(self) -> tuple[str, ...]:
        """Group names, in a fixed order (the first is the majority by default)."""

    @abstractmethod
    def queries(self, group: str, split: Split) -> list[Query]:
        """The query pool of ``group``; train and eval pools never share a query."""

    def eval_queries(self, group: str) -> list[Query]:
        """The fixed evaluation set E_g: the first ``eval_queries_per_group`` eval queries."""
        return self.queries(group, "eval")[: self.config.eval_queries_per_group]

    def reference_examples(self, group: str) -> list[Query]:
        """Real (prompt, reference) pairs of ``group`` used as real training data."""
        return [q for q in self.queries(group, "train") if q.reference]

    @abstractmethod
    def quality(self, queries: Sequence[Query], responses: Sequence[str]) -> list[float]:
        """Service quality q(g, prompt, response) ∈ [0, 1] for each query's own group."""

    def reward(self, group: str, queries: Sequence[Query], responses: Sequence[str]) -> list[float]:
        """Reward of each response for ``group`` (rejection sampling); quality by default."""
        return self.quality(queries, responses)

    def attribute(self, responses: Sequence[str]) -> list[str | None] | None:
        """Which group's preference each response expresses, or None if not defined."""
        return None

    def neutral_queries(self) -> list[Query]:
        """Group-neutral prompts for measuring preference bias; the eval sets by default."""
        return [q for g in self.groups for q in self.eval_queries(g)]


TASKS: Registry[type[Task]] = Registry("task", field="task.name", discover="biasloop.tasks")


def build_task(config: TaskConfig, *, seed: int = 0) -> Task:
    """Instantiate the registered task named by ``config.name``."""
    return TASKS.get(config.name)(config=config, seed=seed)


# ---------------------------------------------------------------------------
# Shared machinery of the built-in tasks (additions; the interface above is unchanged)
# ---------------------------------------------------------------------------


class PooledParams(TaskParams):
    """Options every built-in task shares: the train/eval split and the ``hf`` source.

    The split is a property of the data, not of the run: it depends on ``split_seed``
    and ``eval_fraction`` only, so every run seed sees the same evaluation sets.
    """

    split_seed: int = Field(0, ge=0, description="Seed of the hash that splits items train/eval.")
    eval_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of items whose seeded hash puts them in eval."
    )
    hf_split: str = Field("train", description="`hf` source: dataset split to load from the hub.")
    hf_config: str | None = Field(None, description="`hf` source: dataset config name.")
    hf_columns: dict[str, str] = Field(
        default_factory=dict,
        description="`hf` source: our column name -> the dataset's column name, "
        "e.g. {prompt: question, reference: answer}.",
    )
    hf_group: str | None = Field(
        None, description="`hf` source: group of every row when the data has no group column."
    )

    @field_validator("hf_columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from biasloop.tasks.sources import KNOWN_COLUMNS

        unknown = sorted(set(value) - set(KNOWN_COLUMNS))
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r}; valid: {', '.join(KNOWN_COLUMNS)}")
        return value


def params_error(task_name: str, params_cls: type[BaseModel], exc: ValidationError) -> ConfigError:
    """One-line ConfigError naming the first bad ``task.params`` field, like every config error."""
    from biasloop.config.load import format_validation_error

    return ConfigError(format_validation_error(exc, model=params_cls, prefix="task.params."))


def validate_task_params(config: TaskConfig) -> None:
    """Check ``task.params`` against the named task's ``Params`` before any work."""
    task_class = TASKS.get(config.name)
    try:
        task_class.Params(**config.params)
    except ValidationError as exc:
        raise params_error(config.name, task_class.Params, exc) from None


class PooledTask(Task):
    """A task over a fixed list of items, each a :class:`Query` with a group.

    Subclasses implement ``groups``, :meth:`load_queries` (every item, in any order) and
    :meth:`score` (the per-group scorer). This class provides the seeded-hash train/eval
    split (:func:`biasloop.tasks.sources.split_of`), the pools cached per task, ``quality``
    (score for each query's own group) and ``reward`` (score for a named group). A
    ``task.params`` error is raised as a one-line :class:`ConfigError` naming the field.
    """

    Params: type[TaskParams] = PooledParams

    def __init__(self, *, config: TaskConfig, seed: int = 0) -> None:
        try:
            super().__init__(config=config, seed=seed)
        except ValidationError as exc:
            raise params_error(self.name, self.Params, exc) from None

    @abstractmethod
    def load_queries(self) -> list[Query]:
        """Every item of the task (both splits), each with a unique id within its group."""

    @abstractmethod
    def score(
        self, groups: Sequence[str], queries: Sequence[Query], responses: Sequence[str]
    ) -> list[float]:
        """Score in [0, 1] of each response for the group at the same position of ``groups``."""

    @cached_property
    def pools(self) -> dict[str, dict[str, list[Query]]]:
        """``{group: {"train": [...], "eval": [...]}}``, each list ordered by the split hash."""
        from biasloop.tasks.sources import build_pools

        params = self.params
        return build_pools(
            self.load_queries(),
            self.groups,
            split_seed=params.split_seed,  # type: ignore[attr-defined]
            eval_fraction=params.eval_fraction,  # type: ignore[attr-defined]
            source=self.source_label,
        )

    @property
    def source_label(self) -> str:
        """Where the items come from, for error messages."""
        if self.config.source == "hf":
            return str(self.config.hf_dataset)
        return f"packaged {self.name} data"

    def check_group(self, group: str) -> None:
        if group not in self.groups:
            raise ConfigError(
                f"unknown group {group!r} for task {self.name!r}; valid: {', '.join(self.groups)}"
            )

    def queries(self, group: str, split: Split) -> list[Query]:
        self.check_group(group)
        if split not in ("train", "eval"):
            raise ConfigError(f"unknown split {split!r}; valid: train, eval")
        return list(self.pools[group][split])

    def quality(self, queries: Sequence[Query], responses: Sequence[str]) -> list[float]:
        _same_length(queries, responses)
        for group in {q.group for q in queries}:
            self.check_group(group)
        return self.score([q.group for q in queries], queries, responses)

    def reward(self, group: str, queries: Sequence[Query], responses: Sequence[str]) -> list[float]:
        self.check_group(group)
        _same_length(queries, responses)
        return self.score([group] * len(queries), queries, responses)


def _same_length(queries: Sequence[Query], responses: Sequence[str]) -> None:
    if len(queries) != len(responses):
        raise ValueError(f"{len(queries)} queries but {len(responses)} responses")
