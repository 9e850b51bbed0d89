"""The one place that seeds randomness.

``seed_everything`` seeds Python, NumPy and torch. ``derive_seed`` turns a base
seed and a path of names (stage, generation, batch) into an independent seed,
so that each unit of work draws the same random numbers whether a run went
straight through or was killed and resumed.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(base_seed: int, *parts: object) -> int:
    """A stable 31-bit seed from ``base_seed`` and any labels, e.g. ``("serve", 3, 0)``."""
    key = ":".join([str(base_seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little") & 0x7FFFFFFF


def split_hash(item_id: str, split_seed: int) -> float:
    """The item's position in [0, 1): the first 8 bytes of SHA-256(``"{seed}:{id}"``) / 2**64.

    Seeded hashing for splits that depend on the data only (train/eval, name halves).
    """
    digest = hashlib.sha256(f"{split_seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # torch-free uses (the mean-field simulator) still seed the rest
        return
    torch.manual_seed(seed)


def rng(base_seed: int, *parts: object) -> np.random.Generator:
    """A NumPy generator for one unit of work, independent of the global state."""
    return np.random.default_rng(derive_seed(base_seed, *parts))
