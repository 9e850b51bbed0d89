"""The inheritance study's components, built from its config: names, evaluations, prompts.

Nothing here touches a model or a file of the run; the recipe (:mod:`.recipe`),
the checks before a run (:mod:`.checks`) and the analysis build the same
components from the same config.
"""

from __future__ import annotations

import math

from biasloop.config.schema import ExperimentConfig
from biasloop.inherit.evaluations import EVALUATIONS, EvalSettings, Evaluation, default_evaluations
from biasloop.inherit.mixing import augmented_count
from biasloop.inherit.templates import (
    PromptComposer,
    load_attributes,
    load_roles,
    resolve_bias_type,
)
from biasloop.resources.names import NameTable, load_names, split_names
from biasloop.seeding import rng


def evaluation_settings_for(
    config: ExperimentConfig, name: str, names: NameTable
) -> tuple[EvalSettings, dict]:
    """Evaluation ``name``'s settings (its own, else the study's) and its params."""
    settings = config.inheritance
    own = settings.evaluation_settings.get(name)
    return EvalSettings(
        items=(own.items if own and own.items else settings.evaluation_items),
        chat=own.chat if own else None,
        batch_size=settings.evaluation_batch_size,
        names=names,
        roles=tuple(load_roles(settings.augmentation.roles)),
    ), dict(own.params if own else {})


def build_evaluations(config: ExperimentConfig, names: NameTable) -> list[Evaluation]:
    """Every configured evaluation, its params validated."""
    evaluations = []
    for name in config.inheritance.evaluations or default_evaluations():
        cls = EVALUATIONS.get(name)
        settings, params = evaluation_settings_for(config, name, names)
        evaluations.append(cls(settings=settings, params=params))
    return evaluations


def name_tables(config: ExperimentConfig) -> tuple[NameTable, NameTable]:
    """(augmentation, evaluation) halves of the name table."""
    names = config.inheritance.names
    return split_names(
        load_names(names.file), eval_fraction=names.eval_fraction, split_seed=names.split_seed
    )


def composer_for(config: ExperimentConfig, bias_type: str, names: NameTable) -> PromptComposer:
    """The prompt composer of ``bias_type`` (names drawn from ``names``)."""
    settings = config.inheritance
    return PromptComposer(
        bias_type=resolve_bias_type(bias_type, settings.templates),
        attribute=settings.attribute,
        target_groups=settings.target_groups,
        intersect_with=settings.intersect_with,
        attributes=load_attributes(settings.attributes),
        names=names,
        roles=load_roles(settings.augmentation.roles),
    )


def pool_size(config: ExperimentConfig) -> int:
    """Augmented texts the round-1 pool needs: ``n_a`` of the largest ratio."""
    settings = config.inheritance
    return augmented_count(max(settings.bias_ratios), settings.original.size)


def augmentation_prompts(config: ExperimentConfig, *, seed: int, names: NameTable) -> list[str]:
    """Every round-1 augmentation prompt (generation and training text) of every type."""
    settings = config.inheritance
    texts = []
    count = math.ceil(pool_size(config) * settings.augmentation.oversample)
    for bias_type in settings.bias_types:
        composer = composer_for(config, bias_type, names)
        for i in range(count):
            prompt = composer.compose(i, rng(seed, "augment-prompt", bias_type, i))
            texts += [prompt.prompt, prompt.train_prompt]
    return texts
