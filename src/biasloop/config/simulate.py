"""The ``simulate`` section: the mean-field simulator's response map and reward model.

Only ``study: simulate`` reads it (:mod:`biasloop.simulate`); every other setting of
the simulated loop (feedback rule, mitigation, λ, data policy, loop type, groups) is
the same config field the neural loop reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from biasloop.config.section import Section


class SimulateConfig(Section):
    """The mean-field simulator (`study: simulate`): how the model responds to its training mix.

    The model is its attribute distribution `a_t`; training on a set whose group mix is
    `m_t` gives `a_{t+1} = (1 − ρ)·a_base + ρ·m_t` (`a_base = a_t` for `loop.type:
    incremental`, `a_0` for `retrain`), and quality is `q_t(g) = q_min + (q_max −
    q_min)·a_t(g)^κ`. See docs/simulator.md.
    """

    rate: float = Field(
        0.5, ge=0.0, le=1.0,
        description="ρ: how far one round of training moves the model's attribute "
        "distribution toward the group mix of its training set (0: not at all, 1: all the way).",
    )
    quality_min: float = Field(
        0.2, ge=0.0, le=1.0, description="q_min: a group's quality when no response favours it."
    )
    quality_max: float = Field(
        0.8, ge=0.0, le=1.0, description="q_max: a group's quality when every response favours it."
    )
    exponent: float = Field(
        1.0, gt=0.0, le=100.0, description="κ: curvature of quality in the attribute share a(g)."
    )
    initial_attributes: dict[str, float] | None = Field(
        None,
        description="a_0(g), the base model's attribute distribution (normalised); "
        "`reference_attributes` when omitted.",
    )
    reference_attributes: dict[str, float] | None = Field(
        None,
        description="P_ref(g), the attribute distribution of the real reference data "
        "(normalised), against which preference bias is measured; uniform when omitted.",
    )
    reward: Literal["beta", "bernoulli"] = Field(
        "beta",
        description="Reward of a simulated candidate for group g: `beta` draws from "
        "Beta(c·q_t(g), c·(1 − q_t(g))), `bernoulli` is 1 with probability q_t(g) "
        "(pass/fail scorers such as math); both have mean q_t(g).",
    )
    reward_concentration: float = Field(
        10.0, gt=0.0, le=1e6, description="c of the `beta` reward: larger is less spread."
    )
    candidate_sets: int = Field(
        500, ge=1, le=1_000_000,
        description="Simulated candidate sets served to the curation plug-in each generation "
        "(split by p_t); the curation rates it gives are estimates with about "
        "1/sqrt(candidate_sets) error.",
    )

    @field_validator("initial_attributes", "reference_attributes")
    @classmethod
    def _distribution(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError(
                f"valid: non-negative values with a positive sum, one per group; got {value}"
            )
        return value

    @field_validator("quality_max")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        minimum = info.data.get("quality_min")
        if minimum is not None and value < minimum:
            raise ValueError(f"below simulate.quality_min = {minimum}; valid: quality_min <= "
                             "quality_max")
        return value
