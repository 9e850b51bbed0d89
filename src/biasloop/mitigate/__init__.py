"""Mitigations, one registry (``MITIGATIONS``) for both studies.

Curation rules (``none``, ``reward_rejection``, ``balanced_reward_rejection``,
``random_rejection``, ``reweight``) choose the SCPL loop's synthetic data;
``token``, ``mask`` and ``loss`` rewrite augmented training data or add a loss
term, in either study. The registry imports every module of this package the
first time a name is looked up, so a built-in mitigation is one module here.
"""

from biasloop.mitigate.base import (
    MITIGATIONS,
    NoParams,
    Accepted,
    CandidateSet,
    CurationContext,
    Mitigation,
    TrainingContext,
    acceptance_rates,
    check_mitigation,
    mitigation_params,
    prepare_training_records,
    register_curation,
    training_loss_term,
)

__all__ = [
    "MITIGATIONS",
    "NoParams",
    "Accepted",
    "CandidateSet",
    "CurationContext",
    "Mitigation",
    "TrainingContext",
    "acceptance_rates",
    "check_mitigation",
    "mitigation_params",
    "prepare_training_records",
    "register_curation",
    "training_loss_term",
]
