"""The registered ``inheritance`` study: run one condition × seed (SPEC section 3).

The study lives in modules named for what they hold:

* :mod:`~biasloop.inherit.components`: names, evaluations and prompt composers built
  from the config;
* :mod:`~biasloop.inherit.checks`: :func:`check_inheritance`, run before any folder
  is written;
* :mod:`~biasloop.inherit.recipe`: :class:`InheritanceRun`, the study's steps and
  its run-store layout;
* :mod:`~biasloop.inherit.items`, :mod:`~biasloop.inherit.pools`,
  :mod:`~biasloop.inherit.keys`, :mod:`~biasloop.inherit.unit_metrics`: the fixed
  evaluation items, augmented pools, shared-work inputs and one model's metric table;
* :mod:`~biasloop.inherit.units`: the units (models) and their labels.

The names other modules import from here are re-exported.
"""

from __future__ import annotations

from typing import Any

from biasloop.config.schema import ExperimentConfig
from biasloop.inherit.checks import check_inheritance
from biasloop.inherit.components import (
    build_evaluations,
    composer_for,
    evaluation_settings_for,
    name_tables,
    pool_size,
)
from biasloop.inherit.recipe import InheritanceRun
from biasloop.inherit.units import NO_TYPE, Unit, parse_label
from biasloop.store import RunStore
from biasloop.tracking import Track, no_progress

__all__ = [
    "NO_TYPE",
    "InheritanceRun",
    "Unit",
    "build_evaluations",
    "check_inheritance",
    "composer_for",
    "evaluation_settings_for",
    "name_tables",
    "parse_label",
    "pool_size",
    "run_inheritance",
]


def run_inheritance(
    *,
    config: ExperimentConfig,
    condition: str,
    seed: int,
    store: RunStore,
    components: Any,
    track: Track | None,
) -> None:
    """Run the study for one condition × seed."""
    InheritanceRun(
        config=config,
        condition=condition,
        seed=seed,
        store=store,
        backend=lambda: components.backend(config.model),
        augmenter=(
            (lambda: components.backend(augmenter_model, cache_dir=store.path("cache", "api")))
            if (augmenter_model := config.inheritance.augmentation.model) is not None
            else None
        ),
        track=track or no_progress,
    ).run()
