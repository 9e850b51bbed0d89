"""The base of every config section, and checks shared by several sections."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def validate_seeds(value: list[int]) -> list[int]:
    """Seeds are distinct and in torch's and NumPy's range [0, 2**31 - 1]."""
    if any(s < 0 or s > 2**31 - 1 for s in value):
        raise ValueError("every seed must be between 0 and 2147483647")
    if len(set(value)) != len(value):
        raise ValueError("seeds must be distinct")
    return value


def _is_number(annotation: Any) -> bool:
    """``int``, ``float`` or an optional one (``int | None``)."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and get_origin(annotation) in (Union, UnionType) and all(
        a in (int, float, type(None)) for a in args
    ) and any(a in (int, float) for a in args)


def _boolean_number(annotation: Any, value: Any) -> bool:
    """``value`` holds a boolean where ``annotation`` wants a number (also inside a list or
    dict of numbers, e.g. ``initial_shares: {a: true}``)."""
    if isinstance(value, bool):
        return _is_number(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        return any(_boolean_number(a, value) for a in args if a is not type(None))
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return any(_boolean_number(args[1], v) for v in value.values())
    if isinstance(value, list) and origin in (list, tuple) and args:
        return any(_boolean_number(args[0], v) for v in value)
    return False


class Params(BaseModel):
    """Base of every config section and plug-in ``Params``: frozen, keyword-only, unknown
    keys rejected, and no boolean taken for a number (``generations: true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads True as 1; strict mode would also refuse "3" → 3,
        # which the CLI's overrides need, so only booleans are refused here.
        if info.field_name is not None and _boolean_number(
            cls.model_fields[info.field_name].annotation, value
        ):
            raise ValueError("a boolean is not a number; valid: a number")
        return value


class Section(Params):
    """Base for every config section: frozen, keyword-only, unknown keys rejected."""
