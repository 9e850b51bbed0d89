"""The mean-field simulator: its update pinned to hand computations, its plug-ins, its fit."""

from __future__ import annotations

import doctest
import importlib
import time

import numpy as np
import pytest

from biasloop.config import ExperimentConfig
from biasloop.errors import ConfigError
from biasloop.loop.feedback import FEEDBACK_RULES, PopulationState
from biasloop.simulate import (
    ResponseParams,
    SimulationSettings,
    fit_trajectory,
    real_size,
    simulate,
    step,
    synthetic_generations,
    training_mix,
)
from biasloop.simulate.dynamics import SimulationState
from biasloop.simulate.fit import trajectory_frame

GROUPS = ["concise", "detailed"]


def settings_of(**sections) -> SimulationSettings:
    return SimulationSettings.from_config(ExperimentConfig(study="simulate", **sections), GROUPS)


HAND = dict(
    loop={"type": "incremental", "generations": 2, "queries_per_generation": 64,
          "synthetic_fraction": 0.75, "initial_shares": {"concise": 0.6, "detailed": 0.4}},
    feedback={"rule": "retention", "params": {"retention": {"alpha": 0.3, "beta": 0.7}}},
    simulate={"rate": 0.4, "quality_min": 0.1, "quality_max": 0.9, "exponent": 2.0,
              "initial_attributes": {"concise": 0.7, "detailed": 0.3},
              "candidate_sets": 50},
)


def test_one_generation_update_equals_a_hand_computation():
    generation, following = step(SimulationState.initial(settings_of(**HAND)), settings_of(**HAND))
    # q_0(g) = 0.1 + 0.8·a_0(g)²
    assert generation.quality == pytest.approx({"concise": 0.492, "detailed": 0.172})
    # retention: N_1 = N_0·clip(0.3 + 0.7·q_0), N_0 = 100·p_0
    n_concise, n_detailed = 60 * (0.3 + 0.7 * 0.492), 40 * (0.3 + 0.7 * 0.172)
    assert following.population.population == pytest.approx(
        {"concise": n_concise, "detailed": n_detailed})
    p1 = n_concise / (n_concise + n_detailed)
    # no mitigation: every served query accepted, S = 64·p_0 = (38.4, 25.6);
    # λ = 0.75: |R| = 64·0.25/0.75 real examples drawn by p_1
    real = 64 * 0.25 / 0.75
    mix_concise = (38.4 + real * p1) / (64 + real)
    assert generation.mix == pytest.approx({"concise": mix_concise, "detailed": 1 - mix_concise})
    # incremental: a_1 = 0.6·a_0 + 0.4·m_0
    a1 = 0.6 * 0.7 + 0.4 * mix_concise
    assert following.attributes == pytest.approx({"concise": a1, "detailed": 1 - a1})
    assert following.quality(settings_of(**HAND))["concise"] == pytest.approx(0.1 + 0.8 * a1 ** 2)


def test_the_step_calls_the_registered_feedback_rule_with_its_params():
    settings = settings_of(**{**HAND, "feedback": {"rule": "exponential",
                                                    "params": {"exponential": {"eta": 3.0}}}})
    state = SimulationState.initial(settings)
    generation, following = step(state, settings)
    expected = FEEDBACK_RULES.get("exponential")(
        state.population, generation.quality, settings.feedback_params)
    assert following.population.shares == pytest.approx(expected.shares)
    assert settings.feedback_params.eta == 3.0


def test_retrain_trains_from_the_base_model_attributes():
    settings = settings_of(**{**HAND, "loop": {**HAND["loop"], "type": "retrain"}})
    history = simulate(settings)
    for before, after in zip(history, history[1:]):
        expected = {g: 0.6 * settings.initial_attributes[g] + 0.4 * before.mix[g] for g in GROUPS}
        assert after.state.attributes == pytest.approx(expected)


def test_assembly_follows_the_neural_loops_rules():
    assert synthetic_generations(3, "replace") == [3]
    assert synthetic_generations(3, "accumulate") == [0, 1, 2, 3]
    assert real_size(30, synthetic_fraction=1.0, queries_per_generation=64) == 0
    assert real_size(30, synthetic_fraction=0.0, queries_per_generation=64) == 64
    # accumulate: S = S_0 + S_1 = (10, 30); λ = 0.5: |R| = 40 real, by p = (0.75, 0.25)
    mix = training_mix([{"a": 10.0, "b": 10.0}, {"a": 0.0, "b": 20.0}], {"a": 0.75, "b": 0.25},
                       synthetic_fraction=0.5, queries_per_generation=64)
    assert mix == pytest.approx({"a": (10 + 30) / 80, "b": (30 + 10) / 80})
    # λ = 0: only n real examples, by p
    assert training_mix([{"a": 5.0, "b": 0.0}], {"a": 0.75, "b": 0.25}, synthetic_fraction=0.0,
                        queries_per_generation=64) == pytest.approx({"a": 0.75, "b": 0.25})
    assert training_mix([{"a": 0.0, "b": 0.0}], {"a": 0.5, "b": 0.5}, synthetic_fraction=1.0,
                        queries_per_generation=64) is None


