"""One fine-tune, the same in both studies: start from ``M_0`` or the current model, train, save.

The SCPL loop trains ``M_{t+1}`` on ``D_{t+1}`` (from ``M_0`` to retrain, from ``M_t``
to continue); the inheritance study trains ``M_0`` on original plus augmented data.
Both go through :func:`fine_tune`, so an Example record becomes the same training
example and a run records the same losses in either study. Preparing the records
(a mitigation's rewrite, its loss term) and deciding whether the unit is already
done stay with the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biasloop.config.schema import TrainingConfig
from biasloop.models.base import ExtraLoss, ModelBackend, TrainExample


def train_example(record: Mapping[str, Any]) -> TrainExample:
    """An Example record as a training example.

    The loss weight is ``meta.weight`` (1 when absent); a ``synthetic`` record is
    augmented (the loss-based mitigation aligns augmented with original examples).
    """
    return TrainExample(
        prompt=record["prompt"],
        response=record["response"],
        weight=float((record.get("meta") or {}).get("weight", 1.0)),
        is_augmented=record["source"] == "synthetic",
    )


def fine_tune(
    backend: ModelBackend,
    records: Sequence[Mapping[str, Any]],
    *,
    training: TrainingConfig,
    seed: int,
    save_to: Path,
    from_base: bool = True,
    extra_loss: ExtraLoss | None = None,
) -> dict[str, Any]:
    """Fine-tune ``backend`` on ``records`` and save its trainable state to ``save_to``.

    ``from_base`` resets the backend to ``M_0`` first; ``False`` continues from the
    model the backend holds (the caller loads it). With no records nothing is trained
    and the starting model is saved as is. Returns the summary a run records::

        {"examples": n, "step_losses": [...], "mean_loss": mean of step_losses (NaN if none),
         "tokens": tokens seen, "seconds": training time}
    """
    if from_base:
        backend.reset_to_base()
    examples = [train_example(r) for r in records]
    if examples:
        result = backend.train(examples, config=training, seed=seed, extra_loss=extra_loss)
        losses, tokens, seconds = result.step_losses, result.tokens_seen, result.seconds
    else:
        losses, tokens, seconds = [], 0, 0.0
    backend.save(save_to)
    return {
        "examples": len(examples),
        "step_losses": losses,
        "mean_loss": float(np.mean(losses)) if losses else math.nan,
        "tokens": tokens,
        "seconds": seconds,
    }
