"""Mitigations, one registry (``MITIGATIONS``) for both studies.

Curation rules (``none``, ``reward_rejection``, ``balanced_reward_rejection``,
``random_rejection``, ``reweight``) choose the SCPL loop's synthetic data;
``token``, ``mask`` and ``loss`` rewrite augmented training data or add a loss
term, in either study.
"""

from biasloop.mitigate import rejection, training  # noqa: F401  (register the built-ins)
from biasloop.mitigate.base import (
    MITIGATIONS,
    THRESHOLDED,
    Accepted,
    CandidateSet,
    CurationContext,
    Mitigation,
    TrainingContext,
    acceptance_rates,
    prepare_training_records,
    register_curation,
    training_loss_term,
)

__all__ = [
    "MITIGATIONS",
    "THRESHOLDED",
    "Accepted",
    "CandidateSet",
    "CurationContext",
    "Mitigation",
    "TrainingContext",
    "acceptance_rates",
    "prepare_training_records",
    "register_curation",
    "training_loss_term",
]
