"""Config section of a sweep: a grid over config fields × seeds."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from biasloop.config.schema import Section


class SweepConfig(Section):
    """A grid of runs: every combination of ``grid`` values, each an independent run."""

    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted config field -> list of values, e.g. `{feedback.rule: [static, retention]}`.",
    )
