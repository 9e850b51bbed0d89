"""The openai-api backend: generation through a real llama.cpp server, retries and
errors against a fault-injecting server, the on-disk response cache, and the roles
an API model may not take."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from biasloop.config.load import validate_config
from biasloop.config.schema import GenerationConfig, ModelConfig, TrainingConfig
from biasloop.errors import BiasloopError, ConfigError
from biasloop.models.loading import check_trainable, load_backend
from biasloop.models.openai_api import OpenAIApiBackend

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "inheritance" / "gender-smoke.yaml"
SECRET = "sk-test-0123456789abcdef-never-write-me"
SAMPLED = GenerationConfig(max_new_tokens=8, temperature=0.8, top_p=0.95)
GREEDY = GenerationConfig(max_new_tokens=8, temperature=0.0)


def api_backend(base_url: str, *, chat: bool = True, cache_dir: Path | None = None,
                **api: object) -> OpenAIApiBackend:
    settings = {"base_url": base_url, "model": "test-model", "backoff_seconds": 0.01, **api}
    config = ModelConfig(name="openai-api", chat_template=chat, api=settings)
    return OpenAIApiBackend(config, cache_dir=cache_dir)


# --------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's server (xllamacpp) on loopback, serving the embedded SmolLM2 GGUF."""
    xllamacpp = pytest.importorskip("xllamacpp", reason="needs xllamacpp (the test extra)")
    from biasloop.errors import MissingDependencyError
    from biasloop.models.embedded import locate_gguf

    try:
        gguf = locate_gguf()
    except MissingDependencyError as err:
        pytest.skip(f"needs the embedded model's GGUF file: {err}")
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.hostnames = ["127.0.0.1"]
    params.port = _free_port()
    params.n_parallel = 2
    params.n_ctx = 1024
    # One thread that sleeps when idle: on a busy shared CPU, spinning thread barriers
    # slow llama.cpp down by an order of magnitude.
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = 1
        cpu.poll = 0
    server = xllamacpp.Server(params)
    root = f"http://127.0.0.1:{params.port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=1) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("the llama.cpp server did not become healthy within 30 s")
        time.sleep(0.2)
    yield f"{root}/v1"
    del server  # stops the server
    gc.collect()


def test_generates_a_text_per_prompt_and_sample_from_a_llama_server(llama_server):
    backend = api_backend(llama_server)
    prompts = ["Name a colour.", "Name a fruit."]
    result = backend.generate(prompts, config=SAMPLED, num_samples=2, seed=1)
    assert len(result) == 2 and all(len(row) == 2 for row in result)
    assert all(isinstance(text, str) and text for row in result for text in row)
    assert backend.requests_sent == 4


def test_greedy_sends_one_request_per_prompt_and_repeats_its_answer(llama_server):
    backend = api_backend(llama_server)
    result = backend.generate(["Say hello.", "Count to three."], config=GREEDY, num_samples=3)
    assert backend.requests_sent == 2
    assert all(row == [row[0]] * 3 and row[0] for row in result)


def test_rerun_is_answered_from_the_cache_without_a_request(llama_server, tmp_path):
    cache = tmp_path / "cache" / "api"
    prompts = ["Name an animal.", "Name a city."]
    first = api_backend(llama_server, cache_dir=cache)
    paid = first.generate(prompts, config=SAMPLED, num_samples=2, seed=5)

    again = api_backend(llama_server)
    again.set_cache_dir(cache)  # how a study hands the run's cache folder to its augmenter
    assert again.generate(prompts, config=SAMPLED, num_samples=2, seed=5) == paid
    assert (again.requests_sent, again.cache_hits) == (0, 4)
    # Another seed is another request: the key holds the sampling seed.
    again.generate(prompts[:1], config=SAMPLED, num_samples=2, seed=6)
    assert again.requests_sent == 2


