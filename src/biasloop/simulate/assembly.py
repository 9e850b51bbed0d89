"""Assembly of the training set ``D_{t+1}`` (SPEC section 2, step 5) as pure functions.

The neural loop assembles records (``LoopRun._assemble``); the simulator assembles
group masses. Both follow the same three rules, written once here:

* the synthetic part is ``S_t`` (``loop.data_policy: replace``) or ``S_0 ∪ … ∪ S_t``
  (``accumulate``): :func:`synthetic_generations`;
* with ``|S|`` synthetic examples and synthetic fraction ``λ > 0`` the real part has
  ``|R| = |S|·(1 − λ)/λ`` examples; with ``λ = 0`` there is no synthetic part and
  ``|R| = n``, the queries per generation: :func:`real_size`;
* the real part's groups are drawn by ``p_{t+1}``, so in expectation group ``g`` has
  ``|R|·p_{t+1}(g)`` of them: :func:`training_mix`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def synthetic_generations(t: int, data_policy: str) -> list[int]:
    """The generations whose accepted sets enter ``D_{t+1}``: ``[t]`` or ``[0, …, t]``.

        >>> synthetic_generations(2, "replace"), synthetic_generations(2, "accumulate")
        ([2], [0, 1, 2])
    """
    if data_policy == "replace":
        return [t]
    if data_policy == "accumulate":
        return list(range(t + 1))
    raise ValueError(f"loop.data_policy = {data_policy!r}; valid: replace, accumulate")


def real_size(synthetic_size: float, *, synthetic_fraction: float,
              queries_per_generation: int) -> float:
    """``|R| = |S|·(1 − λ)/λ`` real examples beside ``|S|`` synthetic ones (``n`` when λ = 0).

    The neural loop rounds it to a whole number of records; the simulator keeps the
    expectation.

        >>> real_size(30, synthetic_fraction=0.75, queries_per_generation=64)
        10.0
        >>> real_size(30, synthetic_fraction=0.0, queries_per_generation=64)
        64.0
    """
    if synthetic_fraction == 0:
        return float(queries_per_generation)
    return synthetic_size * (1 - synthetic_fraction) / synthetic_fraction


def training_mix(synthetic: Sequence[Mapping[str, float]], real_shares: Mapping[str, float], *,
                 synthetic_fraction: float, queries_per_generation: int) -> dict[str, float] | None:
    """The group mix ``m_t`` of ``D_{t+1}``: ``m_t(g) = (S(g) + |R|·p_{t+1}(g)) / (|S| + |R|)``.

    ``synthetic`` holds the (loss-weighted) accepted mass per group of each generation
    the data policy keeps (:func:`synthetic_generations`); ``S(g)`` is their sum and
    ``|S| = Σ_g S(g)``; ``|R|`` is :func:`real_size`. With ``λ = 0`` the synthetic part
    is left out. ``None`` when the training set is empty (everything rejected, λ > 0).

        >>> training_mix([{"a": 30.0, "b": 0.0}], {"a": 0.5, "b": 0.5},
        ...              synthetic_fraction=0.75, queries_per_generation=64)
        {'a': 0.875, 'b': 0.125}
    """
    groups = list(real_shares)
    mass = {g: 0.0 for g in groups}
    if synthetic_fraction > 0:
        for accepted in synthetic:
            for g in groups:
                mass[g] += accepted.get(g, 0.0)
    n_real = real_size(sum(mass.values()), synthetic_fraction=synthetic_fraction,
                       queries_per_generation=queries_per_generation)
    for g in groups:
        mass[g] += n_real * real_shares[g]
    total = sum(mass.values())
    if total <= 0:
        return None
    return {g: m / total for g, m in mass.items()}
