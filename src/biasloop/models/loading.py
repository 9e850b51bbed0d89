"""Turn a :class:`ModelConfig` into a ready :class:`ModelBackend`.

Names registered in :data:`BACKENDS` (``smollm2-135m-instruct``, ``tiny-random``,
``openai-api``) load their own way; any other name is a Hugging Face hub name or a
local folder. :func:`check_trainable` rejects an API model where a role needs the
weights (fine-tuning, scoring).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from biasloop.config.schema import API_BACKEND_NAME, ModelConfig
from biasloop.errors import BiasloopError, ConfigError
from biasloop.models.base import ModelBackend
from biasloop.registry import Registry

logger = logging.getLogger("biasloop.models")

BackendFactory = Callable[[ModelConfig], ModelBackend]

#: Built-in model names and the function that loads each.
BACKENDS: Registry[BackendFactory] = Registry("model backend", field="model.name")


@BACKENDS.register("smollm2-135m-instruct")
def _load_embedded(config: ModelConfig) -> ModelBackend:
    """SmolLM2-135M-Instruct, embedded: converted once from the packaged GGUF, then cached."""
    from biasloop.models.embedded import load_embedded

    return load_embedded(config)


@BACKENDS.register("tiny-random")
def _load_tiny(config: ModelConfig) -> ModelBackend:
    """A tiny randomly initialised Llama with the SmolLM2 tokenizer, for tests."""
    from biasloop.models.tiny import load_tiny

    return load_tiny(config)


@BACKENDS.register(API_BACKEND_NAME)
def _load_api(config: ModelConfig) -> ModelBackend:
    """A model behind an OpenAI-compatible API (`model.api`); it can only generate."""
    from biasloop.models.openai_api import load_api_backend

    return load_api_backend(config)


def is_api_model(config: ModelConfig) -> bool:
    """True when ``config`` names a model served behind an API (it can only generate)."""
    return config.name == API_BACKEND_NAME


def check_trainable(config: ModelConfig, role: str) -> None:
    """Raise a one-line ConfigError when ``config`` is an API model but ``role`` needs weights.

    ``role`` is the config field that holds the model, e.g. ``"model"``; call this in a
    study's config check for every model that is fine-tuned, scored or embedded.

    >>> check_trainable(ModelConfig(name="tiny-random"), "model")  # a local model: fine
    >>> check_trainable(ModelConfig(name="openai-api", api={"base_url": "http://h/v1",
    ...                 "model": "m"}), "model")
    Traceback (most recent call last):
    ...
    biasloop.errors.ConfigError: model: this model is fine-tuned and scored, but model.name 'openai-api' (m at http://h/v1) only generates; use a local model here (smollm2-135m-instruct, a hub name or a local folder), or use the API model as inheritance.augmentation.model
    """
    if is_api_model(config):
        where = f" ({config.api.model} at {config.api.base_url})" if config.api else ""
        raise ConfigError(
            f"{role}: this model is fine-tuned and scored, but model.name {API_BACKEND_NAME!r}"
            f"{where} only generates; use a local model here (smollm2-135m-instruct, a hub "
            "name or a local folder), or use the API model as inheritance.augmentation.model"
        )


def _valid_names() -> str:
    return f"{', '.join(BACKENDS.names())}, a Hugging Face hub name, or a local model folder"


def load_hf(config: ModelConfig) -> ModelBackend:
    """A hub model (``org/name``) or local folder via ``AutoModelForCausalLM``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from biasloop.models.hf import HFBackend, torch_dtype_kwargs

    name = config.name
    local = Path(name).expanduser()
    # Hub names look like ``org/name``; an existing path or an explicit ./, / or ~ is local.
    if name.startswith((".", "/", "~")) or local.exists():
        if not (local / "config.json").is_file():
            problem = "no such folder" if not local.exists() else "no config.json in it"
            raise BiasloopError(
                f"model.name {name!r} is a local path with {problem}; valid: {_valid_names()}"
            )
        source = str(local)
    else:
        source = name
    options = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(
            source, **torch_dtype_kwargs(config.dtype), **options
        )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BiasloopError(
            f"cannot load model {name!r} ({first[:200]}); valid: {_valid_names()}"
        ) from None
    return HFBackend(model, tokenizer, config=config, name=name)


def limit_threads() -> int:
    """Cap torch's threads at the CPUs this process may use; return the count in use.

    torch sizes its pool by the host's physical cores, which can exceed a
    container's CPU set and oversubscribe it. An explicit ``OMP_NUM_THREADS`` wins.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS") and hasattr(os, "sched_getaffinity"):
        usable = max(1, len(os.sched_getaffinity(0)))
        if torch.get_num_threads() > usable:
            torch.set_num_threads(usable)
    return torch.get_num_threads()


def load_backend(config: ModelConfig) -> ModelBackend:
    """The backend for ``config.name``: embedded, tiny-random, openai-api, hub name or path."""
    start = time.perf_counter()
    threads = limit_threads()
    if config.name in BACKENDS:
        path, factory = config.name, BACKENDS.get(config.name)
    else:
        path, factory = "huggingface", load_hf
    logger.info(
        "loading model %r via the %s loader (%s, %d torch threads)",
        config.name,
        path,
        config.dtype,
        threads,
    )
    backend = factory(config)
    if is_api_model(config):
        logger.info("model %r is served at %s", backend.name, config.api.base_url)
        return backend  # no local weights to place on a device
    device = resolve_device(config.device)
    if device != "cpu":
        backend.model.to(device)
    logger.info("loaded model %r on %s in %.1f s", config.name, device,
                time.perf_counter() - start)
    return backend


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other names unchanged.

    Asking for a device torch cannot use is a one-line error, not a crash mid-run.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BiasloopError(f"model.device = {device!r}: torch sees no CUDA GPU; valid: auto, cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise BiasloopError("model.device = 'mps': not available here; valid: auto, cpu")
    return device
