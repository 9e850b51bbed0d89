"""The ``simulate`` study's two entry points: check a config, run one condition × seed.

A run writes ``conditions/<condition>/seed-<seed>/metrics.parquet`` (every generation
at once: a simulation takes seconds, so it is one unit of work) and the runner merges
it into the run's ``metrics.parquet`` like the neural loop's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from biasloop.config.schema import ExperimentConfig
from biasloop.errors import ConfigError
from biasloop.store import RunStore, cached
from biasloop.tracking import Track

log = logging.getLogger("biasloop.simulate")


def check_groups(config: ExperimentConfig, task_name: str, groups: Sequence[str]) -> None:
    """Every per-group setting names exactly the task's groups, and ``min_share`` fits them."""
    expected = sorted(groups)
    for field, value in (("loop.initial_shares", config.loop.initial_shares),
                         ("simulate.initial_attributes", config.simulate.initial_attributes),
                         ("simulate.reference_attributes", config.simulate.reference_attributes)):
        if value is not None and sorted(value) != expected:
            raise ConfigError(f"{field} has groups {sorted(value)}; task {task_name!r} has "
                              f"groups {expected}; valid: one value per task group")
    if config.feedback.min_share * len(groups) > 1:
        raise ConfigError(
            f"feedback.min_share = {config.feedback.min_share}: × {len(groups)} groups of task "
            f"{task_name!r} exceeds 1; valid: at most {1 / len(groups):g}"
        )


def check_simulation(config: ExperimentConfig) -> None:
    """Fail before any folder is written: plug-in names and params, groups, unused sections."""
    from biasloop.config.inheritance import InheritanceConfig
    from biasloop.loop.feedback import check_feedback
    from biasloop.metrics.loop import LOOP_METRICS
    from biasloop.mitigate import check_mitigation
    from biasloop.tasks.base import build_task, validate_task_params

    if "inheritance" in config.model_fields_set and config.inheritance != InheritanceConfig():
        raise ConfigError("inheritance: set on a `study: simulate` run, which does not use it; "
                          "remove the section or set study: inheritance")
    check_feedback(config.feedback)
    check_mitigation(config.mitigation)
    for index, name in enumerate(config.metrics.names or []):
        LOOP_METRICS.get(name, where=f"metrics.names[{index}]")
    validate_task_params(config.task)
    task = build_task(config.task, seed=config.seed)
    check_groups(config, task.name, tuple(task.groups))


def run_simulation(*, config: ExperimentConfig, condition: str, seed: int, store: RunStore,
                   components: Any, track: Track | None) -> None:
    """Simulate one condition × seed and write its metric rows (skipped if already written)."""
    from biasloop.simulate.dynamics import SimulationSettings, simulate
    from biasloop.simulate.metrics import metric_rows

    groups = tuple(components.task(config.task, seed).groups)

    def compute() -> pd.DataFrame:
        settings = SimulationSettings.from_config(config, groups, seed=seed, condition=condition)
        started = time.perf_counter()
        history = simulate(settings)
        elapsed = time.perf_counter() - started
        log.info("condition %s seed %d: %d generations simulated in %.2f s (%.0f per second)",
                 condition, seed, settings.generations, elapsed,
                 settings.generations / max(elapsed, 1e-9))
        return pd.DataFrame(metric_rows(history, settings, config.metrics.names))

    cached(store.path("conditions", condition, f"seed-{seed}", "metrics.parquet"), compute)
