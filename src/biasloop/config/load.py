"""Load configs from YAML, apply ``KEY.SUB=VALUE`` overrides, and validate.

Every failure is a :class:`~biasloop.errors.ConfigError` whose message is one
line naming the field path, the value given and what is valid.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from biasloop.config.schema import ExperimentConfig
from biasloop.errors import ConfigError, one_line

#: Nodes a config may expand to (YAML aliases can make a few lines huge).
MAX_CONFIG_NODES = 100_000


def check_plain_data(data: Any, *, where: str) -> None:
    """Refuse recursive YAML aliases and documents that expand to too many nodes."""
    count = 0
    stack: list[tuple[Any, frozenset[int]]] = [(data, frozenset())]
    while stack:
        node, ancestors = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(f"{where}: expands to more than {MAX_CONFIG_NODES} values "
                              "(YAML aliases?); write the values out")
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise ConfigError(f"{where}: holds a recursive YAML alias; valid configs are trees")
            children = node.values() if isinstance(node, dict) else node
            inner = ancestors | {id(node)}
            stack.extend((child, inner) for child in children)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (no arbitrary object construction)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    if text is None:
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(one_line(f"{where}: invalid YAML ({problem})")) from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of fields, got {type(data).__name__}")
    check_plain_data(data, where=str(path))
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.name=tiny-random"`` -> ``(["model", "name"], "tiny-random")``.

    The value is parsed as YAML, so ``seed=3`` gives an int, ``x=[1,2]`` a list and
    ``x=null`` None; quote it (``name='3'``) to keep a string.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ConfigError(f"override {shown!r} must look like KEY.SUB=VALUE, e.g. seed=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(one_line(f"override {key}: value nested too deeply")) from None
    check_plain_data(value, where=one_line(f"override {key}"))
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
                shown = repr(child) if len(repr(child)) <= 60 else repr(child)[:57] + "..."
                raise ConfigError(one_line(f"override {'.'.join(path)}: {where} is {shown}, not a section"))
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
    return one_line(f"{source}: {text}" if source else text)


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
    try:
        shown = json.dumps(given, default=str) if not isinstance(given, str) else repr(given)
    except ValueError:  # a value that refers to itself
        shown = type(given).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    where = f"{path} = {shown}" if path else f"value {shown}"
    return f"{where}: {message}"


def validate_config(data: Mapping[str, Any], *, source: str = "config") -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig`, including every condition."""
    check_plain_data(data, where=source)
    _refuse_non_finite(data, source=source)
    try:
        config = ExperimentConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model=ExperimentConfig, source=source)) from None
    # Each condition is the base config plus its overrides: validate them all now, so a
    # typo in the last condition fails before the first one starts.
    for name in config.conditions:
        condition_config(config, name, source=source)
    return config


def _refuse_non_finite(data: Any, *, source: str, path: str = "") -> None:
    """Refuse values a config cannot store faithfully as JSON.

    NaN and infinity pass range checks oddly; text with lone surrogates (e.g. YAML's
    ``"\\ud800"``) is not valid Unicode, and would change on its way through JSON.
    """
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(one_line(f"{source}: {path or 'value'} = {data}: must be a finite number"))
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(one_line(
                f"{source}: {path or 'value'} = {data.encode('utf-8', 'backslashreplace').decode()!r}"
                ": text with unpaired surrogates is not valid Unicode; valid: any UTF-8 text"
            )) from None
    if isinstance(data, dict):
        for key, value in data.items():
            _refuse_non_finite(value, source=source, path=f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _refuse_non_finite(value, source=source, path=f"{path}.{index}")


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
    try:
        merged = apply_overrides(base, items)
    except ConfigError as err:
        raise ConfigError(f"{source}: conditions.{name}.{str(err).removeprefix('override ')}") from None
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
    if path is not None and isinstance(data.get("plugins"), list):
        from biasloop.plugins import resolve_paths

        # Plug-in files named in a YAML file travel with it: relative to its folder.
        data["plugins"] = resolve_paths([str(s) for s in data["plugins"]], Path(path).parent)
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
