"""Shared pytest setup. Nothing may reach the Hugging Face hub at run time."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub (it reads these at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Under pytest-xdist each worker gets one thread: workers share the cores, and
# oversubscribed spinning threads run several times slower than one each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture
def tiny_backend():
    """A fresh ``tiny-random`` backend (random Llama, SmolLM2 tokenizer), same weights each time."""
    from biasloop.config.schema import ModelConfig
    from biasloop.models.loading import load_backend

    return load_backend(ModelConfig(name="tiny-random"))


def pytest_collection_modifyitems(config, items):
    """Tests that open a report in Chromium are marked ``browser`` (``-m "not browser"``)."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
