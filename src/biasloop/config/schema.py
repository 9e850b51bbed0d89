"""Typed, validated configuration for every biasloop run.

All configs are frozen pydantic models with keyword-only construction and
``extra="forbid"``: an unknown key, a wrong type or an out-of-range value is
rejected before any work starts. The same objects come from YAML
(:func:`biasloop.config.load_config`), from CLI overrides (``model.name=tiny-random``)
and from Python::

    >>> from biasloop.config import ExperimentConfig
    >>> cfg = ExperimentConfig(name="demo", model={"name": "tiny-random"})
    >>> cfg.model.name
    'tiny-random'
"""

from __future__ import annotations

import warnings

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

# Sections with their own modules, re-exported here where every section can be found.
from biasloop.config.api import ApiConfig  # noqa: F401
from biasloop.config.inheritance import InheritanceConfig
from biasloop.config.model import API_BACKEND_NAME, ModelConfig  # noqa: F401
from biasloop.config.section import Section, validate_seeds
from biasloop.config.simulate import SimulateConfig
from biasloop.config.sweep import SweepConfig


class GenerationConfig(Section):
    """Sampling parameters for every generation call."""

    max_new_tokens: int = Field(48, ge=1, le=4096, description="Tokens generated per response.")
    temperature: float = Field(
        0.8, ge=0.0, le=5.0, description="Sampling temperature; 0 means greedy decoding."
    )
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    batch_size: int = Field(32, ge=1, le=4096, description="Prompts per forward batch.")
    engine: Literal["auto", "compact", "transformers"] = Field(
        "auto",
        description="`compact`: biasloop's batched decoder for Llama-architecture models "
        "(static KV cache, fused projections, fast top-p); `transformers`: `model.generate`; "
        "`auto`: `compact` when the model supports it. See docs/performance.md.",
    )
    compute_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Dtype the compact decoder computes in; `auto` is bfloat16 where it is "
        "native (CPUs with AVX512-BF16/AMX, recent GPUs), else `model.dtype`.",
    )
    quantization: Literal["none", "int8"] = Field(
        "none",
        description="`int8`: the compact decoder's layer projections and vocabulary head "
        "run as int8 x int8 matmuls (weights per channel, activations per token, "
        "SmoothQuant-calibrated): ~1.6x faster generation measured on a VNNI CPU with "
        "the native kernels (1.1-1.4x with PyTorch ops), not exact "
        "(docs/performance.md); CPU only, needs `engine` auto or compact. Scoring "
        "(loglik) and training are never quantised.",
    )
    kernels: Literal["auto", "native", "torch"] = Field(
        "auto",
        description="CPU kernels of the compact decoder in bfloat16 and int8: `native` "
        "compiles C kernels (the decode step's attention, norms, RoPE, SiLU, int8 "
        "quantisation and top-p candidates) with the machine's C compiler once, and "
        "fails if it cannot; `torch` uses PyTorch ops "
        "only; `auto` is `native` when a compiler works, else `torch`. float32 always "
        "uses PyTorch ops. See docs/performance.md.",
    )

    @model_validator(mode="after")
    def _compact_settings_need_compact(self) -> GenerationConfig:
        for field, value in (("quantization", "int8"), ("kernels", "native")):
            if getattr(self, field) == value and self.engine == "transformers":
                raise ValueError(
                    f"generation.{field} {value!r} needs the compact decoder, but "
                    "generation.engine is 'transformers'; valid: engine auto or compact"
                )
        return self


class TrainingConfig(Section):
    """Fine-tuning of each generation's model."""

    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters or full weights.")
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0)
    epochs: int = Field(1, ge=1, le=100)
    batch_size: int = Field(8, ge=1, le=1024)
    max_length: int = Field(128, ge=8, le=8192, description="Prompt + response tokens kept.")
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(16, ge=1, le=4096)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that get LoRA adapters.",
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    compute_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="`bfloat16` runs forward and backward under bf16 autocast (weights and "
        "optimiser stay in `model.dtype`); `auto` is bfloat16 where it is native, else "
        "`model.dtype`.",
    )


class TaskConfig(Section):
    """The task: groups, query pools, reference data, quality and attribute."""

    name: str = Field("preference", description="Registered task name: news, math, preference.")
    source: Literal["packaged", "hf"] = Field(
        "packaged", description="`packaged` ships with biasloop; `hf` loads a dataset."
    )
    hf_dataset: str | None = Field(
        None, description="Dataset name or local path (JSONL/CSV/Parquet) when source is `hf`."
    )
    eval_queries_per_group: int = Field(
        32, ge=1, le=100000, description="Fixed, balanced evaluation queries per group."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Task-specific options, validated by the task."
    )

    @model_validator(mode="after")
    def _hf_needs_dataset(self) -> TaskConfig:
        if self.source == "hf" and not self.hf_dataset:
            raise ValueError("task.hf_dataset is required when task.source is 'hf'")
        return self


