"""Which compute dtype pays on a device: the one place that decides ``auto``.

bf16 halves the bytes moved and, on CPUs with native bf16 dot products
(AVX512-BF16 or AMX) and on recent GPUs, runs matmuls 2-4x faster than fp32.
On a CPU without those instructions bf16 is emulated and slower, so ``auto``
stays in the model's own dtype there.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

#: /proc/cpuinfo flags that mean bf16 matmuls run natively.
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from Linux ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86, ARM
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises native bf16 dot products."""
    return bool(_BF16_CPU_FLAGS & cpu_flags())


def fast_bf16(device: torch.device) -> bool:
    """True when bf16 compute is native (not emulated) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_compute_dtype(
    choice: str, *, model_dtype: torch.dtype, device: torch.device
) -> torch.dtype:
    """The dtype for ``choice`` (``auto``, ``float32`` or ``bfloat16``).

    ``auto`` is bf16 where :func:`fast_bf16` holds, else the model's own dtype.

    >>> resolve_compute_dtype("float32", model_dtype=torch.bfloat16, device=torch.device("cpu"))
    torch.float32
    """
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    if choice != "auto":
        raise ValueError(f"compute dtype {choice!r} is not one of auto, float32, bfloat16")
    return torch.bfloat16 if fast_bf16(device) else model_dtype
