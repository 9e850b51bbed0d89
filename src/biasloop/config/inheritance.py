"""Config section of the bias inheritance study (SPEC section 3)."""

from __future__ import annotations

from pydantic import Field

from biasloop.config.schema import Section


class InheritanceConfig(Section):
    """Bias generation, bias-ratio mixing, rounds and downstream evaluation."""

    bias_ratios: list[float] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.5],
        description="Grid of bias ratios γ = |D_a| / (|D_o| + |D_a|).",
    )
