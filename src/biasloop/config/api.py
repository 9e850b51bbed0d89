"""Config of a model served behind an OpenAI-compatible API: ``model.api``.

Used with ``model.name: openai-api`` (see ``docs/api-backends.md``). The API key
is never part of the config: ``api_key_env`` names the environment variable
that holds it, so configs, manifests and logs never contain the key.

    >>> from biasloop.config.api import ApiConfig
    >>> ApiConfig(base_url="http://127.0.0.1:8000/v1/", model="Qwen/Qwen2.5-7B-Instruct").base_url
    'http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from biasloop.config.section import Section

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ApiConfig(Section):
    """An OpenAI-compatible server (vLLM, llama.cpp's llama-server, a hosted API)."""

    base_url: str = Field(
        description="API root including its version prefix, as for the openai client, "
        "e.g. `http://127.0.0.1:8000/v1`; requests go to `<base_url>/chat/completions` "
        "(or `/completions` when `model.chat_template` is false).",
    )
    model: str = Field(
        min_length=1, description="Model name the server knows, sent as `model` in each request."
    )
    api_key_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the API key (sent as a Bearer "
        "token); null for a server without a key. The key itself never goes in a config.",
    )
    max_concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_seconds: float = Field(
        120.0, gt=0.0, le=3600.0, description="Timeout of one request (connect and read)."
    )
    max_retries: int = Field(
        5, ge=0, le=20, description="Retries after a 429, a 5xx, a connection error, a timeout "
        "or a malformed response, before giving up.",
    )
    backoff_seconds: float = Field(
        1.0, ge=0.0, le=60.0, description="First retry delay; doubles on each retry (at most "
        "60 s). A server's `Retry-After` header wins.",
    )
    cache: bool = Field(
        True, description="Keep every response on disk (in the run's `cache/api/`) so a resumed "
        "or repeated run does not request it again.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        if parts.username or parts.password:
            # The URL is logged, cached and written to the manifest: no secrets in it.
            raise ValueError("must not hold credentials; put the key in the variable "
                             "named by api_key_env")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment, e.g. http://127.0.0.1:8000/v1")
        return value.strip().rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be the NAME of an environment variable (letters, digits and "
                             "_, e.g. OPENAI_API_KEY), not the key itself")
        return value
