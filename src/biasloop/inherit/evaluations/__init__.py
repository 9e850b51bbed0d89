"""Downstream evaluations of the bias inheritance study, registered in :data:`EVALUATIONS`.

Each built-in evaluation lives in its own module of this package; the registry
imports them all the first time a name is looked up, so adding one is adding a
module that registers a name.
"""

from biasloop.inherit.evaluations.base import (
    EVALUATIONS,
    UNASSIGNED,
    EvalItem,
    EvalParams,
    EvalSettings,
    Evaluation,
    Statistic,
    choose_options,
    default_evaluations,
    generate_answers,
)

__all__ = [
    "EVALUATIONS",
    "UNASSIGNED",
    "EvalItem",
    "EvalParams",
    "EvalSettings",
    "Evaluation",
    "Statistic",
    "choose_options",
    "default_evaluations",
    "generate_answers",
]