def test_the_inheritance_augmenter_can_be_a_served_model(llama_server, tmp_path):
    from biasloop.config import load_config
    from biasloop.inherit.augment import write_augmented
    from biasloop.inherit.study import composer_for, name_tables

    augmenter = "inheritance.augmentation.model"
    config = load_config(SMOKE, [f"{augmenter}.name=openai-api",
                                 f"{augmenter}.api.base_url={llama_server}",
                                 f"{augmenter}.api.model=smollm2"])
    backend = load_backend(config.inheritance.augmentation.model)
    backend.set_cache_dir(tmp_path / "cache" / "api")
    records = write_augmented(
        model=lambda: backend,
        composer=composer_for(config, "contextual_explicit", name_tables(config)[0]),
        count=2, config=config.inheritance.augmentation, batch_size=2, seed=0,
        folder=tmp_path / "augment", round_index=1, written_by=backend.name,
        track=lambda label, items: iter(items),
    )
    assert len(records) == 2 and all(r["response"] for r in records)
    assert backend.requests_sent >= 2 and any((tmp_path / "cache" / "api").iterdir())


@pytest.mark.parametrize("study_config", [SMOKE, None])
def test_a_study_rejects_an_api_model_where_it_fine_tunes(study_config):
    from biasloop.config import load_config
    from biasloop.runner.studies import get_study

    config = load_config(study_config, ["model.name=openai-api",
                                        "model.api.base_url=http://127.0.0.1:9/v1",
                                        "model.api.model=m"])
    with pytest.raises(ConfigError, match=r"^model: .*openai-api.* only generates"):
        get_study(config.study).check(config)


# --------------------------------------------------------------------------- a faulty server


class FaultServer:
    """A loopback OpenAI-style server that answers from a script of faults.

    Each request takes the next action of ``script`` (the last one repeats):
    ``"ok"``, ``"malformed"`` (a body that is not JSON), ``"null"`` (``content: null``),
    ``"close"`` (drop the
    connection without an answer), ``("sleep", seconds)`` (then ok) or
    ``(status, headers)`` (an error status with an OpenAI-style error body).
    """

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _next_action(self, request: dict) -> object:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = {"path": self.path, "body": body,
                           "authorization": self.headers.get("Authorization")}
                action = server._next_action(request)
                try:
                    self._answer(action, request)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, action: object, request: dict) -> None:
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = "ok"
                if action == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif action == "malformed":
                    self._send(200, b'{"choices": [{"message": ', {})
                elif action == "null":  # a server that answers with no content at all
                    choice = {"message": {"role": "assistant", "content": None}}
                    self._send(200, json.dumps({"choices": [choice]}).encode(), {})
                elif action == "ok":
                    body = request["body"]
                    prompt = body["messages"][0]["content"] if "messages" in body else body["prompt"]
                    text = f" echo {prompt} seed={body.get('seed')} "
                    choice = {"message": {"role": "assistant", "content": text}}
                    if "prompt" in body:
                        choice = {"text": text}
                    self._send(200, json.dumps({"choices": [choice]}).encode(), {})
                else:
                    status, headers = action
                    # A careless server that echoes the caller's Authorization header.
                    message = f"status {status} for {request['authorization']}"
                    self._send(status, json.dumps({"error": {"message": message}}).encode(),
                               headers)

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fault_server() -> Iterator[Callable[[list[object]], FaultServer]]:
    servers: list[FaultServer] = []

    def start(script: list[object]) -> FaultServer:
        servers.append(FaultServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_429_is_retried_after_the_servers_retry_after(fault_server):
    server = fault_server([(429, {"Retry-After": "1"}), "ok"])
    start = time.monotonic()
    result = api_backend(server.url).generate(["hi"], config=GREEDY)
    assert result == [["echo hi seed=None"]]
    assert len(server.requests) == 2
    assert time.monotonic() - start >= 0.9  # the 1 s Retry-After, not the 0.01 s backoff


def test_5xx_until_retries_run_out_is_a_one_line_error_with_the_last_status(fault_server):
    server = fault_server([(500, {})])
    backend = api_backend(server.url, max_retries=2)
    with pytest.raises(BiasloopError) as caught:
        backend.generate(["hi"], config=GREEDY)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{server.url}/chat/completions" in message
    assert "3 attempts" in message and "HTTP 500" in message
    assert len(server.requests) == 3


def test_malformed_json_is_retried(fault_server):
    server = fault_server(["malformed", "ok"])
    assert api_backend(server.url).generate(["hi"], config=GREEDY) == [["echo hi seed=None"]]
    assert len(server.requests) == 2


def test_malformed_json_every_time_is_a_clear_error(fault_server):
    server = fault_server(["malformed"])
    with pytest.raises(BiasloopError, match="malformed response") as caught:
        api_backend(server.url, max_retries=1).generate(["hi"], config=GREEDY)
    assert "2 attempts" in str(caught.value)
    assert len(server.requests) == 2


def test_a_dropped_connection_is_retried(fault_server):
    server = fault_server(["close", "ok"])
    assert api_backend(server.url).generate(["hi"], config=GREEDY) == [["echo hi seed=None"]]
    assert len(server.requests) == 2


def test_a_timeout_is_retried_then_reported(fault_server):
    server = fault_server([("sleep", 1.0)])
    with pytest.raises(BiasloopError, match=r"no answer within 0\.2 s"):
        api_backend(server.url, timeout_seconds=0.2, max_retries=1).generate(
            ["hi"], config=GREEDY)
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [401, 404])
def test_a_client_error_is_one_line_naming_endpoint_and_status_without_retry(fault_server,
                                                                              status):
    server = fault_server([(status, {})])
    with pytest.raises(BiasloopError) as caught:
        api_backend(server.url).generate(["hi"], config=GREEDY)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{server.url}/chat/completions answered HTTP {status}" in message
    assert len(server.requests) == 1


