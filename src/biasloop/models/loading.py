"""Turn a :class:`ModelConfig` into a ready :class:`ModelBackend`.

Names registered in :data:`BACKENDS` (``smollm2-135m-instruct``, ``tiny-random``,
``openai-api``) load their own way; any other name is a local folder or a Hugging
Face hub name. :func:`resolve_model_name` says which, without downloading, and
:func:`check_model_names` runs it on every model of a config before a run starts.
:func:`check_trainable` rejects an API model where a role needs the weights
(fine-tuning, scoring).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from biasloop.config.schema import API_BACKEND_NAME, ModelConfig
from biasloop.errors import BiasloopError, ConfigError
from biasloop.models.base import ModelBackend
from biasloop.registry import Registry

if TYPE_CHECKING:
    from biasloop.config.schema import ExperimentConfig

logger = logging.getLogger("biasloop.models")

#: Seconds the one hub request of :func:`resolve_model_name` may take.
HUB_TIMEOUT_SECONDS = 5.0

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
    return (f"{', '.join(BACKENDS.names())}, a local model folder (with config.json), or a "
            "Hugging Face hub name (org/name) that is cached or reachable")


@dataclass(frozen=True)
class ModelSource:
    """Where a ``model.name`` resolved, and what transformers loads from there."""

    kind: Literal["builtin", "folder", "cache", "hub"]
    location: str  # the built-in name, the folder's path, or the hub name


#: (name, revision) pairs the hub has confirmed in this process (a sweep asks once).
_ON_THE_HUB: set[tuple[str, str | None]] = set()


def resolve_model_name(config: ModelConfig, *, field: str = "model") -> ModelSource:
    """Where ``config.name`` comes from, found without downloading or retrying.

    In order: a built-in name (:data:`BACKENDS`); a local folder (an existing path,
    or one written with ``./``, ``/`` or ``~``, which must hold ``config.json``);
    the Hugging Face cache (its ``config.json`` at ``config.revision``, no network);
    the hub, asked once (one metadata request, :data:`HUB_TIMEOUT_SECONDS`, no
    retries; not at all when ``HF_HUB_OFFLINE`` is set). Anything else is a one-line
    ConfigError naming ``{field}.name`` (e.g. ``inheritance.augmentation.model.name``),
    the value and what is valid.

    >>> resolve_model_name(ModelConfig(name="tiny-random")).kind
    'builtin'
    >>> resolve_model_name(ModelConfig(name="./no-such-model"))
    Traceback (most recent call last):
    ...
    biasloop.errors.ConfigError: model.name './no-such-model' is a local path with no such folder; valid: ...
    """
    name = config.name
    if name in BACKENDS:
        return ModelSource("builtin", name)
    local = Path(name).expanduser()
    # Hub names look like ``org/name``; an existing path or an explicit ./, / or ~ is local.
    if name.startswith((".", "/", "~")) or local.exists():
        if not (local / "config.json").is_file():
            problem = "no such folder" if not local.exists() else "no config.json in it"
            raise ConfigError(
                f"{field}.name {name!r} is a local path with {problem}; valid: {_valid_names()}"
            )
        return ModelSource("folder", str(local))

    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConfigError(
            f"{field}.name {name!r} is not a built-in name, not an existing folder, and not a "
            f"valid hub name; valid: {_valid_names()}"
        ) from None
    if isinstance(try_to_load_from_cache(name, "config.json", revision=config.revision), str):
        return ModelSource("cache", name)
    not_local = (f"{field}.name {name!r} is not a built-in name, a local folder, or in the "
                 f"Hugging Face cache ({constants.HF_HUB_CACHE})")
    if _hub_offline():
        raise ConfigError(
            f"{not_local}, and HF_HUB_OFFLINE is set, so the hub was not asked; valid: "
            f"{_valid_names()}"
        )
    if (name, config.revision) not in _ON_THE_HUB:
        _ask_the_hub_once(config, field=field, not_local=not_local)
        _ON_THE_HUB.add((name, config.revision))
    return ModelSource("hub", name)


def _ask_the_hub_once(config: ModelConfig, *, field: str, not_local: str) -> None:
    """One ``model_info`` request: raise a one-line ConfigError unless the hub has the model.

    ``HfApi.model_info`` sends a single request (hub downloads retry up to five times
    with backoff, which without a network took about a minute and twenty log lines).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    name = config.name
    try:
        HfApi().model_info(name, revision=config.revision, timeout=HUB_TIMEOUT_SECONDS)
    except GatedRepoError:
        raise ConfigError(
            f"{field}.name {name!r} is gated on the Hugging Face hub and this machine has no "
            "access; valid: accept its terms on the hub and log in (hf auth login), or "
            f"{_valid_names()}"
        ) from None
    except RepositoryNotFoundError:
        raise ConfigError(
            f"{field}.name {name!r}: the Hugging Face hub has no such model (or it is private "
            f"and this machine is not logged in); valid: {_valid_names()}"
        ) from None
    except RevisionNotFoundError:
        raise ConfigError(
            f"{field}.revision {config.revision!r}: model {name!r} on the Hugging Face hub has "
            "no such revision; valid: one of its branches, tags or commits"
        ) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise ConfigError(
            f"{not_local}, and the hub answered HTTP {status}; valid: {_valid_names()}"
        ) from None
    except Exception as err:  # no network, DNS, TLS, timeout: whatever the client raises
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ConfigError(
            f"{not_local}, and the hub cannot be reached ({type(err).__name__}"
            f"{': ' + reason if reason else ''}); valid: {_valid_names()}"
        ) from None


def check_model_names(config: ExperimentConfig) -> None:
    """Resolve every model ``config`` would load, before any run folder is written.

    Checks ``model`` and, when set, ``inheritance.augmentation.model`` with
    :func:`resolve_model_name`; nothing is downloaded.
    """
    resolve_model_name(config.model, field="model")
    augmenter = config.inheritance.augmentation.model
    if augmenter is not None:
        resolve_model_name(augmenter, field="inheritance.augmentation.model")


def load_hf(config: ModelConfig) -> ModelBackend:
    """A local folder, or a hub model (``org/name``) from the cache or the hub.

    Where the name resolves is :func:`resolve_model_name`; a folder or a cached model
    loads without touching the network.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from biasloop.models.hf import HFBackend, torch_dtype_kwargs

    name = config.name
    source = resolve_model_name(config)
    options = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}

    def from_pretrained(local_only: bool) -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(
            source.location, local_files_only=local_only, **options
        )
        model = AutoModelForCausalLM.from_pretrained(
            source.location, local_files_only=local_only, **torch_dtype_kwargs(config.dtype),
            **options,
        )
        return tokenizer, model

    try:
        try:
            tokenizer, model = from_pretrained(local_only=source.kind != "hub")
        except OSError:
            if source.kind != "cache" or _hub_offline():
                raise
            # The cache holds config.json but not every file: fetch the rest from the hub.
            tokenizer, model = from_pretrained(local_only=False)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BiasloopError(
            f"cannot load model {name!r} ({first[:200]}); valid: {_valid_names()}"
        ) from None
    return HFBackend(model, tokenizer, config=config, name=name)


def _hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: never ask the hub."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


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
