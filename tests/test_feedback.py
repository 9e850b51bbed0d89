"""Each feedback rule pinned to a hand-computed value."""

from __future__ import annotations

import math

import pytest

from biasloop.config import FeedbackConfig, load_config
from biasloop.errors import ConfigError
from biasloop.loop.feedback import FEEDBACK_RULES, PopulationState, feedback_params, floor_shares

STATIC = FEEDBACK_RULES.get("static")
RETENTION = FEEDBACK_RULES.get("retention")
EXPONENTIAL = FEEDBACK_RULES.get("exponential")


def test_static_keeps_shares():
    state = PopulationState.from_shares({"a": 0.7, "b": 0.3})
    new = STATIC(state, {"a": 0.9, "b": 0.1})
    assert new.shares == pytest.approx({"a": 0.7, "b": 0.3})


def test_retention_matches_hand_computation():
    # N = (0.5, 0.5); ν(q) = clip(0.2 + 0.8 q, 0, 1): ν(1.0) = 1.0, ν(0.25) = 0.4; b = 0.1
    # N' = (0.5*1.0 + 0.1, 0.5*0.4 + 0.1) = (0.6, 0.3) -> p = (2/3, 1/3)
    params = RETENTION.Params(alpha=0.2, beta=0.8, arrivals=0.1)
    new = RETENTION(PopulationState.uniform(["a", "b"]), {"a": 1.0, "b": 0.25}, params)
    assert new.population == pytest.approx({"a": 0.6, "b": 0.3})
    assert new.shares == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_retention_clips_nu_to_unit_interval():
    params = RETENTION.Params(alpha=0.9, beta=0.5)  # ν(1) = 1.4 -> 1
    new = RETENTION(PopulationState({"a": 2.0, "b": 2.0}), {"a": 1.0, "b": -4.0}, params)
    assert new.population == pytest.approx({"a": 2.0, "b": 0.0})


def test_exponential_matches_hand_computation():
    # p = (0.5, 0.5), q = (0.8, 0.2): mean = 0.5; w = (0.5 e^{η·0.3}, 0.5 e^{-η·0.3}) with η = 2
    params = EXPONENTIAL.Params(eta=2.0)
    new = EXPONENTIAL(PopulationState.uniform(["a", "b"]), {"a": 0.8, "b": 0.2}, params)
    expected_a = math.exp(0.6) / (math.exp(0.6) + math.exp(-0.6))
    assert new.shares["a"] == pytest.approx(expected_a)
    assert new.shares["b"] == pytest.approx(1 - expected_a)


def test_min_share_floor_holds_exactly_after_renormalisation():
    params = RETENTION.Params(alpha=0.0, beta=1.0)
    new = RETENTION(PopulationState.uniform(["a", "b"]), {"a": 1.0, "b": 0.0}, params, min_share=0.1)
    # shares (1, 0): b is raised to exactly the floor 0.1, a keeps the rest 0.9
    assert new.shares == pytest.approx({"a": 0.9, "b": 0.1}, abs=1e-12)
    new = RETENTION(PopulationState.uniform(["a", "b"]), {"a": 1.0, "b": 0.0}, params, min_share=0.2)
    assert new.shares == pytest.approx({"a": 0.8, "b": 0.2}, abs=1e-12)


@pytest.mark.parametrize(
    ("shares", "floor", "expected"),
    [
        # 2 groups: the low one is raised to the floor, the other takes the rest.
        ({"a": 0.95, "b": 0.05}, 0.1, {"a": 0.9, "b": 0.1}),
        # 3 groups: c raised to 0.2; a and b share 0.8 in proportion 6:3.
        ({"a": 0.6, "b": 0.3, "c": 0.1}, 0.2, {"a": 0.8 * 6 / 9, "b": 0.8 * 3 / 9, "c": 0.2}),
        # 4 groups: raising d pushes c under the floor too (a cascade);
        # a and b then share 1 - 2·0.15 = 0.7 in proportion 7:2.
        ({"a": 0.7, "b": 0.2, "c": 0.09, "d": 0.01}, 0.15,
         {"a": 0.7 * 7 / 9, "b": 0.7 * 2 / 9, "c": 0.15, "d": 0.15}),
        # 5 groups at a floor of exactly 1/5: everyone is equal.
        ({"a": 0.96, "b": 0.01, "c": 0.01, "d": 0.01, "e": 0.01}, 0.2,
         {g: 0.2 for g in "abcde"}),
        # Shares already above the floor are unchanged.
        ({"a": 0.5, "b": 0.3, "c": 0.2}, 0.1, {"a": 0.5, "b": 0.3, "c": 0.2}),
    ],
)
def test_floor_shares_matches_hand_computation(shares, floor, expected):
    floored = floor_shares(shares, floor)
    assert floored == pytest.approx(expected, abs=1e-12)
    assert sum(floored.values()) == pytest.approx(1.0, abs=1e-12)
    assert min(floored.values()) >= floor - 1e-12