def test_the_api_key_is_sent_but_never_cached_logged_or_shown(fault_server, tmp_path,
                                                              monkeypatch, caplog):
    monkeypatch.setenv("BIASLOOP_TEST_KEY", SECRET)
    cache = tmp_path / "api"
    ok = fault_server(["ok"])
    api_backend(ok.url, cache_dir=cache, api_key_env="BIASLOOP_TEST_KEY").generate(
        ["hi"], config=SAMPLED, num_samples=2)
    assert ok.requests[0]["authorization"] == f"Bearer {SECRET}"

    refusing = fault_server([(503, {}), (401, {})])  # both echo the Authorization header
    with pytest.raises(BiasloopError) as caught:
        api_backend(refusing.url, cache_dir=cache, api_key_env="BIASLOOP_TEST_KEY").generate(
            ["hi"], config=GREEDY)
    assert "HTTP 401" in str(caught.value) and "***" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "HTTP 503" in caplog.text and SECRET not in caplog.text
    files = list(cache.iterdir())
    assert files and all(SECRET not in f.read_text() for f in files)


def test_a_missing_key_variable_is_a_clear_error_before_any_request(fault_server, monkeypatch):
    monkeypatch.delenv("BIASLOOP_TEST_KEY", raising=False)
    server = fault_server(["ok"])
    with pytest.raises(BiasloopError, match="BIASLOOP_TEST_KEY.*not set"):
        api_backend(server.url, api_key_env="BIASLOOP_TEST_KEY")
    assert server.requests == []


def test_requests_in_flight_are_bounded_by_max_concurrency(fault_server):
    server = fault_server([("sleep", 0.1)])
    result = api_backend(server.url, max_concurrency=2).generate(
        [f"p{i}" for i in range(6)], config=GREEDY)
    assert [row[0] for row in result] == [f"echo p{i} seed=None" for i in range(6)]
    assert server.peak_in_flight == 2


def test_samples_get_distinct_seeds_and_keep_their_order(fault_server):
    server = fault_server(["ok"])
    result = api_backend(server.url).generate(["a", "b"], config=SAMPLED, num_samples=3, seed=7)
    seeds = [[text.split("seed=")[1] for text in row] for row in result]
    assert [text.split(" seed=")[0] for row in result for text in row] == ["echo a"] * 3 + [
        "echo b"] * 3
    assert len(set(seeds[0])) == 3 and seeds[0] == seeds[1]  # seed depends on the sample only
    assert all(r["body"]["top_p"] == 0.95 for r in server.requests)


def test_plain_prompts_go_to_the_completions_endpoint(fault_server):
    server = fault_server(["ok"])
    result = api_backend(server.url, chat=False).generate(["The sky is"], config=GREEDY)
    assert result == [["echo The sky is seed=None"]]
    assert server.requests[0]["path"] == "/v1/completions"
    assert server.requests[0]["body"]["prompt"] == "The sky is"


