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
