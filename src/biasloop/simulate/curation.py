"""Curation in the simulator: the registered mitigation applied to simulated candidate sets.

Each generation ``M = simulate.candidate_sets`` candidate sets are served, group ``g``
getting ``M_g ≈ M·p_t(g)`` of them (largest remainders; at least one for a group with
a positive share). Each set holds ``k = mitigation.candidates`` candidates whose rewards
are drawn from the per-group quality model, with mean ``q_t(g)``:

* ``beta``: ``r = F⁻¹(u; c·q, c·(1 − q))``, the Beta quantile of a uniform ``u``;
* ``bernoulli``: ``r = 1[u < q]``.

The uniforms ``u`` are seeded per generation (``derive_seed(seed, condition, t,
"rewards")``), so a simulation is reproducible and the rewards move smoothly with
``q``. The mitigation's own ``curate`` (``MITIGATIONS``) then chooses what is
accepted, exactly as in the neural loop, and the simulator keeps, per group,

* ``w_t(g) = Σ_{accepted of g} weight / M_g``: accepted loss-weighted mass per served
  query, so the synthetic mass of generation ``t`` is ``A_t(g) = n·p_t(g)·w_t(g)``
  (``n = loop.queries_per_generation``);
* the acceptance rate (distinct accepted / served queries) and any fallbacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel
from scipy.special import betaincinv

from biasloop.config.schema import MitigationConfig
from biasloop.mitigate import MITIGATIONS, CandidateSet, CurationContext, acceptance_rates

#: Rewards stay strictly inside (0, 1) so the Beta parameters stay positive.
_EDGE = 1e-6


def served_counts(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """``M_g ≈ M·p(g)`` by largest remainders, with at least one set for every ``p(g) > 0``.

        >>> served_counts({"a": 0.7, "b": 0.3}, 10), served_counts({"a": 0.999, "b": 0.001}, 10)
        ({'a': 7, 'b': 3}, {'a': 9, 'b': 1})
    """
    groups = list(shares)
    exact = np.array([shares[g] * total for g in groups])
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[index] += 1
    for index, g in enumerate(groups):
        if shares[g] > 0 and counts[index] == 0 and total >= len(groups):
            counts[int(np.argmax(counts))] -= 1
            counts[index] = 1
    return {g: int(c) for g, c in zip(groups, counts)}


def draw_rewards(quality: float, uniforms: np.ndarray, *, reward: str,
                 concentration: float) -> np.ndarray:
    """Rewards with mean ``quality`` from fixed uniforms: the Beta quantile or ``1[u < q]``."""
    if reward == "bernoulli":
        return (uniforms < quality).astype(float)
    q = min(max(quality, _EDGE), 1 - _EDGE)
    return betaincinv(concentration * q, concentration * (1 - q), uniforms)


@dataclass(frozen=True, kw_only=True)
class CurationOutcome:
    """What curation did to one generation's simulated candidate sets, per group."""

    accepted_per_served: dict[str, float]  # w_t(g)
    acceptance_rate: dict[str, float]
    served: dict[str, int]
    fallbacks: dict[tuple[str, str], int] = field(default_factory=dict)


def curate_simulated(*, groups: Sequence[str], shares: Mapping[str, float],
                     quality: Mapping[str, float], target_shares: Mapping[str, float],
                     mitigation: MitigationConfig, params: BaseModel, candidate_sets: int,
                     reward: str, concentration: float, reward_rng: np.random.Generator,
                     curate_rng: np.random.Generator, label: str = "") -> CurationOutcome:
    """Serve ``candidate_sets`` simulated sets by ``shares`` and curate them with the mitigation."""
    counts = served_counts(shares, candidate_sets)
    k = mitigation.candidates
    uniforms = reward_rng.random((candidate_sets, k))
    candidates: list[CandidateSet] = []
    row = 0
    for g in groups:
        rewards = draw_rewards(quality[g], uniforms[row: row + counts[g]], reward=reward,
                               concentration=concentration).tolist()
        responses = [f"<simulated answer {j} for {g}>" for j in range(k)]
        candidates.extend(
            CandidateSet(query_id=f"{label}{g}-{i}", group=g, prompt=f"<simulated query of {g}>",
                         responses=responses, rewards=r)
            for i, r in enumerate(rewards)
        )
        row += counts[g]
    context = CurationContext(config=mitigation, params=params, groups=tuple(groups),
                              shares=dict(shares), target_shares=dict(target_shares),
                              rng=curate_rng)
    accepted = MITIGATIONS.get(mitigation.name).curate(candidates, context)
    mass = {g: 0.0 for g in groups}
    for item in accepted:
        mass[item.group] += item.weight
    return CurationOutcome(
        accepted_per_served={g: mass[g] / counts[g] if counts[g] else 0.0 for g in groups},
        acceptance_rate=acceptance_rates(candidates, accepted, groups),
        served=counts,
        fallbacks=dict(context.fallbacks),
    )
