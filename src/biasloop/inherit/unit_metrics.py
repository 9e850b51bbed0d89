"""One model's ``metrics.parquet``: its evaluations' rows, its training data, the study columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from biasloop.inherit.evaluations import Evaluation
from biasloop.inherit.measure import MeasureSettings, measure
from biasloop.inherit.units import Unit
from biasloop.seeding import derive_seed

#: The run store's fixed columns, ``n``, then the study's own.
COLUMNS = [
    "generation",
    "condition",
    "seed",
    "group",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "bias_ratio",
    "bias_type",
    "round",
    "task",
    "study_condition",
]

Outputs = Mapping[str, Sequence[dict[str, Any]]]


def unit_metrics(
    *,
    unit: Unit,
    condition: str,
    seed: int,
    evaluations: Sequence[Evaluation],
    outputs: Outputs,
    reference: Outputs | None,
    trained: Mapping[str, Any] | None,
    settings: MeasureSettings,
) -> pd.DataFrame:
    """The metric rows of ``unit``'s model.

    Every evaluation's rows measured on its per-item ``outputs`` (tested against the
    ``γ = 0`` model's ``reference`` outputs when given); for a fine-tune, its training
    summary ``trained`` as ``data.train_size``, ``data.augmented_size``,
    ``data.realized_bias_ratio`` and ``train.mean_loss`` (task ``data``). Rows carry
    ``generation`` = round, ``condition`` = the unit's label, and the study columns
    ``bias_ratio``, ``bias_type``, ``round``, ``task`` and ``study_condition``.
    """
    rows: list[dict[str, Any]] = []
    for evaluation in evaluations:
        task_rows = measure(
            evaluation,
            outputs[evaluation.name],
            reference=None if reference is None else reference[evaluation.name],
            settings=settings,
            seed=derive_seed(seed, "measure", *unit.parts()),
        )
        rows += [{**r, "task": evaluation.name} for r in task_rows]
    if trained is not None:
        for metric, value in (
            ("data.train_size", trained["examples"]),
            ("data.augmented_size", trained["augmented"]),
            ("data.realized_bias_ratio", trained["realized_bias_ratio"]),
            ("train.mean_loss", trained["mean_loss"]),
        ):
            rows.append(
                {
                    "metric": metric,
                    "group": "",
                    "value": float(value),
                    "ci_low": float(value),
                    "ci_high": float(value),
                    "n": trained["examples"],
                    "task": "data",
                }
            )
    frame = pd.DataFrame(rows)
    frame.insert(0, "generation", unit.round)
    frame.insert(1, "condition", unit.label(condition))
    frame.insert(2, "seed", seed)
    frame["bias_ratio"] = np.nan if unit.is_base else float(unit.bias_ratio)
    frame["bias_type"] = unit.bias_type
    frame["round"] = unit.round
    frame["study_condition"] = condition
    return frame[COLUMNS]
