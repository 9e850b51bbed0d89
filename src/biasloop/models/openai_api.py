"""A model served behind an OpenAI-compatible API: ``model.name: openai-api``.

vLLM (``vllm serve``), llama.cpp's ``llama-server`` and hosted APIs all answer
``POST <base_url>/chat/completions`` (and ``/completions`` for plain prompts).
:class:`OpenAIApiBackend` implements :meth:`ModelBackend.generate` over it:

- one request per prompt × sample, at most ``model.api.max_concurrency`` in flight;
- sample ``s`` is sent with seed ``derive_seed(seed, "api-sample", s)``; temperature 0
  is greedy: one request per prompt, its answer repeated ``num_samples`` times;
- 429, 408, 5xx, connection errors, timeouts and malformed bodies are retried with
  exponential backoff (a ``Retry-After`` header wins); another 4xx is a one-line
  error naming the endpoint and the status;
- every response is cached on disk by request (see :mod:`biasloop.models.api_cache`)
  once :meth:`OpenAIApiBackend.set_cache_dir` gives it a folder.

It only generates: scoring, hidden states, fine-tuning and adapters need the
weights, so those methods raise a one-line :class:`BiasloopError`. The API key is
read from the environment variable named by ``model.api.api_key_env`` at each
request and is never stored on the backend, in the cache, in logs or in errors.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch

from biasloop.config.schema import API_BACKEND_NAME, GenerationConfig, ModelConfig, TrainingConfig
from biasloop.errors import BiasloopError, ConfigError, MissingDependencyError
from biasloop.models.api_cache import ResponseCache, request_key
from biasloop.models.base import ModelBackend, TrainExample, TrainResult
from biasloop.seeding import derive_seed

logger = logging.getLogger("biasloop.models")

_MAX_BACKOFF_SECONDS = 60.0
_MAX_RETRY_AFTER_SECONDS = 600.0
_FLUSH_EVERY = 64  # new cache entries between flushes, so a killed run keeps what it paid for
_RETRY_STATUSES = frozenset({408, 429})
T = TypeVar("T")


class _Retryable(Exception):
    """A failed attempt worth repeating: ``reason`` for the log, ``retry_after`` from the server."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)


def _error_detail(response: Any) -> str:
    """The server's own error message, if its body has one (OpenAI style or plain text)."""
    try:
        data = response.json()
    except ValueError:
        return _one_line(response.text) if response.text.strip() else ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return _one_line(error.get("message") or "")
    if isinstance(error, str):
        return _one_line(error)
    if isinstance(data, dict) and isinstance(data.get("detail"), str):  # FastAPI-style servers
        return _one_line(data["detail"])
    return ""


def _as_completed(futures: Iterable[Future[T]]) -> Iterator[Future[T]]:
    """Futures as they finish (like ``concurrent.futures.as_completed``, with no timeout)."""
    remaining = set(futures)
    while remaining:
        done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
        yield from done


