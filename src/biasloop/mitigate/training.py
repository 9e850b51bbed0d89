"""Training-time mitigations for augmented data: ``token``, ``mask`` and ``loss``.

They act on the augmented (model-written, ``source: synthetic``) records of a
training set and on the training objective, so they apply unchanged in both
studies: to ``D_a`` in the bias inheritance study and to the accepted synthetic
set ``S_t`` in the SCPL loop. Original (``real``) records are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from biasloop.config.section import Params

from biasloop.mitigate.base import MITIGATIONS, Mitigation, TrainingContext, is_augmented
from biasloop.models.base import ExtraLoss
from biasloop.resources.cues import LexiconSources, Masker, load_lexicons


class TokenParams(Params):
    """``token``: a bias-warning tag prefixed to every augmented (synthetic) example."""

    tag: str = Field(
        "[AUGMENTED: MAY CONTAIN BIAS]",
        min_length=1,
        max_length=200,
        description="Text prefixed to each augmented example.",
    )
    position: Literal["prompt", "response"] = Field(
        "prompt",
        description="`prompt`: the tag conditions the example (the model never has to write "
        "it); `response`: the tag starts the trained answer.",
    )


class MaskParams(Params):
    """``mask``: sensitive cues in augmented text replaced by a mask or a neutral word."""

    lexicons: list[str] = Field(
        default_factory=lambda: ["gender_terms", "names", "culture_terms"],
        min_length=1,
        description="Built-in lexicons (`gender_terms`, `names`, `culture_terms`) or paths to "
        "JSON ({term: neutral word} or [terms]) or text files (one term per line, optionally "
        "`term<TAB>neutral word`).",
    )
    replacement: Literal["mask", "neutral"] = Field(
        "mask", description="`mask`: every cue becomes `mask_token`; `neutral`: a neutral word."
    )
    mask_token: str = Field("[MASK]", min_length=1, max_length=50)
    fields: list[Literal["prompt", "response"]] = Field(
        default_factory=lambda: ["prompt", "response"],
        min_length=1,
        description="Which texts of an augmented example are masked.",
    )


class LossParams(Params):
    """``loss``: the SFT loss plus ``μ · ‖mean h_L(original) − mean h_L(augmented)‖²`` per batch."""

    weight: float = Field(
        0.01,
        ge=0.0,
        le=1e6,
        description="μ, the weight of the hidden-state alignment term. The squared gap scales "
        "with the hidden size: about 175 between 8 BOLD and 8 model-written texts on "
        "SmolLM2-135M (576 dims), so μ = 0.01 makes it comparable to the SFT loss.",
    )


def _with_note(record: dict[str, Any], name: str, **note: Any) -> dict[str, Any]:
    meta = dict(record.get("meta") or {})
    meta["mitigation"] = {"name": name, **note}
    return {**record, "meta": meta}


def tag_augmented(
    records: Sequence[dict[str, Any]], context: TrainingContext
) -> list[dict[str, Any]]:
    """Prefix ``mitigation.params.token.tag`` to the prompt (or response) of every augmented record."""
    settings = context.params
    result = []
    for record in records:
        if is_augmented(record):
            field = settings.position
            record = _with_note(
                {**record, field: f"{settings.tag} {record[field]}"}, "token", tag=settings.tag
            )
        result.append(record)
    return result


def mask_augmented(
    records: Sequence[dict[str, Any]], context: TrainingContext
) -> list[dict[str, Any]]:
    """Replace the lexicons' cues in every augmented record's masked fields.

    ``meta.mitigation.masked`` counts the cues replaced in each record.
    """
    settings = context.params
    masker = Masker(
        load_lexicons(settings.lexicons, sources=LexiconSources(names_file=context.names_file)),
        replacement=settings.replacement,
        mask_token=settings.mask_token,
    )
    result = []
    for record in records:
        if is_augmented(record):
            changed, count = dict(record), 0
            for field in settings.fields:
                changed[field], replaced = masker.mask(record[field])
                count += replaced
            record = _with_note(changed, "mask", masked=count)
        result.append(record)
    return result


def check_mask(params: MaskParams) -> None:
    """Every lexicon is a built-in one or a readable lexicon file (checked before any work)."""
    from biasloop.resources.cues import CUE_LEXICONS

    load_lexicons([s for s in params.lexicons if s not in CUE_LEXICONS], sources=LexiconSources())


def mean_pooled_last_hidden(outputs: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """``h_L(x)``: the last layer's hidden states averaged over the non-padding tokens."""
    hidden = outputs.hidden_states[-1]
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def alignment_loss(weight: float) -> ExtraLoss:
    """``μ · ‖mean_{x∈O} h_L(x) − mean_{x∈A} h_L(x)‖²`` over a batch's original (O) and augmented (A) examples.

    ``h_L`` is :func:`mean_pooled_last_hidden`; the term is 0 for a batch that
    lacks either kind, so it only pulls the two distributions together where
    both are present.
    """

    def term(outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = mean_pooled_last_hidden(outputs, batch["attention_mask"]).float()
        augmented = batch["is_augmented"].to(pooled.device).bool()
        if augmented.all() or not augmented.any():
            return pooled.sum() * 0.0  # keeps the graph; contributes nothing
        gap = pooled[~augmented].mean(0) - pooled[augmented].mean(0)
        return weight * gap.pow(2).sum()

    return term


def _alignment_term(params: LossParams) -> ExtraLoss:
    return alignment_loss(params.weight)


MITIGATIONS.register("token")(
    Mitigation(rewrite=tag_augmented, Params=TokenParams,
               summary="Prefix each augmented example with a bias-warning tag.")
)
MITIGATIONS.register("mask")(
    Mitigation(
        rewrite=mask_augmented,
        Params=MaskParams,
        check=check_mask,
        summary="Replace gendered words, names and culture terms in augmented text.",
    )
)
MITIGATIONS.register("loss")(
    Mitigation(
        loss_term=_alignment_term,
        Params=LossParams,
        summary="SFT loss + μ·‖mean h_L(original) − mean h_L(augmented)‖² per batch.",
    )
)