@pytest.mark.parametrize("groups", [2, 3, 4, 5])
def test_min_share_holds_for_every_rule_and_group_count(groups):
    names = [f"g{i}" for i in range(groups)]
    floor = 0.5 / groups
    quality = {g: (1.0 if i == 0 else 0.0) for i, g in enumerate(names)}
    state = PopulationState.uniform(names, total=100.0)
    for rule, params in ((RETENTION, RETENTION.Params(alpha=0.0, beta=1.0)),
                         (EXPONENTIAL, EXPONENTIAL.Params(eta=20.0))):
        current = state
        for _ in range(10):
            current = rule(current, quality, params, min_share=floor)
            assert min(current.shares.values()) >= floor - 1e-12
            assert sum(current.population.values()) > 0


def test_floor_shares_refuses_an_impossible_floor():
    with pytest.raises(ValueError, match="min_share"):
        floor_shares({"a": 0.5, "b": 0.3, "c": 0.2}, 0.4)


def test_retention_counts_users_from_the_initial_population():
    # N_0 = 100 per group (initial_population 200, uniform), b = 5 users per generation,
    # ν(q) = clip(0 + 1·q, 0, 1) with q = (0.9, 0.5):
    #   t=1: N = (100·0.9 + 5, 100·0.5 + 5) = (95, 55)
    #   t=2: N = (95·0.9 + 5, 55·0.5 + 5) = (90.5, 32.5)
    #   t=3: N = (90.5·0.9 + 5, 32.5·0.5 + 5) = (86.45, 21.25)
    config = FeedbackConfig(initial_population=200.0,
                            params={"retention": {"alpha": 0.0, "beta": 1.0, "arrivals": 5.0}})
    state = PopulationState.uniform(["a", "b"], total=config.initial_population)
    assert state.population == {"a": 100.0, "b": 100.0}
    trajectory = []
    for _ in range(3):
        state = RETENTION(state, {"a": 0.9, "b": 0.5}, feedback_params(config, "retention"))
        trajectory.append(state.population)
    assert trajectory == [
        pytest.approx({"a": 95.0, "b": 55.0}),
        pytest.approx({"a": 90.5, "b": 32.5}),
        pytest.approx({"a": 86.45, "b": 21.25}),
    ]
    assert state.shares["a"] == pytest.approx(86.45 / (86.45 + 21.25))


def test_arrivals_are_users_so_the_initial_population_sets_their_weight():
    # The same b = 5 users matters less in a larger population.
    quality = {"a": 1.0, "b": 0.0}
    params = RETENTION.Params(alpha=0.0, beta=1.0, arrivals=5.0)
    share_small = RETENTION(PopulationState.uniform(["a", "b"], total=20.0), quality, params).shares["b"]
    share_large = RETENTION(PopulationState.uniform(["a", "b"], total=2000.0), quality, params).shares["b"]
    assert share_small == pytest.approx(5 / (15 + 5))
    assert share_large == pytest.approx(5 / (1005 + 5))


def test_an_extinct_population_is_flagged_and_falls_back_to_uniform_shares():
    params = RETENTION.Params(alpha=0.0, beta=1.0)
    new = RETENTION(PopulationState.uniform(["a", "b"]), {"a": 0.0, "b": 0.0}, params)
    assert new.extinct
    assert new.shares == {"a": 0.5, "b": 0.5}
    assert not PopulationState.uniform(["a", "b"]).extinct


def test_each_rule_reads_its_own_params_so_conditions_can_switch_rules():
    config = FeedbackConfig(rule="static", params={"retention": {"alpha": 0.3, "beta": 0.7},
                                                   "exponential": {"eta": 2.0}})
    assert feedback_params(config) == STATIC.Params()
    assert feedback_params(config, "retention") == RETENTION.Params(alpha=0.3, beta=0.7)
    assert feedback_params(config, "exponential").eta == 2.0
    assert feedback_params(FeedbackConfig(), "retention") == RETENTION.Params()  # defaults


def test_the_old_top_level_keys_still_work_with_a_deprecation_warning():
    with pytest.warns(FutureWarning) as caught:
        config = FeedbackConfig(alpha=0.2, beta=0.9, eta=3.0)
    assert [str(w.message) for w in caught] == [
        f"feedback.{key} is deprecated and will be removed; use feedback.params.{rule}.{key}"
        for key, rule in (("alpha", "retention"), ("beta", "retention"), ("eta", "exponential"))
    ]
    assert config.params == {"retention": {"alpha": 0.2, "beta": 0.9}, "exponential": {"eta": 3.0}}
    with pytest.warns(FutureWarning):
        loaded = load_config(None, ["feedback.rule=retention", "feedback.alpha=0.1"])
    assert feedback_params(loaded.feedback) == RETENTION.Params(alpha=0.1)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"retention": {"alpha": 0.1, "gamma": 1}}, r"unknown field 'feedback\.params\.retention\.gamma'; valid: alpha, arrivals, beta"),
        ({"exponential": {"eta": -1}}, r"feedback\.params\.exponential\.eta = -1: Input should be greater than or equal to 0"),
        ({"retension": {"alpha": 0.1}}, r"feedback\.params\.retension: unknown feedback rule 'retension' \(did you mean 'retention'\?\)"),
    ],
)
def test_bad_rule_params_fail_before_work_in_one_line(params, expected):
    from biasloop.runner.experiment import check_plugins

    config = load_config(None, ["model.name=tiny-random", f"feedback.params={params}"])
    with pytest.raises(ConfigError, match=expected) as info:
        check_plugins(config)
    assert "\n" not in str(info.value)
