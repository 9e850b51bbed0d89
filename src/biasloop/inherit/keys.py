"""What the outputs of a shareable unit depend on: the inputs behind its content key.

Conditions of one seed draw the same random numbers, so a unit whose inputs are
equal in two conditions has equal outputs and is done once
(:meth:`biasloop.store.RunStore.shared`, keyed by :func:`biasloop.store.content_key`
of these inputs). A condition's name is never an input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from biasloop.config.schema import ExperimentConfig
from biasloop.inherit.components import pool_size
from biasloop.inherit.units import Unit


def pool_inputs(
    config: ExperimentConfig, *, seed: int, bias_type: str, round_index: int, writer: Unit | None
) -> dict[str, Any]:
    """Everything an augmented pool's texts depend on: seed, type, round, writer, model, settings.

    ``writer`` is named, not described: only a round-1 pool (written by ``M_0``) is shared.
    """
    settings = config.inheritance
    return {
        "seed": seed,
        "bias_type": bias_type,
        "round": round_index,
        "writer": writer.parts() if writer else None,
        "model": (settings.augmentation.model or config.model).model_dump(mode="json"),
        "batch_size": config.generation.batch_size,
        "count": pool_size(config),
        **settings.model_dump(
            mode="json",
            include={
                "augmentation", "attribute", "target_groups", "intersect_with",
                "attributes", "names", "templates",
            },
        ),
    }


def training_inputs(
    config: ExperimentConfig,
    *,
    seed: int,
    unit: Unit,
    records: Sequence[dict[str, Any]],
    with_loss_term: bool,
) -> dict[str, Any]:
    """Everything a fine-tune depends on: data, model, training, seed, loss term.

    The loss term counts only when the data has augmented records (it is zero
    otherwise), so e.g. every condition's ``γ = 0`` model is the same model.
    """
    augmented = any(r["source"] == "synthetic" for r in records)
    return {
        "seed": seed,
        "unit": unit.parts(),
        "records": [[r["prompt"], r["response"], r["source"]] for r in records],
        "model": config.model.model_dump(mode="json"),
        "training": config.training.model_dump(mode="json"),
        "loss_term": (
            config.mitigation.model_dump(mode="json", include={"name", "loss"})
            if with_loss_term and augmented
            else None
        ),
    }