def test_cache_is_json_shards_and_a_corrupt_shard_is_ignored_with_a_warning(
        fault_server, tmp_path, caplog):
    cache = tmp_path / "api"
    server = fault_server(["ok"])
    prompts = [f"q{i}" for i in range(5)]
    first = api_backend(server.url, cache_dir=cache).generate(prompts, config=GREEDY)
    shards = sorted(cache.iterdir())
    assert shards and all(len(p.stem) == 2 and p.suffix == ".json" for p in shards)
    stored = [json.loads(p.read_text()) for p in shards]
    assert all(s["format"] == 1 for s in stored)
    assert sum(len(s["entries"]) for s in stored) == 5

    shards[0].write_text("{not json")
    lost = len(stored[0]["entries"])
    again = api_backend(server.url, cache_dir=cache)
    assert again.generate(prompts, config=GREEDY) == first
    assert again.requests_sent == lost and again.cache_hits == 5 - lost
    assert "ignoring unreadable API cache file" in caplog.text
    assert json.loads(shards[0].read_text())["format"] == 1  # rewritten whole


# --------------------------------------------------------------------------- roles and config


def test_methods_that_need_weights_raise_one_line_errors(fault_server):
    server = fault_server(["ok"])
    backend = api_backend(server.url)
    calls = {
        "loglik": lambda: backend.loglik(["a"], ["b"]),
        "hidden_states": lambda: backend.hidden_states(["a"]),
        "train": lambda: backend.train([], config=TrainingConfig()),
        "save": lambda: backend.save(Path("x")),
        "load_trained": lambda: backend.load_trained(Path("x")),
        "count_tokens": lambda: backend.count_tokens(["a"]),
    }
    for name, call in calls.items():
        with pytest.raises(BiasloopError, match="only generates") as caught:
            call()
        assert "\n" not in str(caught.value), name
    assert backend.reset_to_base() is None
    assert server.requests == []


def test_load_backend_builds_the_api_backend_without_a_request(fault_server):
    server = fault_server(["ok"])
    backend = load_backend(ModelConfig(name="openai-api", api={"base_url": server.url,
                                                                "model": "m"}))
    assert isinstance(backend, OpenAIApiBackend) and backend.name == "m"
    assert server.requests == []


def test_check_trainable_rejects_an_api_model_and_accepts_a_local_one():
    api = ModelConfig(name="openai-api", api={"base_url": "http://127.0.0.1:9/v1", "model": "m"})
    with pytest.raises(ConfigError) as caught:
        check_trainable(api, "model")
    message = str(caught.value)
    assert message.startswith("model: ") and "openai-api" in message and "\n" not in message
    assert "local model" in message
    check_trainable(ModelConfig(name="tiny-random"), "model")  # no error


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"name": "openai-api"}, "model.api (base_url, model) is required"),
        ({"name": "tiny-random", "api": {"base_url": "http://h/v1", "model": "m"}},
         "model.api is only used with model.name 'openai-api'"),
        ({"name": "openai-api", "api": {"base_url": "h:8000/v1", "model": "m"}},
         "model.api.base_url = 'h:8000/v1': must be an http:// or https:// URL"),
        ({"name": "openai-api", "api": {"base_url": "http://u:p@h/v1", "model": "m"}},
         "must not hold credentials"),
        ({"name": "openai-api", "api": {"base_url": "http://h/v1", "model": "m",
                                        "api_key_env": "OPENAI KEY"}},
         "must be the NAME of an environment variable"),
        ({"name": "openai-api", "api": {"base_url": "http://h/v1", "model": "m",
                                        "max_concurrency": 0}},
         "model.api.max_concurrency = 0"),
    ],
)
def test_api_config_errors_are_one_line_and_name_the_field(model, expected):
    with pytest.raises(ConfigError) as caught:
        validate_config({"model": model})
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_api_config_keeps_only_the_key_variable_name():
    config = validate_config({"model": {"name": "openai-api", "api": {
        "base_url": "https://api.example.com/v1/", "model": "m", "api_key_env": "MY_KEY"}}})
    assert config.model.api.base_url == "https://api.example.com/v1"
    assert config.model.api.api_key_env == "MY_KEY"


# --------------------------------------------------------------------------- inside a study run