class LoopConfig(Section):
    """The self-consuming loop (SPEC section 2)."""

    type: Literal["retrain", "incremental"] = Field(
        "retrain",
        description="`retrain`: M_{t+1} = Train(M_0, D_{t+1}); "
        "`incremental`: M_{t+1} = Train(M_t, D_{t+1}).",
    )
    generations: int = Field(3, ge=1, le=1000, description="Number of generations T.")
    queries_per_generation: int = Field(
        64, ge=1, le=10_000_000, description="Queries n served each generation."
    )
    synthetic_fraction: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share λ of the training set D_{t+1} that is synthetic (the accepted "
        "answers, served by p_t). λ < 1 adds round(|S|·(1−λ)/λ) real reference examples "
        "(n when λ = 0) whose groups are drawn by p_{t+1}: a second path from the group "
        "shares to the model. The default 1 trains on synthetic data only.",
    )
    data_policy: Literal["replace", "accumulate"] = Field(
        "replace", description="`replace`: only S_t; `accumulate`: S_0 ∪ … ∪ S_t."
    )
    initial_shares: dict[str, float] | None = Field(
        None, description="Initial group shares p_0(g); uniform when omitted."
    )

    @field_validator("initial_shares")
    @classmethod
    def _shares_valid(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if any(v < 0 for v in value.values()):
            raise ValueError(f"shares must be >= 0, got {value}")
        if sum(value.values()) <= 0:
            raise ValueError(f"shares must sum to a positive number, got {value}")
        return value


#: Keys that were fields of ``feedback`` before each rule had its own params:
#: key -> the rule whose params hold it now (deprecated; moved with a FutureWarning).
LEGACY_FEEDBACK_KEYS = {"alpha": "retention", "beta": "retention", "arrivals": "retention",
                        "eta": "exponential"}


class FeedbackConfig(Section):
    """How group shares respond to service quality (SPEC section 2).

    Each rule's own options are under ``params.<rule>`` (``biasloop list feedback-rule``),
    so conditions that switch the rule can share one ``feedback`` section.
    """

    rule: str = Field("static", description="Registered rule: static, retention, exponential.")
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options per rule, e.g. `{retention: {alpha: 0.3, beta: 0.7}, exponential: "
        "{eta: 5}}`; each is checked by that rule's params (`biasloop list feedback-rule`). The "
        "old top-level keys alpha, beta, arrivals and eta still work, with a deprecation warning.",
    )
    initial_population: float = Field(
        100.0,
        gt=0.0,
        description="Users at generation 0, N_0(g) = initial_population · p_0(g); N and the "
        "retention rule's `arrivals` count users in this unit.",
    )
    min_share: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="Floor on any group's share, held exactly after renormalising "
        "(0 lets a group vanish); at most 1 / number of groups.",
    )

    @model_validator(mode="before")
    @classmethod
    def _move_legacy_keys(cls, data: Any) -> Any:
        """``feedback.alpha`` and friends move to ``feedback.params.<rule>.<key>`` (deprecated)."""
        if not isinstance(data, dict) or not set(data) & set(LEGACY_FEEDBACK_KEYS):
            return data
        data = dict(data)
        params = {rule: dict(values) if isinstance(values, dict) else values
                  for rule, values in (data.get("params") or {}).items()}
        for key in [k for k in data if k in LEGACY_FEEDBACK_KEYS]:
            rule = LEGACY_FEEDBACK_KEYS[key]
            warnings.warn(
                f"feedback.{key} is deprecated and will be removed; use "
                f"feedback.params.{rule}.{key}",
                FutureWarning,
                stacklevel=2,
            )
            value = data.pop(key)
            if isinstance(params.setdefault(rule, {}), dict):
                params[rule].setdefault(key, value)
        data["params"] = params
        return data


#: Options that were fields of ``mitigation`` before each mitigation had its own params:
#: key -> the mitigation whose params hold them now (deprecated; moved with a FutureWarning).
#: ``token``, ``mask`` and ``loss`` were whole sections; ``acceptance_rate`` one value.
LEGACY_MITIGATION_KEYS = {"token": "token", "mask": "mask", "loss": "loss",
                          "acceptance_rate": "random_rejection"}


