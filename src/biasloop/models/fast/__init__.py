"""The fast generation engine: an optional replacement for transformers ``generate``.

* :mod:`~biasloop.models.fast.compact`: the compact batched decoder for Llama-style
  models, and its top-p sampler;
* :mod:`~biasloop.models.fast.int8`: int8 projections with calibrated smoothing
  (``generation.quantization: int8``);
* :mod:`~biasloop.models.fast.native`: C kernels for the decode step
  (``native_kernels.c``, compiled on first use; ``generation.kernels``).

:mod:`biasloop.models.generation_engine` imports this package on the first
``generate`` call that may use it. Every backend works without it: with
``generation.engine: transformers``, or for a model it does not support, generation
runs through transformers.
"""

from __future__ import annotations

from biasloop.models.fast.compact import CompactDecoder, UnsupportedModel, sample, unsupported_reason
from biasloop.models.fast.int8 import CALIBRATION_TEXTS, Int8Linear
from biasloop.models.fast.native import NativeKernels, NativeKernelsUnavailable, load_native_kernels

__all__ = [
    "CALIBRATION_TEXTS",
    "CompactDecoder",
    "Int8Linear",
    "NativeKernels",
    "NativeKernelsUnavailable",
    "UnsupportedModel",
    "load_native_kernels",
    "sample",
    "unsupported_reason",
]
