"""Model backends: the interface, the Hugging Face implementation and the loader.

``load_backend(ModelConfig(name=...))`` is the entry point. The heavy imports
(transformers, peft) happen on first use of :class:`HFBackend` or
:func:`load_backend`, so importing :mod:`biasloop.models.base` stays cheap.

* ``base``: the :class:`ModelBackend` interface;
* ``loading``: model names to backends (``resolve_model_name``, ``load_backend``);
* ``hf``: :class:`HFBackend`, generation and scoring; ``hf_training``: its
  fine-tuning, save and load; ``generation_engine``: which decoder generates;
* ``fast``: the optional fast generation engine (compact decoder, int8, C kernels);
* ``embedded``, ``tiny``, ``openai_api``: the built-in model names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from biasloop.models.base import ModelBackend, TrainExample, TrainResult

if TYPE_CHECKING:
    from biasloop.models.hf import HFBackend
    from biasloop.models.loading import BACKENDS, load_backend

__all__ = [
    "BACKENDS",
    "HFBackend",
    "ModelBackend",
    "TrainExample",
    "TrainResult",
    "load_backend",
]

_LAZY = {
    "HFBackend": "biasloop.models.hf",
    "BACKENDS": "biasloop.models.loading",
    "load_backend": "biasloop.models.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
