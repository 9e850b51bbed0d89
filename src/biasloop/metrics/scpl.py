"""Metrics of the self-consuming performative loop (SPEC section 2).

Each function is pure and documents its formula. Group-level inputs are plain
mappings ``group -> values`` so the metrics can be checked by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from biasloop.metrics.disparity import gap, ratio


def group_quality(qualities: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``quality[g] = mean_{x ∈ E_g} q(g, x, M(x))`` for every group."""
    return {group: float(np.mean(values)) for group, values in qualities.items()}


def overall_quality(qualities: Mapping[str, Sequence[float]]) -> float:
    """Overall quality ``= (1/|G|) Σ_g quality[g]`` (groups weighted equally)."""
    return float(np.mean(list(group_quality(qualities).values())))


def disparate_bias(*group_values: Sequence[float]) -> float:
    """``max_g quality[g] − min_g quality[g]``: the service gap between groups.

    Same convention as :func:`biasloop.metrics.disparity.gap`.
    """
    return gap([float(np.mean(v)) for v in group_values])


def disparate_ratio(*group_values: Sequence[float]) -> float:
    """``min_g quality[g] / max_g quality[g]``, 1 when every group is served alike.

    Same convention as :func:`biasloop.metrics.disparity.ratio`: when every group's
    quality is 0, ``0/0`` is taken as parity (1).
    """
    return ratio([float(np.mean(v)) for v in group_values])


def attribute_distribution(attributes: Sequence[str | None], groups: Sequence[str]) -> dict[str, float]:
    """Share of responses whose attribute is ``g``: ``P(a(y) = g) = #{a(y)=g} / #{a(y) ∈ G}``.

    Responses whose attribute is ``None`` (no group preferred) are left out; with
    no attributed response at all the distribution is uniform.
    """
    counts = Counter(a for a in attributes if a in groups)
    total = sum(counts.values())
    if total == 0:
        return {g: 1.0 / len(groups) for g in groups}
    return {g: counts[g] / total for g in groups}


def preference_bias(
    model_attributes: Sequence[str | None],
    reference_attributes: Sequence[str | None],
    groups: Sequence[str],
) -> float:
    """Total-variation distance ``½ Σ_g |P_model(a=g) − P_ref(a=g)|``.

    ``P_model`` is the attribute distribution of the model's responses on a
    balanced (group-neutral) evaluation set and ``P_ref`` that of the real
    reference responses; 0 means the model leans exactly as the real data does.
    """
    model = attribute_distribution(model_attributes, groups)
    reference = attribute_distribution(reference_attributes, groups)
    return 0.5 * sum(abs(model[g] - reference[g]) for g in groups)


def majority_lean(
    model_attributes: Sequence[str | None],
    reference_attributes: Sequence[str | None],
    groups: Sequence[str],
    majority: str,
) -> float:
    """Signed lean toward the majority group: ``P_model(a=maj) − P_ref(a=maj)`` ∈ [−1, 1]."""
    model = attribute_distribution(model_attributes, groups)
    reference = attribute_distribution(reference_attributes, groups)
    return model[majority] - reference[majority]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """``distinct-n = #unique n-grams / #n-grams`` over all texts (whitespace tokens); 0 if none."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_length(texts: Sequence[str]) -> float:
    """Mean response length in whitespace-separated words."""
    return float(np.mean([len(t.split()) for t in texts])) if texts else 0.0


def perplexity(logliks: Sequence[float], token_counts: Sequence[int]) -> float:
    """``exp(−Σ log p(tokens) / Σ #tokens)`` over held-out real texts."""
    total_tokens = int(np.sum(token_counts))
    if total_tokens == 0:
        return float("nan")
    return float(np.exp(-float(np.sum(logliks)) / total_tokens))
