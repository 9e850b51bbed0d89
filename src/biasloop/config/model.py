"""``model:``: which causal LM to load and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from biasloop.config.api import ApiConfig
from biasloop.config.section import Section

#: ``model.name`` of a model served behind an OpenAI-compatible API (``model.api``).
API_BACKEND_NAME = "openai-api"


class ModelConfig(Section):
    """Which causal LM to load and how."""

    name: str = Field(
        "smollm2-135m-instruct",
        description="`smollm2-135m-instruct` (embedded default), `tiny-random` (tests), "
        "any Hugging Face causal LM by hub name or local path, or `openai-api` (a served "
        "model that only generates; set `model.api`).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights and compute dtype."
    )
    device: str = Field(
        "auto",
        description="`auto` (the first CUDA GPU if torch sees one, else CPU), `cpu`, `cuda`, "
        "`cuda:N` or `mps`.",
        pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code from the hub to run. Off unless set here."
    )
    chat_template: bool = Field(
        True, description="Wrap prompts in the tokenizer's chat template when it has one."
    )
    api: ApiConfig | None = Field(
        None, description="Server, model name and key variable when `name` is `openai-api`; "
        "see docs/api-backends.md.",
    )

    @field_validator("name")
    @classmethod
    def _name_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a model name or path, not empty")
        return value

    @model_validator(mode="after")
    def _api_matches_name(self) -> ModelConfig:
        if self.name == API_BACKEND_NAME and self.api is None:
            raise ValueError(f"model.api (base_url, model) is required when model.name is "
                             f"{API_BACKEND_NAME!r}")
        if self.name != API_BACKEND_NAME and self.api is not None:
            raise ValueError(f"model.api is only used with model.name {API_BACKEND_NAME!r}, "
                             f"not {self.name!r}; set model.name: {API_BACKEND_NAME} or drop api")
        return self
