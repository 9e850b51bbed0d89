"""Mixing original and augmented data at a bias ratio γ.

With ``D_o`` fixed, the number of augmented examples for ratio ``γ`` is

    n_a(γ) = round(γ / (1 − γ) · |D_o|),

so that ``γ = |D_a| / (|D_o| + |D_a|)`` up to rounding. One pool of augmented
texts per bias type (and round) serves every ratio: ratio ``γ`` takes the first
``n_a(γ)`` texts, so a larger ratio adds texts to a smaller one's and never
swaps them.

    >>> augmented_count(0.2, 64)
    16
    >>> augmented_count(0.5, 64)
    64
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from biasloop.errors import ConfigError


def augmented_count(bias_ratio: float, original_size: int) -> int:
    """``n_a(γ) = round(γ / (1 − γ) · |D_o|)``."""
    if not 0.0 <= bias_ratio < 1.0:
        raise ConfigError(f"bias ratio must be in [0, 1), got {bias_ratio}")
    return round(bias_ratio / (1.0 - bias_ratio) * original_size)


def realized_ratio(augmented: int, original: int) -> float:
    """``|D_a| / (|D_o| + |D_a|)`` (0 for an empty mix)."""
    total = augmented + original
    return augmented / total if total else 0.0


def mix(
    original: Sequence[dict[str, Any]], augmented_pool: Sequence[dict[str, Any]], bias_ratio: float
) -> list[dict[str, Any]]:
    """``D_o ∪ D_a``: all of ``original`` plus the first ``n_a(γ)`` pool texts.

    A pool shorter than ``n_a(γ)`` (too many failed generations) gives all it has;
    :func:`realized_ratio` then reports the ratio actually trained on.
    """
    wanted = augmented_count(bias_ratio, len(original))
    return [*original, *augmented_pool[:wanted]]
