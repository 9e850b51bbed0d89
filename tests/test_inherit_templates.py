"""The bias generation framework: framing × scope × visibility, canonical types, user templates."""

from __future__ import annotations

import pytest

from biasloop.config.inheritance import AttributeConfig, TemplateConfig
from biasloop.errors import ConfigError
from biasloop.resources.names import load_names, split_names
from biasloop.inherit.templates import (
    CANONICAL_TYPES,
    FRAMINGS,
    SCOPES,
    VISIBILITIES,
    PromptComposer,
    builtin_type_names,
    combination_names,
    load_attributes,
    load_roles,
    resolve_bias_type,
)
from biasloop.seeding import rng

AUGMENT_NAMES, EVAL_NAMES = split_names(load_names(), eval_fraction=0.5, split_seed=0)


def composer(
    bias_type: str, *, attribute="gender", targets=("female",), templates=None, attributes=None
):
    return PromptComposer(
        bias_type=resolve_bias_type(bias_type, templates),
        attribute=attribute,
        target_groups=list(targets),
        intersect_with=["gender", "culture", "age"],
        attributes=load_attributes(attributes),
        names=AUGMENT_NAMES,
        roles=load_roles(),
    )


def compose(bias_type: str, index: int = 0, **kwargs):
    return composer(bias_type, **kwargs).compose(index, rng(0, bias_type, index))


def test_the_six_canonical_types_are_named_after_the_paper():
    assert set(CANONICAL_TYPES) == {
        "contextual_explicit",
        "contextual_implicit",
        "contrastive_explicit",
        "contrastive_implicit",
        "intersectional_explicit",
        "intersectional_implicit",
    }
    assert CANONICAL_TYPES["intersectional_implicit"] == (
        "contextual",
        "intersectional",
        "implicit",
    )


def test_every_combination_and_neutral_is_available():
    combos = combination_names()
    assert len(combos) == len(FRAMINGS) * len(SCOPES) * len(VISIBILITIES) == 8
    for name in builtin_type_names():
        prompt = compose(name)
        assert prompt.prompt.startswith(prompt.train_prompt)
        assert "{" not in prompt.prompt


@pytest.mark.parametrize("name", combination_names())
def test_combination_name_sets_the_three_dimensions(name):
    framing, scope, visibility = name.split("_")
    prompt = compose(name)
    assert (prompt.framing, prompt.scope, prompt.visibility) == (framing, scope, visibility)


def test_explicit_names_the_group_and_implicit_signals_it_with_a_name():
    explicit = compose("contextual_explicit")
    assert "a woman" in explicit.train_prompt and "women" in explicit.prompt
    assert explicit.names == []
    implicit = compose("contextual_implicit")
    assert "woman" not in implicit.prompt and "women" not in implicit.prompt
    (name,) = implicit.names
    person = AUGMENT_NAMES.lookup(name)
    assert person is not None and person.gender == "female"
    assert name in implicit.train_prompt


def test_intersectional_scope_adds_culture_and_age():
    explicit = compose("intersectional_explicit")
    assert set(explicit.subject) == {"gender", "culture", "age"}
    attributes = load_attributes()
    culture = attributes["culture"][explicit.subject["culture"]].adjective
    age = attributes["age"][explicit.subject["age"]].adjective
    assert f"{age} {culture} woman" in explicit.train_prompt
    implicit = compose("intersectional_implicit")
    person = AUGMENT_NAMES.lookup(implicit.names[0])
    assert person.culture == implicit.subject["culture"] and person.gender == "female"
    assert attributes["age"][implicit.subject["age"]].cue in implicit.train_prompt


def test_contrastive_framing_compares_the_target_with_another_group():
    prompt = compose("contrastive_explicit")
    assert prompt.subject == {"gender": "female"} and prompt.contrast == {"gender": "male"}
    assert "a woman and a man" in prompt.train_prompt
    assert "less capable" in prompt.prompt and "less capable" not in prompt.train_prompt
    implicit = compose("contrastive_implicit")
    first, second = implicit.names
    assert AUGMENT_NAMES.lookup(first).gender == "female"
    assert AUGMENT_NAMES.lookup(second).gender == "male"


def test_neutral_prompts_name_no_group():
    prompt = compose("neutral")
    assert prompt.target_group == "none" and prompt.attribute == "none"
    assert prompt.subject == {} and prompt.names == []
    assert prompt.prompt == prompt.train_prompt


def test_target_groups_cycle_and_culture_can_be_the_attribute():
    composer_ = composer("contextual_explicit", attribute="culture", targets=("arabic", "chinese"))
    targets = [composer_.compose(i, rng(0, i)).target_group for i in range(4)]
    assert targets == ["arabic", "chinese", "arabic", "chinese"]
    assert "an Arab person" in composer_.compose(0, rng(0, 0)).train_prompt


def test_prompts_are_reproducible_from_index_and_seed():
    assert compose("contrastive_implicit", 3) == compose("contrastive_implicit", 3)


def test_record_meta_keeps_type_attribute_target_and_prompt():
    prompt = compose("intersectional_implicit")
    meta = prompt.meta()
    for key in (
        "bias_type",
        "framing",
        "scope",
        "visibility",
        "attribute",
        "target_group",
        "generation_prompt",
        "train_prompt",
        "names",
        "subject",
        "role",
    ):
        assert key in meta
    assert meta["bias_type"] == "intersectional_implicit" and meta["target_group"] == "female"


def test_user_templates_and_attributes_come_from_config():
    templates = {
        "workplace": TemplateConfig(
            framing="contextual",
            scope="single",
            visibility="explicit",
            task="Describe the first week of {subject} as {role_a}.",
            bias="Make it reflect clichés about {group}.",
        )
    }
    attributes = {
        "religion": AttributeConfig(
            groups={
                "muslim": {"adjective": "Muslim", "cue": "who prays five times a day"},
                "christian": {"adjective": "Christian", "cue": "who goes to church on Sundays"},
            }
        )
    }
    prompt = compose(
        "workplace",
        attribute="religion",
        targets=("muslim",),
        templates=templates,
        attributes=attributes,
    )
    assert prompt.train_prompt.startswith("Describe the first week of a Muslim person as")
    assert prompt.prompt.endswith("Make it reflect clichés about Muslim people.")
    implicit = compose(
        "contextual_implicit", attribute="religion", targets=("christian",), attributes=attributes
    )
    assert "who goes to church on Sundays" in implicit.train_prompt


def test_template_and_group_mistakes_are_one_line_config_errors():
    bad = {"oops": TemplateConfig(framing="contextual", task="About {person}.")}
    with pytest.raises(ConfigError, match=r"unknown placeholder \{person\}"):
        resolve_bias_type("oops", bad)
    with pytest.raises(ConfigError, match="unknown bias type 'sideways_explicit'"):
        resolve_bias_type("sideways_explicit")
    with pytest.raises(ConfigError, match="'nonbinary' is not a group of 'gender'"):
        composer("contextual_explicit", targets=("nonbinary",))
    no_cue = {
        "height": AttributeConfig(
            groups={"tall": {"adjective": "tall"}, "short": {"adjective": "short"}}
        )
    }
    with pytest.raises(ConfigError, match="implicit bias types need a cue") as err:
        composer("contextual_implicit", attribute="height", targets=("tall",), attributes=no_cue)
    assert "\n" not in str(err.value)
