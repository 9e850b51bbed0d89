"""The base of every config section, and checks shared by several sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


def validate_seeds(value: list[int]) -> list[int]:
    """Seeds are distinct and in torch's and NumPy's range [0, 2**31 - 1]."""
    if any(s < 0 or s > 2**31 - 1 for s in value):
        raise ValueError("every seed must be between 0 and 2147483647")
    if len(set(value)) != len(value):
        raise ValueError("seeds must be distinct")
    return value


class Section(BaseModel):
    """Base for every config section: frozen, keyword-only, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)
