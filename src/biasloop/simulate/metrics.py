"""The simulator's metric rows: the neural loop's metrics, computed from the mean-field state.

Same table as the neural loop's ``metrics.parquet`` (``generation, condition, seed,
group, metric, value, ci_low, ci_high, n``) and the same names and formulas
(``docs/concepts.md``), evaluated on the state instead of on responses:

* ``quality[g] = q_t(g)``, overall ``(1/|G|) Σ_g q_t(g)``;
* ``disparate_bias = max_g q_t(g) − min_g q_t(g)``, ``disparate_ratio = min/max``
  (:mod:`biasloop.metrics.disparity`);
* ``attribute_share[g] = a_t(g)``; ``preference_bias = ½ Σ_g |a_t(g) − P_ref(g)|``;
  ``majority_lean = a_t(maj) − P_ref(maj)``;
* ``group_share[g] = p_t(g)``, ``fallback_uniform_shares``;
* ``acceptance_rate[g]`` and ``fallback_<name>[g]`` from curation (not at ``t = T``).

A mean-field value is exact given the state, so ``ci_low = ci_high = value``; across
seeds the summary gives the spread that curation's sampling leaves. ``n`` is the
number of simulated candidate sets behind an acceptance rate, empty otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from biasloop.metrics.disparity import gap, ratio
from biasloop.simulate.dynamics import Generation, SimulationSettings

#: Which registered loop metric (``metrics.names``) each simulated row belongs to.
SIMULATED_METRICS = ("quality", "disparate_bias", "disparate_ratio", "preference_bias",
                     "majority_lean", "attribute_share", "group_share",
                     "fallback_uniform_shares", "acceptance_rate", "curation_fallbacks")


def generation_rows(generation: Generation, settings: SimulationSettings) -> list[dict[str, Any]]:
    """Every simulated metric of one generation; ``source`` names the loop metric it belongs to."""
    groups = settings.groups
    t = generation.state.generation
    quality = generation.quality
    attributes = generation.state.attributes
    reference = settings.reference_attributes
    shares = generation.state.population.shares
    majority = settings.majority
    rows: list[tuple[str, str, str, float, float]] = []  # (source, metric, group, value, n)
    rows += [("quality", "quality", g, quality[g], math.nan) for g in groups]
    rows.append(("quality", "quality", "", sum(quality.values()) / len(groups), math.nan))
    values = [quality[g] for g in groups]
    rows.append(("disparate_bias", "disparate_bias", "", gap(values), math.nan))
    rows.append(("disparate_ratio", "disparate_ratio", "", ratio(values), math.nan))
    rows.append(("preference_bias", "preference_bias", "",
                 0.5 * sum(abs(attributes[g] - reference[g]) for g in groups), math.nan))
    rows.append(("majority_lean", "majority_lean", "",
                 attributes[majority] - reference[majority], math.nan))
    rows += [("attribute_share", "attribute_share", g, attributes[g], math.nan) for g in groups]
    rows += [("group_share", "group_share", g, shares[g], math.nan) for g in groups]
    rows.append(("fallback_uniform_shares", "fallback_uniform_shares", "",
                 float(generation.state.population.extinct), math.nan))
    curation = generation.curation
    if curation is not None:
        rows += [("acceptance_rate", "acceptance_rate", g, curation.acceptance_rate[g],
                  float(curation.served[g])) for g in groups]
        names = sorted({name for name, _ in curation.fallbacks})
        rows += [("curation_fallbacks", f"fallback_{name}", g,
                  float(curation.fallbacks.get((name, g), 0)), math.nan)
                 for name in names for g in groups]
    return [
        {"source": source, "generation": t, "condition": settings.condition,
         "seed": settings.seed, "group": group, "metric": metric, "value": float(value),
         "ci_low": float(value), "ci_high": float(value), "n": n}
        for source, metric, group, value, n in rows
    ]


def metric_rows(history: Sequence[Generation], settings: SimulationSettings,
                names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of every generation, limited to the loop metrics in ``names`` (None: all)."""
    wanted = set(SIMULATED_METRICS if names is None else names)
    rows = []
    for generation in history:
        for row in generation_rows(generation, settings):
            if row.pop("source") in wanted:
                rows.append(row)
    return rows
