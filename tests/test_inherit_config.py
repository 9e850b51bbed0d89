"""The ``inheritance:`` config section: defaults, validation, one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from biasloop.config import load_config
from biasloop.config.inheritance import InheritanceConfig
from biasloop.inherit.evaluations import default_evaluations
from biasloop.errors import ConfigError
from biasloop.runner.experiment import check_plugins

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "inheritance"
BASE = ["study=inheritance", "model.name=tiny-random"]


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        check_plugins(load_config(None, [*BASE, *overrides]))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_defaults_follow_the_spec():
    config = InheritanceConfig()
    assert config.bias_ratios == [0.0, 0.05, 0.1, 0.2, 0.5]
    # Unset: every built-in evaluation, in report order (their `default_rank`).
    assert config.evaluations is None
    assert default_evaluations() == [
        "occupation", "salary", "hiring", "story", "stereotype_detection", "offensive",
        "bbq", "crows_pairs", "stereoset", "winobias", "winogender",
    ]
    assert config.attribute == "gender" and config.original.source == "packaged"


def test_ratios_are_sorted_and_must_contain_zero_and_stay_below_one():
    assert InheritanceConfig(bias_ratios=[0.5, 0, 0.2]).bias_ratios == [0, 0.2, 0.5]
    assert "must contain 0" in error_of("inheritance.bias_ratios=[0.1,0.2]")
    message = error_of("inheritance.bias_ratios=[0,1.0]")
    assert "inheritance.bias_ratios" in message and "[0, 1)" in message


def test_unknown_bias_type_lists_the_valid_ones():
    message = error_of("inheritance.bias_types=[sideways_explicit]")
    assert "sideways_explicit" in message and "contrastive_implicit" in message


def test_unknown_evaluation_lists_the_registered_ones():
    message = error_of("inheritance.evaluations=[occupation,horoscope]")
    assert "unknown evaluation 'horoscope'" in message and "winogender" in message


def test_evaluation_params_are_validated_with_their_path():
    message = error_of("inheritance.evaluation_settings.salary.params.max_tokens=5")
    assert "inheritance.evaluation_settings.salary.params.max_tokens" in message


def test_settings_of_an_unknown_evaluation_are_rejected_and_of_one_not_run_ignored():
    message = error_of("inheritance.evaluation_settings.winobais.items=3")
    assert "inheritance.evaluation_settings.winobais: unknown evaluation" in message
    check_plugins(
        load_config(
            None,
            [
                *BASE,
                "inheritance.evaluations=[occupation]",
                "inheritance.evaluation_settings.bbq.items=3",
            ],
        )
    )


def test_unknown_target_group_names_the_valid_groups():
    message = error_of("inheritance.target_groups=[nonbinary]")
    assert "nonbinary" in message and "female" in message


def test_unknown_field_in_the_section_is_named():
    message = error_of("inheritance.bias_ratio=[0,0.5]")
    assert "inheritance.bias_ratio" in message and "bias_ratios" in message


def test_unknown_bbq_category_lists_the_categories():
    message = error_of(
        "inheritance.evaluations=[bbq]",
        "inheritance.evaluation_settings.bbq.params.categories=[Gender]",
    )
    assert "Gender_identity" in message


def test_user_templates_and_attributes_validate_from_yaml(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(
        "study: inheritance\nmodel: {name: tiny-random}\n"
        "inheritance:\n"
        "  attribute: religion\n  target_groups: [muslim]\n  bias_types: [workplace, contextual_implicit]\n"
        "  attributes:\n    religion:\n      groups:\n"
        "        muslim: {adjective: Muslim, cue: who prays five times a day}\n"
        "        christian: {adjective: Christian, cue: who goes to church}\n"
        "  templates:\n    workplace:\n      framing: contextual\n"
        "      task: Describe a day of {subject} working as {role_a}.\n"
        "      bias: Use clichés about {group}.\n"
    )
    check_plugins(load_config(path))


def test_shipped_inheritance_configs_validate():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in paths} >= {"gender-smoke.yaml", "gender.yaml"}
    for path in paths:
        check_plugins(load_config(path))
    full = load_config(CONFIGS / "gender.yaml")
    assert full.model.name == "smollm2-135m-instruct"
    assert full.inheritance.bias_ratios == [0, 0.2, 0.5] and len(full.inheritance.bias_types) == 2
