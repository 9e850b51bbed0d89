"""The units of the inheritance study (one model each) and the labels they are reported under."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NO_TYPE = "none"  # bias_type of the base model


@dataclass(frozen=True)
class Unit:
    """One model of the study: the base model, or a fine-tune at (round, ratio, type)."""

    round: int
    bias_ratio: float | None = None
    bias_type: str = NO_TYPE

    @property
    def is_base(self) -> bool:
        return self.bias_ratio is None

    def parts(self) -> tuple[str, ...]:
        if self.is_base:
            return ("base",)
        return (f"round-{self.round}", f"ratio-{self.bias_ratio:g}", self.bias_type)

    def label(self, condition: str = "main") -> str:
        """``base`` or ``ratio=0.2,type=contextual_explicit,round=1`` (prefixed for named ones)."""
        body = (
            "base"
            if self.is_base
            else f"ratio={self.bias_ratio:g},type={self.bias_type},round={self.round}"
        )
        return body if condition == "main" else f"{condition}/{body}"


_LABEL = re.compile(
    r"^(?:(?P<prefix>.+)/)?(?:base|ratio=(?P<ratio>[0-9.eE+-]+),type=(?P<type>[^,]+),round=(?P<round>\d+))$"
)


def parse_label(label: str) -> dict[str, Any] | None:
    """``{"prefix", "bias_ratio", "bias_type", "round"}`` of a condition label (None if not one)."""
    match = _LABEL.match(label)
    if not match:
        return None
    if match.group("ratio") is None:
        return {
            "prefix": match.group("prefix") or "",
            "bias_ratio": None,
            "bias_type": NO_TYPE,
            "round": 0,
        }
    return {
        "prefix": match.group("prefix") or "",
        "bias_ratio": float(match.group("ratio")),
        "bias_type": match.group("type"),
        "round": int(match.group("round")),
    }