def test_accumulate_keeps_every_earlier_accepted_set():
    settings = settings_of(**{**HAND, "loop": {**HAND["loop"], "data_policy": "accumulate",
                                               "synthetic_fraction": 1.0}})
    history = simulate(settings)
    accepted = [
        {g: 64 * h.state.population.shares[g] for g in GROUPS} for h in history[:2]
    ]  # no mitigation: A_t = n·p_t
    total = {g: accepted[0][g] + accepted[1][g] for g in GROUPS}
    assert history[1].mix == pytest.approx({g: total[g] / sum(total.values()) for g in GROUPS})


def test_reward_rejection_accepts_as_the_quality_model_says():
    """Best of k = 2 Bernoulli(q) rewards reaches τ = 0.5 with probability 1 − (1 − q)²."""
    settings = settings_of(
        loop={"generations": 1, "initial_shares": {"concise": 0.5, "detailed": 0.5}},
        mitigation={"name": "reward_rejection", "candidates": 2, "threshold": 0.5},
        simulate={"reward": "bernoulli", "candidate_sets": 4000, "quality_min": 0.0,
                  "quality_max": 1.0, "initial_attributes": {"concise": 0.8, "detailed": 0.2}},
    )
    generation = simulate(settings)[0]
    for group, q in (("concise", 0.8), ("detailed", 0.2)):
        assert generation.curation.acceptance_rate[group] == pytest.approx(1 - (1 - q) ** 2,
                                                                           abs=0.03)
    assert generation.mix["concise"] > 0.5  # curation skews the training mix


def test_balanced_rejection_holds_the_mix_to_the_target_shares():
    settings = settings_of(
        loop={"generations": 1},
        mitigation={"name": "balanced_reward_rejection", "candidates": 4, "threshold": 0.5},
        simulate={"initial_attributes": {"concise": 0.8, "detailed": 0.2}, "quality_min": 0.1,
                  "quality_max": 0.9},
    )
    assert simulate(settings)[0].mix == pytest.approx({"concise": 0.5, "detailed": 0.5}, abs=0.01)


def test_an_empty_training_set_leaves_the_model_as_it_is():
    settings = settings_of(
        loop={"type": "incremental", "generations": 2},
        mitigation={"name": "reward_rejection", "threshold": 1.0},
        simulate={"reward": "beta", "initial_attributes": {"concise": 0.7, "detailed": 0.3}},
    )
    history = simulate(settings)
    assert history[0].mix is None
    assert history[2].state.attributes == pytest.approx({"concise": 0.7, "detailed": 0.3})


def test_a_simulation_repeats_exactly_with_its_seed():
    settings = settings_of(mitigation={"name": "random_rejection", "candidates": 2},
                           loop={"generations": 5})
    first, second = simulate(settings), simulate(settings)
    assert [g.state.attributes for g in first] == [g.state.attributes for g in second]


def test_metric_rows_use_the_neural_loops_names_and_columns():
    from biasloop.simulate.metrics import metric_rows

    settings = settings_of(**HAND)
    rows = metric_rows(simulate(settings), settings)
    assert set(rows[0]) == {"generation", "condition", "seed", "group", "metric", "value",
                            "ci_low", "ci_high", "n"}
    at = {(r["generation"], r["metric"], r["group"]): r["value"] for r in rows}
    assert at[(0, "disparate_bias", "")] == pytest.approx(0.492 - 0.172)
    assert at[(0, "disparate_ratio", "")] == pytest.approx(0.172 / 0.492)
    assert at[(0, "preference_bias", "")] == pytest.approx(0.2)  # ½(|0.7−0.5| + |0.3−0.5|)
    assert at[(0, "majority_lean", "")] == pytest.approx(0.2)
    assert at[(0, "group_share", "detailed")] == pytest.approx(0.4)
    assert at[(0, "acceptance_rate", "concise")] == 1.0
    assert (2, "acceptance_rate", "concise") not in at  # none after the last model
    only = metric_rows(simulate(settings), settings, names=["quality"])
    assert {r["metric"] for r in only} == {"quality"}