STUDY = [
    "name=api-augmenter", "study=inheritance", "model.name=tiny-random", "run.progress=false",
    "generation.batch_size=4", "training.batch_size=4", "training.max_length=48",
    "metrics.bootstrap_samples=0", "inheritance.bias_ratios=[0, 0.5]",
    "inheritance.bias_types=[contextual_explicit]", "inheritance.target_groups=[female]",
    "inheritance.evaluate_base=false", "inheritance.original.size=4",
    "inheritance.augmentation.max_new_tokens=8", "inheritance.augmentation.min_words=1",
    "inheritance.evaluation_items=1", "inheritance.evaluations=[occupation]",
    "inheritance.significance.resamples=10",
    "inheritance.augmentation.model.name=openai-api", "inheritance.augmentation.model.api.model=m",
]


def _pool_texts(run_dir: Path) -> list[str]:
    folder = run_dir / "conditions" / "main" / "seed-0" / "round-1" / "augment" / "contextual_explicit"
    return [json.loads(line)["response"] for chunk in sorted(folder.glob("chunk-*.jsonl"))
            for line in chunk.read_text().splitlines()]


def test_a_study_run_augments_through_the_server(llama_server, tmp_path):
    from biasloop.config import load_config
    from biasloop.runner.experiment import start_run

    config = load_config(None, [*STUDY, f"inheritance.augmentation.model.api.base_url={llama_server}"])
    run = start_run(config, out=tmp_path / "run").root
    texts = _pool_texts(run)
    assert len(texts) >= 4 and all(texts)
    assert any((run / "cache" / "api").glob("*.json"))
    assert (run / "conditions/main/seed-0/round-1/ratio-0.5/contextual_explicit/train.json").exists()


def test_a_resumed_study_takes_paid_answers_from_the_run_cache(fault_server, tmp_path):
    import shutil

    from biasloop.config import load_config
    from biasloop.runner.experiment import resume_run, start_run

    server = fault_server(["ok"])
    config = load_config(None, [*STUDY, f"inheritance.augmentation.model.api.base_url={server.url}"])
    run = start_run(config, out=tmp_path / "run").root
    paid, texts = len(server.requests), _pool_texts(run)
    assert paid >= 4 and all("echo" in t for t in texts)
    # Lose the augmented pool and what was trained on it; the answers stay in the cache.
    seed_dir = run / "conditions" / "main" / "seed-0"
    shutil.rmtree(seed_dir / "round-1" / "augment")
    shutil.rmtree(seed_dir / "round-1" / "ratio-0.5")
    resume_run(run)
    assert len(server.requests) == paid  # not one request more
    assert _pool_texts(run) == texts
    assert (seed_dir / "round-1/ratio-0.5/contextual_explicit/metrics.parquet").exists()


def test_an_augmenter_answering_null_content_fails_below_the_usable_floor(tmp_path, caplog):
    from biasloop.config import load_config
    from biasloop.errors import DataError
    from biasloop.inherit.augment import write_augmented
    from biasloop.inherit.study import composer_for, name_tables

    server = FaultServer(["null"])
    try:
        augmenter = "inheritance.augmentation.model"
        config = load_config(SMOKE, [f"{augmenter}.name=openai-api",
                                     f"{augmenter}.api.base_url={server.url}",
                                     f"{augmenter}.api.model=m"])
        backend = load_backend(config.inheritance.augmentation.model)

        def augment(settings, folder):
            return write_augmented(
                model=lambda: backend,
                composer=composer_for(config, "contextual_explicit", name_tables(config)[0]),
                count=4, config=settings, batch_size=2, seed=0, folder=tmp_path / folder,
                round_index=1, written_by="api", track=lambda label, items: iter(items),
            )

        with pytest.raises(DataError, match=r"augmentation contextual_explicit round 1: only 0 "
                           r"of the 4 needed texts are usable .*5 written by api.*min_usable = 0\.5"):
            augment(config.inheritance.augmentation, "strict")
        lenient = config.inheritance.augmentation.model_copy(update={"min_usable": 0.0})
        with caplog.at_level("WARNING", logger="biasloop"):
            assert augment(lenient, "lenient") == []
        assert "only 0 of 4 texts" in caplog.text
    finally:
        server.close()
