"""Every shipped example config validates, with every plug-in it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from biasloop.config import load_config
from biasloop.runner.experiment import check_plugins

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_there_are_example_configs_for_every_task():
    names = {p.name for p in CONFIGS}
    for task in ("news", "math", "preference"):
        for variant in ("retrain", "incremental", "smoke"):
            assert f"{task}-{variant}.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_is_valid(path):
    check_plugins(load_config(path))