def test_hundreds_of_generations_take_seconds():
    settings = settings_of(loop={"generations": 300, "type": "incremental"},
                           feedback={"rule": "retention"},
                           simulate={"initial_attributes": {"concise": 0.6, "detailed": 0.4}})
    simulate(settings.replace(generations=2))  # imports and first-use costs
    started = time.perf_counter()
    history = simulate(settings)
    elapsed = time.perf_counter() - started
    print(f"300 generations in {elapsed:.2f} s ({300 / elapsed:.0f} per second)")
    assert len(history) == 301
    assert elapsed < 30  # typically 1–3 s on 2 shared cores


KNOWN = ResponseParams(rate=0.3, quality_min=0.2, quality_max=0.9, exponent=1.5)


def test_the_fit_recovers_known_parameters_from_noisy_trajectories():
    settings = settings_of(
        loop={"type": "incremental", "generations": 20},
        feedback={"rule": "exponential", "params": {"exponential": {"eta": 3.0}}},
        simulate={"rate": KNOWN.rate, "quality_min": KNOWN.quality_min,
                  "quality_max": KNOWN.quality_max, "exponent": KNOWN.exponent,
                  "initial_attributes": {"concise": 0.65, "detailed": 0.35},
                  "candidate_sets": 50},
    )
    observed = trajectory_frame(simulate(settings), settings)
    observed["value"] += np.random.default_rng(1).normal(0.0, 0.01, len(observed))
    start_elsewhere = settings.replace(response=ResponseParams(
        rate=0.5, quality_min=0.5, quality_max=0.5, exponent=1.0))
    result = fit_trajectory(observed, start_elsewhere, fit_generations=10, starts=(0.5,))
    fitted = result.params
    print(f"known {KNOWN}\nfitted {fitted}\nheld-out RMSE {result.held_out_rmse():.4f}")
    assert fitted.rate == pytest.approx(KNOWN.rate, abs=0.05)
    assert fitted.quality_min == pytest.approx(KNOWN.quality_min, abs=0.05)
    assert fitted.quality_max == pytest.approx(KNOWN.quality_max, abs=0.05)
    assert fitted.exponent == pytest.approx(KNOWN.exponent, abs=0.3)
    assert result.held_out_rmse() < 0.02  # the noise is 0.01
    held_out = result.errors[result.errors["window"] == "held-out"]
    assert set(held_out["metric"]) == {"group_share", "attribute_share", "quality", "all"}


def test_the_fit_needs_two_fitted_and_one_held_out_generation():
    settings = settings_of(loop={"generations": 3}, simulate={"candidate_sets": 20})
    observed = trajectory_frame(simulate(settings), settings)
    with pytest.raises(ConfigError, match=r"--fit-generations = 4: .* valid: 2 to 3"):
        fit_trajectory(observed, settings, fit_generations=4)


@pytest.mark.parametrize("overrides, fragment", [
    ({"quality_min": 0.9, "quality_max": 0.5},
     "simulate.quality_max = 0.5: below simulate.quality_min = 0.9; valid: quality_min <="),
    ({"rate": 1.5}, "simulate.rate = 1.5: Input should be less than or equal to 1"),
    ({"reward": "gauss"}, "simulate.reward = 'gauss'"),
    ({"rat": 0.1}, "unknown field 'simulate.rat'; valid: candidate_sets, exponent"),
])
def test_config_errors_are_one_line_naming_the_field(overrides, fragment):
    from biasloop.config import validate_config

    with pytest.raises(ConfigError) as caught:
        validate_config({"study": "simulate", "simulate": overrides})
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_groups_of_the_simulate_section_must_be_the_tasks():
    from biasloop.simulate.run import check_groups

    config = ExperimentConfig(study="simulate",
                              simulate={"initial_attributes": {"concise": 1.0, "long": 1.0}})
    with pytest.raises(ConfigError, match=r"^simulate.initial_attributes has groups "
                                          r"\['concise', 'long'\]; task 'preference' has groups"):
        check_groups(config, "preference", GROUPS)


def test_the_population_starts_from_the_configured_users():
    state = SimulationState.initial(settings_of(feedback={"initial_population": 200.0}))
    assert state.population == PopulationState({"concise": 100.0, "detailed": 100.0})


@pytest.mark.parametrize("name", ["biasloop.simulate", "biasloop.simulate.assembly",
                                  "biasloop.simulate.response", "biasloop.simulate.curation"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
