"""Configuration: typed schema, YAML loading and dotted CLI overrides."""

from biasloop.config.schema import (
    ExperimentConfig,
    FeedbackConfig,
    GenerationConfig,
    LoopConfig,
    MetricsConfig,
    MitigationConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainingConfig,
)

__all__ = [
    "ExperimentConfig",
    "FeedbackConfig",
    "GenerationConfig",
    "LoopConfig",
    "MetricsConfig",
    "MitigationConfig",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainingConfig",
]

from biasloop.config.load import (  # noqa: E402
    apply_overrides,
    condition_names,
    config_hash,
    load_config,
    read_yaml,
    resolved_condition,
    validate_config,
)

__all__ += [
    "apply_overrides",
    "condition_names",
    "config_hash",
    "load_config",
    "read_yaml",
    "resolved_condition",
    "validate_config",
]
