"""Configs: YAML + overrides + validation, with one-line errors naming field, value and what is valid."""

from __future__ import annotations

import pytest

from biasloop.config import ExperimentConfig, apply_overrides, config_hash, load_config, resolved_condition
from biasloop.errors import ConfigError
from biasloop.runner.experiment import check_plugins

BAD_CONFIGS = [
    ("model:\n  tempature: 1\n", "unknown field 'model.tempature'; valid: api, chat_template, device, dtype, name"),
    ("generation:\n  temperature: -1\n", "generation.temperature = -1: Input should be greater than or equal to 0"),
    ("seed: abc\n", "seed = 'abc': Input should be a valid integer"),
    ("loop:\n  type: forever\n", "loop.type = 'forever': Input should be 'retrain' or 'incremental'"),
    ("loop:\n  generations: 0\n", "loop.generations = 0: Input should be greater than or equal to 1"),
    ("name: ../escape\n", "name = '../escape': must be 1-64 letters"),
    ("model: 3\n", "model = 3: Input should be a valid dictionary"),
    ("loop:\n  initial_shares: {left: -1, right: 1}\n", "loop.initial_shares"),
    ("generation:\n  top_p: 0\n", "generation.top_p = 0: Input should be greater than 0"),
    ("task:\n  source: hf\n", "task.hf_dataset is required when task.source is 'hf'"),
    ("conditions:\n  a:\n    feedback.min_share: -2\n", "conditions.a.feedback.min_share = -2: Input should be greater than or equal to 0"),
    ("conditions:\n  a:\n    seed: 2\n", "conditions.a.seed cannot be set per condition"),
    ("mitigation:\n  candidates: 0\n", "mitigation.candidates = 0: Input should be greater than or equal to 1"),
    ("seeds: [1, 1]\n", "seeds = [1, 1]: seeds must be distinct"),
    ("training:\n  method: qlora\n", "training.method = 'qlora': Input should be 'lora' or 'full'"),
    ("- a\n- b\n", "must hold a mapping of fields, got list"),
    ("model: {name: x\n", "invalid YAML"),
    ("unknown_section: {}\n", "unknown field 'unknown_section'; valid: conditions, feedback, generation"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_gives_one_line_error_naming_field_value_and_valid(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(str(path))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["feedback.rule=nonsense"], "unknown feedback rule 'nonsense'; valid: exponential, retention, static"),
        # Plug-ins registered by other tests in the same process may join the list.
        (["mitigation.name=magic"], "unknown mitigation 'magic'; valid: balanced_reward_rejection, .*none"),
        (["task.name=poetry"], "unknown task 'poetry'; valid:"),
    ],
)
def test_unknown_plugin_names_fail_before_work(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        check_plugins(load_config(None, overrides))


def test_missing_file_and_bad_override_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must look like KEY.SUB=VALUE"):
        load_config(None, ["seed"])
    with pytest.raises(ConfigError, match="seed is 3, not a section"):
        load_config(None, ["seed=3", "seed.x=1"])


def test_overrides_are_typed_by_yaml_and_nest():
    config = load_config(None, ["model.name=tiny-random", "seed=3", "loop.initial_shares={a: 1, b: 3}"])
    assert config.model.name == "tiny-random"
    assert config.seed == 3
    assert config.loop.initial_shares == {"a": 1.0, "b": 3.0}


def test_yaml_python_and_cli_give_the_same_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: same\nloop:\n  generations: 2\n")
    from_yaml = load_config(path, ["model.name=tiny-random"])
    from_python = ExperimentConfig(name="same", loop={"generations": 2}, model={"name": "tiny-random"})
    assert from_yaml == from_python
    assert config_hash(from_yaml) == config_hash(from_python)
    assert config_hash(from_yaml) != config_hash(load_config(path))


def test_conditions_resolve_to_their_own_configs():
    config = load_config(None, ["conditions={static: {feedback.rule: static}, perf: {feedback.rule: retention}}"])
    assert resolved_condition(config, "perf").feedback.rule == "retention"
    assert resolved_condition(config, "static").feedback.rule == "static"
    assert resolved_condition(config, "perf").conditions == {}


def test_configs_are_frozen_and_keyword_only():
    config = ExperimentConfig()
    with pytest.raises(Exception):
        config.seed = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        ExperimentConfig("name")  # type: ignore[misc]


def test_apply_overrides_does_not_modify_its_input():
    data = {"model": {"name": "a"}}
    assert apply_overrides(data, ["model.name=b"]) == {"model": {"name": "b"}}
    assert data == {"model": {"name": "a"}}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("loop.generations=true", "loop.generations"),
        ("generation.temperature=false", "generation.temperature"),
        ("seeds=[1, true]", "seeds"),
        ("loop.initial_shares={a: true, b: 1}", "loop.initial_shares"),
    ],
)
def test_a_boolean_is_never_taken_for_a_number(override, field):
    with pytest.raises(ConfigError, match=rf"{field} = .*: a boolean is not a number"):
        load_config(None, [override])


def test_plugin_params_refuse_a_boolean_for_a_number_too():
    with pytest.raises(ConfigError, match=r"mitigation\.params\.loss\.weight = true: a boolean "
                                          r"is not a number"):
        check_plugins(load_config(None, ["model.name=tiny-random",
                                         "mitigation.params.loss.weight=true"]))
    with pytest.raises(ConfigError, match=r"feedback\.params\.exponential\.eta = true"):
        check_plugins(load_config(None, ["model.name=tiny-random",
                                         "feedback.params.exponential.eta=true"]))
