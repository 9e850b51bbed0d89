"""The model's response to its training data: a parametric map in place of a neural model.

The simulated model is its attribute distribution ``a_t`` over groups (the share of its
answers to neutral prompts that favour each group, the neural loop's
``attribute_share``). Two equations, four parameters ``θ = (ρ, q_min, q_max, κ)``:

* **training** moves the attribute distribution toward the group mix ``m_t`` of the
  training set ``D_{t+1}`` at rate ``ρ``::

      a_{t+1}(g) = (1 − ρ)·a_base(g) + ρ·m_t(g)

  with ``a_base = a_t`` for ``loop.type: incremental`` (train on from ``M_t``) and
  ``a_base = a_0`` for ``retrain`` (train ``M_0`` afresh); an empty training set
  leaves ``a_{t+1} = a_base``, as the neural loop keeps ``M_t`` or returns to ``M_0``;
* **quality** of each group rises with the share of answers that favour it::

      q_t(g) = q_min + (q_max − q_min)·a_t(g)^κ

Both keep ``a`` a distribution and ``q`` in ``[q_min, q_max]``. A record of group ``g``
in the training set counts as favouring ``g`` (its query carries the group's
preference, and curation by the group's reward keeps answers that meet it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ResponseParams:
    """``θ = (ρ, q_min, q_max, κ)`` of the response map (``simulate.*`` in a config)."""

    rate: float
    quality_min: float
    quality_max: float
    exponent: float

    NAMES = ("rate", "quality_min", "quality_max", "exponent")

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.rate, self.quality_min, self.quality_max, self.exponent)


def quality_of(attributes: Mapping[str, float], params: ResponseParams) -> dict[str, float]:
    """``q(g) = q_min + (q_max − q_min)·a(g)^κ`` for every group.

        >>> quality_of({"a": 0.25, "b": 0.75},
        ...            ResponseParams(rate=0.5, quality_min=0.2, quality_max=0.6, exponent=2.0))
        {'a': 0.225, 'b': 0.425}
    """
    span = params.quality_max - params.quality_min
    return {g: params.quality_min + span * max(a, 0.0) ** params.exponent
            for g, a in attributes.items()}


def trained_attributes(base: Mapping[str, float], mix: Mapping[str, float] | None,
                       rate: float) -> dict[str, float]:
    """``a'(g) = (1 − ρ)·a_base(g) + ρ·m(g)``; ``a_base`` itself when the training set is empty.

        >>> trained_attributes({"a": 0.5, "b": 0.5}, {"a": 1.0, "b": 0.0}, 0.25)
        {'a': 0.625, 'b': 0.375}
    """
    if mix is None:
        return dict(base)
    return {g: (1 - rate) * base[g] + rate * mix[g] for g in base}
