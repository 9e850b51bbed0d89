"""Generate the configuration reference (``docs/configuration.md``) from the config models."""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from biasloop.config.schema import ExperimentConfig


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not hasattr(annotation, "__args__") else None
    return text or str(annotation).replace("typing.", "")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value, default=str)}`"


def _constraints(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for name, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, name, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def markdown_reference() -> str:
    """Every section and field of :class:`ExperimentConfig` as Markdown tables."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config models by `biasloop config reference`; do not edit by hand.",
        "Every field can be set in YAML, from Python, or on the command line as",
        "`SECTION.FIELD=VALUE`. Unknown fields, wrong types and out-of-range values are",
        "rejected before any work starts.",
        "",
    ]
    sections: list[tuple[str, type[BaseModel]]] = []
    top_rows = []
    for name, field in ExperimentConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections.append((name, annotation))
            continue
        top_rows.append((name, field))
    lines += ["## Top level", "", "| field | type | default | valid | description |", "|---|---|---|---|---|"]
    for name, field in top_rows:
        lines.append(
            f"| `{name}` | `{_type_name(field.annotation)}` | {_default(field)} | "
            f"{_constraints(field)} | {field.description or ''} |"
        )
    for section, model in sections:
        lines += _section_tables(section, model, level=2)
    return "\n".join(lines) + "\n"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (directly or as ``Model | None``), if any."""
    candidates = typing.get_args(annotation) or (annotation,)
    models = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _section_tables(path: str, model: type[BaseModel], *, level: int) -> list[str]:
    """A section's table, then one table per nested section below it."""
    lines = ["", f"{'#' * level} `{path}`", "", (model.__doc__ or "").strip(), "",
             "| field | type | default | valid | description |", "|---|---|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        lines.append(
            f"| `{path}.{name}` | `{_type_name(field.annotation)}` | {_default(field)} | "
            f"{_constraints(field)} | {field.description or ''} |"
        )
        inner = _nested_model(field.annotation)
        if inner is not None:
            keyed = typing.get_origin(field.annotation) is dict  # {key: section}
            nested.append((f"{path}.{name}{'.<key>' if keyed else ''}", inner))
    for inner_path, inner in nested:
        lines += _section_tables(inner_path, inner, level=min(level + 1, 4))
    return lines
