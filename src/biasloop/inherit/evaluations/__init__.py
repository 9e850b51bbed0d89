"""Downstream evaluations of the bias inheritance study, registered in :data:`EVALUATIONS`.

Importing this package registers every built-in evaluation; each lives in its
own module (add a module and register a name to add one).
"""

from biasloop.inherit.evaluations import (  # noqa: F401  (imported to register)
    bbq,
    crows_pairs,
    hiring,
    occupation,
    offensive,
    salary,
    stereoset,
    stereotype_detection,
    story,
    winobias,
    winogender,
)
from biasloop.inherit.evaluations.base import (
    EVALUATIONS,
    UNASSIGNED,
    EvalItem,
    EvalParams,
    EvalSettings,
    Evaluation,
    Statistic,
    choose_options,
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
    "generate_answers",
]
