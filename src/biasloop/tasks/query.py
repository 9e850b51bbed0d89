"""A query: what a user of one group asks the model (the unit tasks and data sources share)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "eval"]


@dataclass(frozen=True, kw_only=True)
class Query:
    """One query from a group, with the real reference response when the source has one."""

    id: str
    group: str
    prompt: str
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
