"""Each feedback rule pinned to a hand-computed value."""

from __future__ import annotations

import math

import pytest

from biasloop.config import FeedbackConfig
from biasloop.loop.feedback import FEEDBACK_RULES, PopulationState


def test_static_keeps_shares():
    state = PopulationState.from_shares({"a": 0.7, "b": 0.3})
    new = FEEDBACK_RULES.get("static")(state, {"a": 0.9, "b": 0.1}, FeedbackConfig())
    assert new.shares == pytest.approx({"a": 0.7, "b": 0.3})


def test_retention_matches_hand_computation():
    # N = (0.5, 0.5); ν(q) = clip(0.2 + 0.8 q, 0, 1): ν(1.0) = 1.0, ν(0.25) = 0.4; b = 0.1
    # N' = (0.5*1.0 + 0.1, 0.5*0.4 + 0.1) = (0.6, 0.3) -> p = (2/3, 1/3)
    config = FeedbackConfig(alpha=0.2, beta=0.8, arrivals=0.1)
    new = FEEDBACK_RULES.get("retention")(PopulationState.uniform(["a", "b"]), {"a": 1.0, "b": 0.25}, config)
    assert new.population == pytest.approx({"a": 0.6, "b": 0.3})
    assert new.shares == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_retention_clips_nu_to_unit_interval():
    config = FeedbackConfig(alpha=0.9, beta=0.5)  # ν(1) = 1.4 -> 1
    new = FEEDBACK_RULES.get("retention")(PopulationState({"a": 2.0, "b": 2.0}), {"a": 1.0, "b": -4.0}, config)
    assert new.population == pytest.approx({"a": 2.0, "b": 0.0})


def test_exponential_matches_hand_computation():
    # p = (0.5, 0.5), q = (0.8, 0.2): mean = 0.5; w = (0.5 e^{η·0.3}, 0.5 e^{-η·0.3}) with η = 2
    config = FeedbackConfig(eta=2.0)
    new = FEEDBACK_RULES.get("exponential")(PopulationState.uniform(["a", "b"]), {"a": 0.8, "b": 0.2}, config)
    expected_a = math.exp(0.6) / (math.exp(0.6) + math.exp(-0.6))
    assert new.shares["a"] == pytest.approx(expected_a)
    assert new.shares["b"] == pytest.approx(1 - expected_a)


def test_min_share_floor_is_respected():
    config = FeedbackConfig(alpha=0.0, beta=1.0, min_share=0.1)
    new = FEEDBACK_RULES.get("retention")(PopulationState.uniform(["a", "b"]), {"a": 1.0, "b": 0.0}, config)
    # shares (1, 0) floored to (1, 0.1), renormalised: (1/1.1, 0.1/1.1)
    assert new.shares["b"] == pytest.approx(0.1 / 1.1)
