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
