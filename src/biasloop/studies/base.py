"""What a study is to the runner: run one condition × seed, check a config, plot a summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from biasloop.config.schema import ExperimentConfig
from biasloop.registry import Registry
from biasloop.tracking import Track, no_progress  # noqa: F401  (re-exported for studies)


@dataclass(frozen=True, kw_only=True)
class Study:
    """One study: ``run`` a condition × seed, ``check`` a config before work, ``plot`` a summary.

    ``run(config=, condition=, seed=, store=, components=, track=)`` does the work of one
    condition and seed into the run store; ``check(config)`` raises a one-line
    ConfigError for anything wrong that can be seen before a model loads. A study
    with ``loads_model=False`` (the simulator) runs with no model at all.
    """

    run: Callable[..., None]
    check: Callable[[ExperimentConfig], None]
    plot: Callable[[pd.DataFrame, Path], list[Path]]
    loads_model: bool = True  # False: `model.name` is not resolved before the run
    summary: str = ""  # one line, shown by `biasloop list`


STUDIES: Registry[Study] = Registry("study", field="study", discover="biasloop.studies")
