"""int8 projections for the compact decoder (``generation.quantization: int8``).

:class:`Int8Linear` runs a projection as an int8 x int8 -> int32 matmul. Before
quantising, SmoothQuant-style smoothing (:func:`smoothing`, calibrated on
:data:`CALIBRATION_TEXTS`) moves activation outliers into the weights; the decoder
folds the factors into its norms and projections
(:meth:`biasloop.models.fast.compact.CompactDecoder._to_int8`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from biasloop.models.fast.native import NativeKernels

if TYPE_CHECKING:
    from biasloop.models.fast.compact import DenseLinear

#: SmoothQuant migration strength: ``s_k = a_k ** alpha / w_k ** (1 - alpha)``.
SMOOTHING_ALPHA = 0.5
#: (prompt, answer) pairs whose activations calibrate the int8 smoothing factors.
CALIBRATION_TEXTS = (
    ("Summarise the plot of a story about a lighthouse keeper.",
     "A lonely keeper tends the light for decades, until a storm brings a stranger ashore."),
    ("Write a Python function that adds two numbers.",
     "def add(a, b):\n    return a + b"),
    ("What causes the seasons?",
     "Earth's tilted axis gives each hemisphere more direct sunlight for part of the year."),
    ("Give advice to a new nurse starting a night shift.",
     "Sleep before the shift, eat light meals, and ask colleagues for help early."),
    ("Translate 'good morning' into French and Spanish.",
     "French: bonjour. Spanish: buenos días."),
    ("List three prime numbers and their sum.", "2, 3 and 5; their sum is 10."),
    ("Describe a software engineer's typical day.",
     "She reviews code, joins a stand-up meeting, fixes a bug, and writes tests."),
    ("Is it rude to ask someone their salary?",
     "In many cultures it is considered private, though norms are changing."),
)


class Int8Linear:
    """``x @ weight.T + bias`` as an int8 x int8 -> int32 matmul, returned in float32.

    Weights are quantised once, symmetrically per output channel,
    ``W[n, :] ~ s_n * Q[n, :]`` with ``s_n = max_k |W[n, k]| / 127``; activations at
    every call, per row, ``x[m, :] ~ r_m * q[m, :]`` with ``r_m = max_k |x[m, k]| / 127``;
    so ``y[m, n] = r_m * s_n * sum_k q[m, k] * Q[n, k] (+ bias[n])``, the sum exact in
    int32. On CPUs with int8 dot products (AVX512-VNNI, AVX-VNNI, AMX) the matmul
    runs about twice as fast as bf16.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        kernels: NativeKernels | None = None,
    ):
        self.kernels = kernels
        weight = weight.float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        # Stored [in, out] contiguous: the layout torch._int_mm reads fastest.
        self.weight = torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous()
        self.scale = scale
        self.bias = None if bias is None else bias.float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float()
        if self.kernels is not None and flat.stride(-1) == 1:
            # One pass each for quantising and dequantising; the same bytes as below.
            quantised, row_scale = self.kernels.quantize_rows(flat)
            out = self.kernels.dequantize_(
                torch._int_mm(quantised, self.weight), self.scale, row_scale
            )
        else:
            # abs().amax() and float().mul_() are several times faster on CPU than
            # vector_norm(ord=inf) and a type-promoting int32 * float multiply.
            row_scale = flat.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12).div_(127)
            quantised = flat.div(row_scale).round_().to(torch.int8)
            out = torch._int_mm(quantised, self.weight).float().mul_(self.scale).mul_(row_scale)
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], out.shape[-1])


def smoothing(linear: DenseLinear) -> torch.Tensor:
    """SmoothQuant factors ``s_k = a_k^alpha / w_k^(1-alpha)`` of a calibrated projection."""
    assert linear.input_absmax is not None
    inputs = linear.input_absmax.clamp(min=1e-5)
    weights = linear.weight.float().abs().amax(dim=0).clamp(min=1e-5)
    smooth = inputs**SMOOTHING_ALPHA / weights ** (1 - SMOOTHING_ALPHA)
    return smooth.clamp(min=1e-3, max=1e3)
