"""The task interface for the self-consuming loop.

A task has named groups, a query pool per group and split, real reference
responses per group, a per-group service quality ``q(g, query, response) ∈ [0, 1]``
and optionally an attribute function ``a(response)`` naming the group whose
preference a response expresses. Tasks register under a name in ``TASKS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from biasloop.config.schema import TaskConfig
from biasloop.registry import Registry

Split = Literal["train", "eval"]


@dataclass(frozen=True, kw_only=True)
class Query:
    """One query from a group, with the real reference response when the source has one."""

    id: str
    group: str
    prompt: str
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


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


TASKS: Registry[type[Task]] = Registry("task")


def build_task(config: TaskConfig, *, seed: int = 0) -> Task:
    """Instantiate the registered task named by ``config.name``."""
    import biasloop.tasks  # noqa: F401  (registers the built-in tasks)

    return TASKS.get(config.name)(config=config, seed=seed)