class MitigationConfig(Section):
    """How served candidates become the accepted synthetic set, and how it is trained on.

    Each mitigation's own options are under ``params.<name>`` (``biasloop list
    mitigation``), so conditions that switch the mitigation share one section.
    """

    name: str = Field(
        "none",
        description="Registered mitigation: none, reward_rejection, "
        "balanced_reward_rejection, random_rejection, reweight (curation, SCPL); "
        "token, mask, loss (training data and objective, both studies).",
    )
    candidates: int = Field(1, ge=1, le=64, description="Candidates k drawn per query.")
    threshold: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Reward τ a best candidate must reach (mitigations with a threshold).",
    )
    on_reject: Literal["drop", "resample"] = Field(
        "drop", description="What happens to a query whose best candidate misses τ."
    )
    max_resamples: int = Field(2, ge=0, le=20)
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options per mitigation, e.g. `{token: {tag: '<aug>'}, loss: {weight: "
        "0.1}}`; each is checked by that mitigation's params (`biasloop list mitigation`). "
        "The old keys token, mask, loss and acceptance_rate still work, with a deprecation "
        "warning.",
    )

    @model_validator(mode="before")
    @classmethod
    def _move_legacy_keys(cls, data: Any) -> Any:
        """Old option keys move to ``mitigation.params.<name>`` (deprecated)."""
        if not isinstance(data, dict):
            return data
        params = data.get("params")
        flat = isinstance(params, dict) and any(not isinstance(v, dict) for v in params.values())
        if not flat and not set(data) & set(LEGACY_MITIGATION_KEYS):
            return data
        data = dict(data)
        if flat:  # ``params: {option: value}`` for the named mitigation only
            name = data.get("name", "none")
            warnings.warn(
                f"mitigation.params with options at the top level is deprecated; use "
                f"mitigation.params.{name}.<option>", FutureWarning, stacklevel=2,
            )
            params = {name: params}
        params = {k: dict(v) if isinstance(v, dict) else v for k, v in (params or {}).items()}
        for key in [k for k in data if k in LEGACY_MITIGATION_KEYS]:
            owner = LEGACY_MITIGATION_KEYS[key]
            value = data.pop(key)
            moved = value if key == owner else {key: value}
            where = f"mitigation.params.{owner}" + ("" if key == owner else f".{key}")
            warnings.warn(f"mitigation.{key} is deprecated and will be removed; use {where}",
                          FutureWarning, stacklevel=2)
            if value is None:  # an unset option (acceptance_rate: null) moves as unset
                continue
            if isinstance(moved, dict) and isinstance(params.setdefault(owner, {}), dict):
                params[owner] = {**moved, **params[owner]}
            else:
                params[owner] = moved
        data["params"] = params
        return data


class MetricsConfig(Section):
    """Confidence intervals and evaluation sizes."""

    bootstrap_samples: int = Field(1000, ge=0, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    perplexity_texts: int = Field(32, ge=0, le=100_000, description="Held-out real texts.")
    names: list[str] | None = Field(
        None,
        description="Loop metrics to compute, by registered name (`biasloop list metric`); "
        "unset computes every built-in one and those of this run's own plug-ins.",
    )


class RunConfig(Section):
    """Run-level behaviour."""

    progress: bool = Field(True, description="Show progress bars.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"




class ExperimentConfig(Section):
    """A whole experiment: one or more conditions sharing model, task and seed."""

    name: str = Field("experiment", description="Run name, used in the run directory name.")
    study: str = Field(
        "scpl",
        description="Registered study: `scpl` (self-consuming loop), `inheritance` (bias "
        "inheritance), `simulate` (the loop's mean-field simulator), or one a plug-in registers.",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="Plug-in modules to load first: module names (`my_package.plugins`) or "
        "`.py` files (relative to this YAML file's folder); they register tasks, "
        "evaluations, mitigations, feedback rules, … (`biasloop list` shows them).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Base seed of the run.")
    seeds: list[int] = Field(
        default_factory=list,
        description="Seeds to repeat every condition with; empty means just `seed`.",
    )
    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    training: TrainingConfig = TrainingConfig()
    task: TaskConfig = TaskConfig()
    loop: LoopConfig = LoopConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    mitigation: MitigationConfig = MitigationConfig()
    metrics: MetricsConfig = MetricsConfig()
    inheritance: InheritanceConfig = InheritanceConfig()
    simulate: SimulateConfig = SimulateConfig()
    sweep: SweepConfig = SweepConfig()
    run: RunConfig = RunConfig()
    conditions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named conditions, each a mapping of dotted overrides applied to this "
        "config (e.g. `{static: {feedback.rule: static}}`); empty means one condition "
        "called `main`.",
    )

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, value: list[int]) -> list[int]:
        return validate_seeds(value)

    @property
    def run_seeds(self) -> list[int]:
        """The seeds every condition runs with."""
        return list(self.seeds) or [self.seed]

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
            raise ValueError(
                "must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        return value

    @field_validator("conditions")
    @classmethod
    def _safe_condition_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        import re

        for key in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", key):
                raise ValueError(
                    f"condition name {key!r} must be 1-64 letters, digits, '_', '-' or '.'"
                )
        return value
