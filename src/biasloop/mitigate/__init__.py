"""Mitigations: curation rules for the loop (registered in ``CURATIONS``)."""

from biasloop.mitigate import rejection  # noqa: F401  (registers the built-in rules)
from biasloop.mitigate.base import (
    CURATIONS,
    THRESHOLDED,
    Accepted,
    CandidateSet,
    CurationContext,
    acceptance_rates,
)

__all__ = [
    "CURATIONS",
    "THRESHOLDED",
    "Accepted",
    "CandidateSet",
    "CurationContext",
    "acceptance_rates",
]