class OpenAIApiBackend(ModelBackend):
    """Generation through an OpenAI-compatible ``/v1/chat/completions`` (or ``/v1/completions``).

    >>> from biasloop.config.schema import ModelConfig
    >>> backend = OpenAIApiBackend(ModelConfig(name="openai-api", api={
    ...     "base_url": "http://127.0.0.1:8000/v1", "model": "my-model"}))
    >>> backend.endpoint
    'http://127.0.0.1:8000/v1/chat/completions'
    """

    #: No local tokenizer: the server owns it.
    tokenizer = None

    def __init__(self, config: ModelConfig, *, cache_dir: Path | None = None) -> None:
        if config.api is None:
            raise ConfigError(
                f"model.api is required when model.name is {API_BACKEND_NAME!r}; "
                "give base_url and model"
            )
        try:
            import httpx2
        except ImportError:
            raise MissingDependencyError(
                "the openai-api backend needs the package httpx2; install it with: "
                "pip install httpx2"
            ) from None
        self._httpx = httpx2
        self.config = config
        self.api = config.api
        self.name = self.api.model
        self.chat = config.chat_template
        self.endpoint = f"{self.api.base_url}/{'chat/completions' if self.chat else 'completions'}"
        self._api_key()  # fail now, not at the first request, when the variable is missing
        self._client = httpx2.Client(
            timeout=httpx2.Timeout(self.api.timeout_seconds),
            limits=httpx2.Limits(
                max_connections=self.api.max_concurrency,
                max_keepalive_connections=self.api.max_concurrency,
            ),
            follow_redirects=True,
        )
        self._jitter = random.Random()  # private: must not draw from the seeded global RNG
        self._lock = threading.Lock()
        self._cache: ResponseCache | None = None
        #: HTTP requests sent (every attempt) and responses answered from the cache.
        self.requests_sent = 0
        self.cache_hits = 0
        self.set_cache_dir(cache_dir)

    # ------------------------------------------------------------------ set-up

    def set_cache_dir(self, folder: Path | None) -> None:
        """Cache responses in ``folder`` (e.g. ``<run>/cache/api``); None turns caching off.

        Ignored (no cache) when ``model.api.cache`` is false.
        """
        if self._cache is not None:
            self._cache.flush()
        self._cache = ResponseCache(Path(folder)) if folder is not None and self.api.cache else None

    @property
    def cache_dir(self) -> Path | None:
        return self._cache.folder if self._cache is not None else None

    def _api_key(self) -> str | None:
        name = self.api.api_key_env
        if name is None:
            return None
        key = os.environ.get(name, "").strip()
        if not key:
            raise BiasloopError(
                f"model.api.api_key_env = {name!r}: that environment variable is not set or "
                f"empty; export {name}=<your key>, or set api_key_env: null for a server "
                "without a key"
            )
        return key

    def _redact(self, text: str) -> str:
        """``text`` with the API key (should a server echo it) replaced by ``***``."""
        name = self.api.api_key_env
        key = os.environ.get(name, "").strip() if name else ""
        return text.replace(key, "***") if key else text

    def close(self) -> None:
        """Write pending cache entries and close the HTTP connections."""
        if self._cache is not None:
            self._cache.flush()
        self._client.close()

    # ------------------------------------------------------------------ requests

    def _body(self, prompt: str, config: GenerationConfig, sample_seed: int | None) -> dict:
        """The JSON body of one request; greedy requests carry no top_p and no seed."""
        body: dict[str, Any] = {"model": self.api.model}
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body["max_tokens"] = config.max_new_tokens
        body["temperature"] = config.temperature
        if config.temperature > 0:
            body["top_p"] = config.top_p
            body["seed"] = sample_seed
        body["stream"] = False
        return body

    def _text(self, data: Any) -> str:
        """The generated text of a response body; KeyError/TypeError/IndexError if malformed."""
        choice = data["choices"][0]
        text = choice["message"]["content"] if self.chat else choice["text"]
        if text is None:  # e.g. a refusal or tool call: no text was generated
            return ""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}")
        return text.strip()

    def _attempt(self, body: dict) -> str:
        """Send ``body`` once: the text, a :class:`_Retryable`, or a fatal BiasloopError."""
        httpx = self._httpx
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with self._lock:
            self.requests_sent += 1
        try:
            response = self._client.post(self.endpoint, json=body, headers=headers)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.api.timeout_seconds:g} s") from None
        except httpx.TransportError as err:
            detail = _one_line(self._redact(str(err))) or "no details"
            raise _Retryable(f"connection error ({type(err).__name__}: {detail})") from None
        status = response.status_code
        if status in _RETRY_STATUSES or status >= 500:
            detail = self._redact(_error_detail(response))
            raise _Retryable(
                f"HTTP {status}" + (f" ({detail})" if detail else ""),
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            detail = self._redact(_error_detail(response))
            raise BiasloopError(
                f"{self.endpoint} answered HTTP {status}"
                + (f" ({detail})" if detail else "")
                + f"; {self._hint(status)}"
            )
        try:
            return self._text(response.json())
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise _Retryable(
                f"malformed response (HTTP {status}, {type(err).__name__}: "
                f"{_one_line(self._redact(str(err)), 80)})"
            ) from None

    def _hint(self, status: int) -> str:
        env = self.api.api_key_env
        if status in (401, 403):
            return (f"check the key in ${env}" if env else
                    "the server wants a key: set model.api.api_key_env to the NAME of the "
                    "variable holding it")
        if status == 404:
            return (f"check model.api.base_url {self.api.base_url!r} (the API root, usually "
                    f"ending in /v1) and model.api.model {self.api.model!r}")
        return "the server rejected the request; check model.api.model and the generation settings"

    def _request(self, body: dict) -> str:
        """Send ``body`` with retries and backoff; the generated text or a one-line error."""
        attempts = self.api.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._attempt(body)
            except _Retryable as problem:
                last = problem.reason
                if attempt + 1 == attempts:
                    break
                if problem.retry_after is not None:
                    delay = problem.retry_after
                else:
                    delay = min(self.api.backoff_seconds * 2**attempt, _MAX_BACKOFF_SECONDS)
                    delay *= 1 + 0.25 * self._jitter.random()  # spread retries of parallel calls
                logger.warning("%s: %s; retry %d of %d in %.1f s", self.endpoint, last,
                               attempt + 1, self.api.max_retries, delay)
                time.sleep(delay)
        raise BiasloopError(
            f"{self.endpoint} failed after {attempts} attempt{'s' if attempts > 1 else ''}; "
            f"last error: {last}; check that the server is up, or raise model.api.max_retries"
        )

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        prompts: Sequence[str],
        *,
        config: GenerationConfig,
        num_samples: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> list[list[str]]:
        """``num_samples`` responses per prompt, ``result[prompt][sample]``.

        Sample ``s`` of every prompt is requested with seed ``derive_seed(seed,
        "api-sample", s)``; temperature 0 requests each prompt once and repeats the
        answer. ``config.batch_size`` is not used: ``model.api.max_concurrency``
        bounds the requests in flight. Cached responses are not requested again.
        """
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        greedy = config.temperature == 0
        draws = 1 if greedy else num_samples
        answers: dict[tuple[int, int], str] = {}
        todo: dict[tuple[int, int], tuple[str, dict]] = {}
        for index, prompt in enumerate(prompts):
            for sample in range(draws):
                body = self._body(prompt, config, derive_seed(seed, "api-sample", sample))
                key = request_key(self.endpoint, body, sample)
                cached = self._cache.get(key) if self._cache is not None else None
                if cached is not None:
                    answers[index, sample] = cached
                else:
                    todo[index, sample] = (key, body)
        hits = len(answers)
        if todo:
            self._fetch(todo, answers, progress=progress)
        with self._lock:
            self.cache_hits += hits
        logger.info("%s: %d responses, %d from the cache, %d requested", self.endpoint,
                    len(answers), hits, len(todo))
        return [
            [answers[index, sample] for sample in range(draws)] * (num_samples if greedy else 1)
            for index in range(len(prompts))
        ]

    def _fetch(
        self,
        todo: dict[tuple[int, int], tuple[str, dict]],
        answers: dict[tuple[int, int], str],
        *,
        progress: bool,
    ) -> None:
        """Request every body in ``todo`` concurrently; fill ``answers`` and the cache."""
        from biasloop.models.progress import track

        pool = ThreadPoolExecutor(
            max_workers=min(self.api.max_concurrency, len(todo)), thread_name_prefix="biasloop-api"
        )
        futures = {pool.submit(self._request, body): job for job, (_, body) in todo.items()}
        unsaved = 0
        try:
            for future in track(_as_completed(futures), total=len(futures),
                                description="generate (api)", enabled=progress):
                job = futures[future]
                answers[job] = future.result()  # a fatal error stops the whole call
                if self._cache is not None:
                    self._cache.put(todo[job][0], answers[job])
                    unsaved += 1
                    if unsaved >= _FLUSH_EVERY:
                        self._cache.flush()
                        unsaved = 0
        finally:
            # After a fatal error, drop queued requests; those in flight end on their own.
            pool.shutdown(wait=False, cancel_futures=True)
            if self._cache is not None:
                self._cache.flush()  # keep every response already paid for

    # ------------------------------------------------------------------ not available

    def _local_only(self, what: str) -> NoReturn:
        raise BiasloopError(
            f"{what} needs the model's weights, but model {self.api.model!r} is behind an API "
            f"({API_BACKEND_NAME} backend at {self.api.base_url}), which only generates; use a "
            "local model (a hub name, a local folder or smollm2-135m-instruct) for this role"
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        self._local_only("counting tokens")

    def loglik(
        self,
        prompts: Sequence[str],
        continuations: Sequence[str],
        *,
        batch_size: int = 16,
        chat: bool = False,
    ) -> list[float]:
        self._local_only("log-likelihood scoring")

    def hidden_states(self, texts: Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
        self._local_only("reading hidden states")

    def train(
        self,
        examples: Sequence[TrainExample],
        *,
        config: TrainingConfig,
        seed: int = 0,
        progress: bool = False,
    ) -> TrainResult:
        self._local_only("fine-tuning")

    def save(self, path: Path) -> None:
        self._local_only("saving trained weights")

    def load_trained(self, path: Path) -> None:
        self._local_only("loading trained weights")

    def reset_to_base(self) -> None:
        """Nothing to reset: the served model is never changed."""


def load_api_backend(config: ModelConfig) -> OpenAIApiBackend:
    """The backend for ``model.name: openai-api`` (no request is sent until ``generate``)."""
    return OpenAIApiBackend(config)
