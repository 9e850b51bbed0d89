"""``model.name`` resolves before any run folder is written, and the hub is asked at most once.

Order: built-in names, a local folder, the Hugging Face cache, then one metadata request
to the hub with no retries. The hub here is a fake on loopback (or a closed port, for a
machine without a network); nothing reaches the real one.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

from biasloop.cli import app
from biasloop.config import load_config
from biasloop.config.schema import ModelConfig
from biasloop.errors import ConfigError
from biasloop.models import loading
from biasloop.models.hf import HFBackend
from biasloop.models.loading import check_model_names, load_backend, resolve_model_name

MISSING = "biasloop-test/no-such-model"


class FakeHub:
    """A loopback hub that gives every request the same answer and records its path."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        self.paths: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                hub.paths.append(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Hub access allowed (conftest sets HF_HUB_OFFLINE), an empty HF cache, no remembered hits."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(loading, "_ON_THE_HUB", set())


@pytest.fixture
def hub(online, monkeypatch) -> Iterator[Callable[..., FakeHub]]:
    """Start a :class:`FakeHub` and point huggingface_hub at it."""
    hubs: list[FakeHub] = []

    def start(status: int, body: dict, headers: dict[str, str] | None = None) -> FakeHub:
        fake = FakeHub(status, body, headers)
        hubs.append(fake)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake.url)
        return fake

    yield start
    for fake in hubs:
        fake.close()


@pytest.fixture
def no_network(online, monkeypatch) -> None:
    """The hub's address refuses connections, as on a machine without a network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")


@pytest.fixture
def tiny_folder(tiny_backend, tmp_path):
    folder = tmp_path / "my-model"
    tiny_backend.model.save_pretrained(folder)
    tiny_backend.tokenizer.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- resolution order


@pytest.mark.parametrize("name", ["tiny-random", "smollm2-135m-instruct"])
def test_a_built_in_name_resolves_without_files_or_the_hub(name, no_network):
    assert resolve_model_name(ModelConfig(name=name)) == loading.ModelSource("builtin", name)


def test_a_local_folder_resolves_and_loads_without_asking_the_hub(tiny_folder, hub):
    fake = hub(500, {})
    source = resolve_model_name(ModelConfig(name=str(tiny_folder)))
    assert source == loading.ModelSource("folder", str(tiny_folder))
    assert isinstance(load_backend(ModelConfig(name=str(tiny_folder))), HFBackend)
    assert fake.paths == []


def test_a_folder_without_config_json_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"model.name '.*empty' is a local path with no "
                                          r"config.json in it; valid: .*tiny-random"):
        resolve_model_name(ModelConfig(name=str(tmp_path / "empty")))


def test_a_model_in_the_hugging_face_cache_resolves_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    repo = cache / "models--biasloop-test--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    source = resolve_model_name(ModelConfig(name="biasloop-test/cached"))
    assert source == loading.ModelSource("cache", "biasloop-test/cached")


def test_an_invalid_hub_name_fails_without_the_hub(no_network):
    with pytest.raises(ConfigError, match="model.name 'a b/c d' is not a built-in name, not an "
                                          "existing folder, and not a valid hub name"):
        resolve_model_name(ModelConfig(name="a b/c d"))


def test_offline_an_unknown_name_fails_at_once_naming_hf_hub_offline():
    # conftest sets HF_HUB_OFFLINE=1
    with pytest.raises(ConfigError) as err:
        resolve_model_name(ModelConfig(name=MISSING))
    message = str(err.value)
    assert "\n" not in message
    assert f"model.name '{MISSING}'" in message and "HF_HUB_OFFLINE is set" in message
    assert "tiny-random" in message and "local model folder" in message


# --------------------------------------------------------------------------- the hub, once


def test_the_hub_is_asked_once_with_no_retries(hub, caplog):
    fake = hub(503, {"error": "overloaded"})
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as err:
        resolve_model_name(ModelConfig(name=MISSING))
    assert time.perf_counter() - start < 5
    assert fake.paths == [f"/api/models/{MISSING}"]
    assert "the hub answered HTTP 503" in str(err.value) and "\n" not in str(err.value)
    assert "Retrying" not in caplog.text


def test_a_name_the_hub_does_not_have_is_one_line(hub):
    hub(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
    with pytest.raises(ConfigError) as err:
        resolve_model_name(ModelConfig(name=MISSING))
    assert str(err.value).startswith(
        f"model.name '{MISSING}': the Hugging Face hub has no such model"
    )
    assert "\n" not in str(err.value)


def test_a_revision_the_hub_does_not_have_names_model_revision(hub):
    hub(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
    with pytest.raises(ConfigError, match="model.revision 'v9': model .* has no such revision"):
        resolve_model_name(ModelConfig(name=MISSING, revision="v9"))


def test_a_name_the_hub_has_resolves_and_is_asked_about_once_per_process(hub):
    fake = hub(200, {"id": "biasloop-test/present", "private": False})
    config = ModelConfig(name="biasloop-test/present")
    assert resolve_model_name(config) == loading.ModelSource("hub", "biasloop-test/present")
    assert resolve_model_name(config).kind == "hub"
    assert len(fake.paths) == 1


def test_without_a_network_an_unknown_name_fails_fast_in_one_line(no_network, caplog):
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as err:
        resolve_model_name(ModelConfig(name=MISSING))
    assert time.perf_counter() - start < 5
    assert "the hub cannot be reached (ConnectError" in str(err.value)
    assert "\n" not in str(err.value) and "Retrying" not in caplog.text


# --------------------------------------------------------------------------- before any run


def test_the_augmenter_model_is_checked_under_its_own_field(no_network):
    config = load_config(None, ["study=inheritance",
                                "inheritance.augmentation.model={name: ./no-such-augmenter}"])
    with pytest.raises(ConfigError, match=r"^inheritance.augmentation.model.name "
                                          r"'./no-such-augmenter' is a local path"):
        check_model_names(config)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_cli_fails_fast_in_one_line_and_writes_no_run_folder(command, no_network, tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text("model:\n  name: tiny-random\n")
    runner = CliRunner()
    # Import the study checks first, so the timing below measures only the failure.
    assert runner.invoke(app, ["config", "validate", str(config)]).exit_code == 0
    out = tmp_path / "run"
    args = (["run", str(config), f"model.name={MISSING}", "--out", str(out), "-q"]
            if command == "run" else ["config", "validate", str(config), f"model.name={MISSING}"])
    start = time.perf_counter()
    result = runner.invoke(app, args)
    assert time.perf_counter() - start < 5
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert result.output.startswith(f"error: '{config}': model.name '{MISSING}' is not")
    assert "Retrying" not in result.output and "Traceback" not in result.output
    assert not out.exists()
