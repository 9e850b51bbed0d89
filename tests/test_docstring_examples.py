"""The examples in the docstrings of the statistics and dynamics modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "biasloop.metrics.disparity",
    "biasloop.metrics.ranges",
    "biasloop.metrics.stats",
    "biasloop.loop.feedback",
    "biasloop.inherit.scoring",
    "biasloop.registry",
    "biasloop.store",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
