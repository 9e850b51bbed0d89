"""Load configs from YAML, apply ``KEY.SUB=VALUE`` overrides, and validate.

Every failure is a :class:`~biasloop.errors.ConfigError` whose message is one
line naming the field path, the value given and what is valid.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from biasloop.config.schema import ExperimentConfig
from biasloop.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (no arbitrary object construction)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where.strip().removeprefix('line ')}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of fields, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.name=tiny-random"`` -> ``(["model", "name"], "tiny-random")``.

    The value is parsed as YAML, so ``seed=3`` gives an int, ``x=[1,2]`` a list and
    ``x=null`` None; quote it (``name='3'``) to keep a string.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like KEY.SUB=VALUE, e.g. seed=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str | tuple[list[str], Any]]):
    """A deep copy of ``data`` with each dotted override set (intermediate maps created)."""
    result = copy.deepcopy(dict(data))
    for override in overrides:
        path, value = parse_override(override) if isinstance(override, str) else override
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"override {'.'.join(path)}: {where} is {child!r}, not a section")
            node = child
        node[path[-1]] = value
    return result


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The valid field names of the section at ``loc`` (for unknown-key errors)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else None


def format_validation_error(
    err: ValidationError, *, model: type[BaseModel], source: str = "", prefix: str = ""
) -> str:
    """One line: ``source: field.path = value: what is valid``, for the first problem."""
    text = _describe_problem(err, model=model, prefix=prefix)
    return f"{source}: {text}" if source else text


def _describe_problem(err: ValidationError, *, model: type[BaseModel], prefix: str) -> str:
    problem = err.errors()[0]
    loc = tuple(p for p in problem["loc"] if not str(p).startswith("function-"))
    path = prefix + ".".join(str(p) for p in loc)
    if problem["type"] == "extra_forbidden":
        valid = _field_names(model, loc[:-1])
        hint = f"; valid: {', '.join(valid)}" if valid else ""
        return f"unknown field {path!r}{hint}"
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "missing":
        return f"{path} is required"
    given = problem.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, str) else repr(given)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"{path} = {shown}" if path else f"value {shown}"
    return f"{where}: {message}"


def validate_config(data: Mapping[str, Any], *, source: str = "config") -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig`, including every condition."""
    try:
        config = ExperimentConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model=ExperimentConfig, source=source)) from None
    # Each condition is the base config plus its overrides: validate them all now, so a
    # typo in the last condition fails before the first one starts.
    for name in config.conditions:
        condition_config(config, name, source=source)
    return config


def condition_config(
    config: ExperimentConfig, name: str, *, source: str = "config"
) -> ExperimentConfig:
    """The resolved config of one named condition (base config + that condition's overrides)."""
    overrides = config.conditions[name]
    base = config.model_dump(mode="json")
    base["conditions"] = {}
    items = [(str(key).split("."), value) for key, value in overrides.items()]
    for path, _ in items:
        if path[0] in {"conditions", "seed", "seeds", "name", "study"}:
            raise ConfigError(
                f"{source}: conditions.{name}.{'.'.join(path)} cannot be set per condition; "
                "valid: any field of model, generation, training, task, loop, feedback, "
                "mitigation, metrics"
            )
    merged = apply_overrides(base, items)
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(
                err, model=ExperimentConfig, source=source, prefix=f"conditions.{name}."
            )
        ) from None


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = ()
) -> ExperimentConfig:
    """Read ``path`` (YAML; None for all defaults), apply overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return validate_config(data, source=str(path) if path is not None else "config")


def config_hash(config: ExperimentConfig) -> str:
    """SHA-256 of the canonical JSON of the resolved config (short, 16 hex digits)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def condition_names(config: ExperimentConfig) -> list[str]:
    """Condition names in config order; a config without conditions has one, ``main``."""
    return list(config.conditions) or ["main"]


def resolved_condition(config: ExperimentConfig, name: str) -> ExperimentConfig:
    """The config of a condition, or the config itself for the implicit ``main``."""
    return config if not config.conditions else condition_config(config, name)
