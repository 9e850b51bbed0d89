"""The study registry: how one condition × seed of each study is run, checked and plotted.

A study registers a :class:`Study` under its ``study:`` name. The runner only
talks to this interface, so adding a study means adding a module that registers
one and listing it in ``BUILTIN_STUDY_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from biasloop.config.schema import ExperimentConfig, ModelConfig, TaskConfig
from biasloop.registry import Registry
from biasloop.runner.store import RunStore

Track = Callable[[str, Sequence[Any]], Iterator[Any]]

BUILTIN_STUDY_MODULES = ("biasloop.loop.engine", "biasloop.inherit.study")


class Components:
    """Backends and tasks, loaded once and shared by every condition that uses the same config."""

    def __init__(self) -> None:
        self.backends: dict[str, Any] = {}
        self.tasks: dict[tuple[str, int], Any] = {}

    def backend(self, config: ModelConfig) -> Any:
        from biasloop.models.loading import load_backend

        key = config.model_dump_json()
        if key not in self.backends:
            self.backends.clear()  # hold one model in memory at a time
            self.backends[key] = load_backend(config)
        return self.backends[key]

    def task(self, config: TaskConfig, seed: int) -> Any:
        from biasloop.tasks.base import build_task

        key = (config.model_dump_json(), seed)
        if key not in self.tasks:
            self.tasks[key] = build_task(config, seed=seed)
        return self.tasks[key]


@dataclass(frozen=True, kw_only=True)
class Study:
    """One study: ``run`` a condition × seed, ``check`` a config before work, ``plot`` a summary."""

    run: Callable[..., None]
    check: Callable[[ExperimentConfig], None]
    plot: Callable[[pd.DataFrame, Path], list[Path]]


STUDIES: Registry[Study] = Registry("study")


def get_study(name: str) -> Study:
    for module in BUILTIN_STUDY_MODULES:
        importlib.import_module(module)
    return STUDIES.get(name)


def run_condition(
    *, config: ExperimentConfig, condition: str, seed: int, store: RunStore,
    components: Components, track: Track | None,
) -> None:
    """Run one condition × seed of whatever study ``config.study`` names."""
    get_study(config.study).run(config=config, condition=condition, seed=seed, store=store,
                                components=components, track=track)
