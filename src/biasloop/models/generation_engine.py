"""Which decoder an :class:`~biasloop.models.hf.HFBackend` generates with.

``generation.engine`` picks transformers ``generate`` or the compact decoder of
:mod:`biasloop.models.fast`; ``generation.kernels`` its CPU kernels;
``generation.quantization`` int8 projections. Combinations that cannot run raise a
one-line ConfigError naming the setting. The fast package is imported only here,
and only when a config may use it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from biasloop.config.schema import GenerationConfig
from biasloop.errors import ConfigError
from biasloop.models.precision import resolve_compute_dtype

if TYPE_CHECKING:
    from biasloop.models.fast import CompactDecoder, NativeKernels
    from biasloop.models.hf import HFBackend

logger = logging.getLogger("biasloop.models")


def weights_version(model: torch.nn.Module) -> int:
    """Changes whenever any parameter is modified in place (optimiser, load_state_dict)."""
    return sum(p._version for p in model.parameters())


class GenerationEngine:
    """The generation path of one backend, and the compact decoder of its current weights.

    The decoder packs the weights once and is rebuilt when they change (training,
    loading, reset); :meth:`drop` frees it early. The path is logged when it changes,
    and unavailable native kernels are warned about once.
    """

    def __init__(self) -> None:
        self._decoder: CompactDecoder | None = None
        self._decoder_key: tuple[Any, ...] | None = None
        self._warned_kernels = False
        self._logged_path: str | None = None

    def drop(self) -> None:
        """Forget the packed decoder (the weights are about to change)."""
        self._decoder = self._decoder_key = None

    def choose(self, backend: HFBackend, config: GenerationConfig) -> CompactDecoder | None:
        """The compact decoder for ``config``, or None for transformers ``generate``.

        ``generation.engine``: ``transformers`` always uses ``generate``; ``compact``
        requires the compact decoder (a ConfigError names what the model lacks);
        ``auto`` uses it when the model supports it. ``generation.kernels`` chooses its
        CPU kernels (:meth:`native_kernels`). One log line names the path.
        """
        from biasloop.models.fast.compact import CompactDecoder, unsupported_reason

        device = backend.device
        int8 = config.quantization == "int8"
        if int8 and config.engine == "transformers":
            raise ConfigError(
                "generation.quantization = 'int8' needs the compact decoder, but "
                "generation.engine = 'transformers'; valid: engine auto or compact, or "
                "quantization none"
            )
        if int8 and device.type != "cpu":
            raise ConfigError(
                f"generation.quantization = 'int8' runs on the CPU only, not on "
                f"{device}; valid here: none"
            )
        decoder = None
        if config.engine == "transformers":
            label = "transformers generate (generation.engine = transformers)"
        elif (reason := unsupported_reason(backend.model)) is not None:
            if config.engine == "compact" or int8:
                setting = "quantization = 'int8'" if int8 else "engine = 'compact'"
                raise ConfigError(
                    f"generation.{setting} cannot run model {backend.name!r}: the compact "
                    f"decoder does not support {reason}; valid here: engine auto or "
                    "transformers with quantization none"
                )
            label = f"transformers generate (compact decoder unsupported: {reason})"
        else:
            dtype = resolve_compute_dtype(
                config.compute_dtype, model_dtype=backend._base_model().dtype, device=device
            )
            kernels = self.native_kernels(config.kernels, dtype, device)
            key = (id(backend.model), dtype, int8, kernels is not None,
                   weights_version(backend.model))
            if self._decoder_key != key:
                self._decoder = None  # free the old packed weights first
                self._decoder = CompactDecoder(
                    backend.model, dtype=dtype,
                    int8_calibration=backend._int8_calibration() if int8 else None,
                    kernels=kernels,
                )
                self._decoder_key = key
            decoder = self._decoder
            label = f"compact decoder ({_describe(decoder, dtype, int8, device)})"
        if label != self._logged_path:
            logger.info("model %r generates with the %s", backend.name, label)
            self._logged_path = label
        return decoder

    def native_kernels(
        self, choice: str, dtype: torch.dtype, device: torch.device
    ) -> NativeKernels | None:
        """The native C kernels for ``generation.kernels`` = ``choice``, or None.

        They serve bf16 (and int8) decoding on a CPU only. ``native`` raises a
        ConfigError when they cannot be built; ``auto`` logs a warning, once, and
        uses PyTorch ops.
        """
        from biasloop.models.fast.native import NativeKernelsUnavailable, load_native_kernels

        if choice == "torch" or device.type != "cpu" or dtype != torch.bfloat16:
            return None
        try:
            return load_native_kernels()
        except NativeKernelsUnavailable as error:
            if choice == "native":
                raise ConfigError(
                    f"generation.kernels = 'native' but the native kernels are unavailable: "
                    f"{error}; valid here: auto or torch"
                ) from None
            if not self._warned_kernels:
                logger.warning("native decode kernels unavailable (%s); using PyTorch ops",
                               error)
                self._warned_kernels = True
            return None


def _describe(decoder: CompactDecoder, dtype: torch.dtype, int8: bool,
              device: torch.device) -> str:
    """``bfloat16, int8 projections, native kernels`` and the like, for the log line."""
    parts = [str(dtype).removeprefix("torch.")]
    if int8:
        parts.append("int8 projections")
    if decoder.kernels is not None:
        parts.append(
            "native kernels" if decoder.native_attention
            else "native kernels, PyTorch attention"
        )
    elif dtype == torch.bfloat16 and device.type == "cpu":
        parts.append("PyTorch ops")
    return ", ".join(parts)
