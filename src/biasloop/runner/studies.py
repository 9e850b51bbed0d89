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

#: ``track(description, items)`` iterates ``items``, showing progress (or not).
Track = Callable[[str, Sequence[Any]], Iterator[Any]]


def no_progress(description: str, items: Sequence[Any]) -> Iterator[Any]:
    """The silent :data:`Track`."""
    return iter(items)

BUILTIN_STUDY_MODULES = ("biasloop.loop.engine", "biasloop.inherit.study")


class Components:
    """Backends and tasks, loaded once and shared by every condition that uses the same config."""

    def __init__(self) -> None:
        self.backends: dict[str, Any] = {}
        self.api_keys: set[str] = set()
        self.tasks: dict[tuple[str, int], Any] = {}

    def backend(self, config: ModelConfig, *, cache_dir: Path | None = None) -> Any:
        """The loaded backend of ``config``; ``cache_dir`` is where an API backend caches.

        Local models are held one at a time (memory); API backends hold no weights
        and are kept beside them.
        """
        from biasloop.models.loading import is_api_model, load_backend

        key = config.model_dump_json()
        api = is_api_model(config)
        if key not in self.backends:
            if not api:  # hold one local model in memory at a time
                for old in [k for k in self.backends if k not in self.api_keys]:
                    del self.backends[old]
            self.backends[key] = load_backend(config)
            if api:
                self.api_keys.add(key)
        backend = self.backends[key]
        if api and cache_dir is not None:
            backend.set_cache_dir(cache_dir)
        return backend

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
