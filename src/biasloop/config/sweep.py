"""Config section of a sweep: a grid over config fields × seeds, and where the runs execute.

A sweep turns one experiment config into many independent runs: every
combination of the ``grid`` values, each with every seed. The grid can be
written flat or nested, in YAML or on the command line::

    >>> from biasloop.config.sweep import SweepConfig
    >>> SweepConfig(grid={"feedback": {"rule": ["static", "retention"]}}).grid
    {'feedback.rule': ['static', 'retention']}
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from biasloop.config.section import Section, validate_seeds

# A dotted path of config field names, e.g. ``feedback.rule`` or ``task.params.topics``.
_AXIS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*")
# Fields a grid may not vary: the sweep itself, and seeds (they are ``sweep.seeds``).
_NOT_AXES = {"sweep": "a sweep cannot sweep itself", "seed": "use sweep.seeds",
             "seeds": "use sweep.seeds"}


def _flatten_grid(value: Any, prefix: str = "") -> Any:
    """``{feedback: {rule: [a, b]}}`` -> ``{"feedback.rule": [a, b]}``; lists end a path."""
    if not isinstance(value, dict):
        return value
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            for sub, values in _flatten_grid(item, path).items():
                if sub in flat:
                    raise ValueError(f"axis {sub!r} is given twice")
                flat[sub] = values
        else:
            if path in flat:
                raise ValueError(f"axis {path!r} is given twice")
            flat[path] = item
    return flat


class RunResources(Section):
    """What each run of a sweep reserves."""

    cpus: float = Field(
        1.0, gt=0, le=1024,
        description="CPUs a run reserves on Ray; under every executor torch uses this many "
        "threads (rounded down, at least 1), so results do not depend on the executor.",
    )
    gpus: float = Field(
        0.0, ge=0, le=64,
        description="GPUs a run reserves on Ray (a fraction shares one GPU between runs).",
    )
    memory_gb: float | None = Field(
        None, gt=0, description="Memory a run reserves on Ray, in GiB; none reserves nothing."
    )


class SweepConfig(Section):
    """A grid of runs: every combination of ``grid`` values × ``seeds``, each an independent run."""

    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted config field -> list of values, e.g. `{feedback.rule: [static, "
        "retention]}`; nested maps are read as dotted paths. Every combination is one run.",
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="Seeds each grid point runs with, one run per seed; empty means the "
        "config's `seeds` (or `seed`).",
    )
    executor: str = Field(
        "local", description="Registered executor: `local` (this machine) or `ray` (a Ray cluster)."
    )
    max_parallel: int | None = Field(
        None, ge=1, le=4096,
        description="Runs at once. `local`: none or 1 runs them one after another in this "
        "process, N > 1 in N worker processes; `ray`: a cap on runs in flight (none: as many "
        "as the cluster's resources allow).",
    )
    address: str | None = Field(
        None,
        description="`ray` only: the cluster to connect to (`auto`, `HOST:PORT` or "
        "`ray://HOST:10001`); none starts a Ray instance on this machine.",
    )
    resources_per_run: RunResources = Field(
        default_factory=RunResources,
        description="What each run reserves: `{cpus: 1, gpus: 0, memory_gb: null}`. `cpus` also "
        "sets torch's threads under every executor; `gpus` and `memory_gb` need `ray`.",
    )
    report: bool = Field(True, description="Write the sweep's `report.html` after the runs.")

    @field_validator("grid", mode="before")
    @classmethod
    def _flat_grid(cls, value: Any) -> Any:
        return _flatten_grid(value)

    @field_validator("grid")
    @classmethod
    def _valid_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for axis, values in value.items():
            if not _AXIS.fullmatch(axis):
                raise ValueError(f"axis {axis!r} must be a dotted config field, e.g. feedback.rule")
            top = axis.split(".")[0]
            if top in _NOT_AXES:
                raise ValueError(f"axis {axis!r} cannot be swept ({_NOT_AXES[top]})")
            if not values:
                raise ValueError(f"axis {axis!r} lists no values; give at least one")
            seen: set[str] = set()
            for item in values:
                key = json.dumps(item, sort_keys=True, default=str)
                if key in seen:
                    raise ValueError(f"axis {axis!r} lists {item!r} twice")
                seen.add(key)
        return value

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, value: list[int]) -> list[int]:
        return validate_seeds(value)

    @field_validator("executor", "address")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    # Unsupported combinations fail at setup, not after the first run. ``executor`` is
    # declared before these fields, so it is already validated when they are.
    @field_validator("address")
    @classmethod
    def _address_needs_ray(cls, value: str | None, info: ValidationInfo) -> str | None:
        executor = info.data.get("executor")
        if value is not None and executor is not None and executor != "ray":
            raise ValueError(f"needs executor 'ray', not {executor!r}")
        return value

    @field_validator("resources_per_run")
    @classmethod
    def _reservations_need_ray(cls, value: RunResources, info: ValidationInfo) -> RunResources:
        executor = info.data.get("executor")
        if executor is None or executor == "ray":
            return value
        if value.gpus > 0:
            raise ValueError(f"gpus = {value.gpus:g} needs executor 'ray' (the {executor!r} "
                             "executor reserves no GPUs)")
        if value.memory_gb is not None:
            raise ValueError(f"memory_gb needs executor 'ray', not {executor!r}")
        return value
