"""Orchestration of the registered studies: shared components and one condition × seed.

The studies themselves are plug-ins registered in
:data:`biasloop.studies.base.STUDIES`; the runner only talks to that interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from biasloop.config.schema import ExperimentConfig, ModelConfig, TaskConfig
from biasloop.plugins import load_plugins
from biasloop.store import RunStore
from biasloop.studies.base import STUDIES, Study
from biasloop.tracking import Track, no_progress

__all__ = ["STUDIES", "Components", "Study", "Track", "get_study", "no_progress", "run_condition"]


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


def get_study(name: str) -> Study:
    """The registered study ``name`` (built-ins are found in :mod:`biasloop.studies`)."""
    return STUDIES.get(name)


def run_condition(
    *, config: ExperimentConfig, condition: str, seed: int, store: RunStore,
    components: Components, track: Track | None,
) -> None:
    """Run one condition × seed of whatever study ``config.study`` names.

    Plug-ins load here too, so a worker process (a Ray task) has them registered.
    """
    load_plugins(config.plugins)
    get_study(config.study).run(config=config, condition=condition, seed=seed, store=store,
                                components=components, track=track)
