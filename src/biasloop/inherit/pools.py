"""An augmented pool: its chunks written by one model, checked against the evaluation items.

A pool's folder holds the chunks of :func:`biasloop.inherit.augment.write_augmented`
and ``pool.json``, its summary (written last, by the run store). The pool is the
first ``used`` valid records of the chunks, on a fresh run and a resumed one alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from biasloop.config.schema import ExperimentConfig
from biasloop.inherit.augment import write_augmented
from biasloop.inherit.components import composer_for
from biasloop.inherit.evaluations import EvalItem
from biasloop.inherit.overlap import OverlapIndex
from biasloop.inherit.units import Unit
from biasloop.models.base import ModelBackend
from biasloop.resources.names import NameTable
from biasloop.seeding import derive_seed
from biasloop.store import read_jsonl
from biasloop.tracking import Track

log = logging.getLogger("biasloop.inherit")


def write_pool(
    *,
    model: Callable[[], ModelBackend],
    bias_type: str,
    names: NameTable,
    count: int,
    config: ExperimentConfig,
    seed: int,
    folder: Path,
    round_index: int,
    writer: Unit | None,
    items: Mapping[str, Sequence[EvalItem]],
    track: Track,
) -> dict[str, Any]:
    """Write up to ``count`` augmented texts of ``bias_type`` by ``model()`` (``writer``, or ``M_0``).

    Prompts name people from ``names`` (the augmentation half of the name table).

    Returns the pool's summary: ``bias_type``, ``round``, ``wanted``, ``used``,
    ``eval_items_overlapping`` (evaluation items sharing text with the pool; a
    warning when any do) and ``written_by``.
    """
    written_by = writer.label() if writer else "base"
    pool = write_augmented(
        model=model,
        composer=composer_for(config, bias_type, names),
        count=count,
        config=config.inheritance.augmentation,
        batch_size=config.generation.batch_size,
        seed=derive_seed(seed, round_index, *(writer.parts() if writer else ())),
        folder=folder,
        round_index=round_index,
        written_by=written_by,
        track=track,
    )
    index = OverlapIndex(r["response"] for r in pool)
    overlaps = sum(
        1
        for rows in items.values()
        for item in rows
        if any(index.overlaps(t) for t in item.texts())
    )
    if overlaps:
        log.warning(
            "augmented texts of %s round %d share text with %d evaluation items",
            bias_type,
            round_index,
            overlaps,
        )
    return {
        "bias_type": bias_type,
        "round": round_index,
        "wanted": count,
        "used": len(pool),
        "eval_items_overlapping": overlaps,
        "written_by": written_by,
    }


def read_pool(folder: Path, used: int) -> list[dict[str, Any]]:
    """The first ``used`` valid augmented records of the chunks in ``folder``."""
    valid = [
        r
        for path in sorted(folder.glob("chunk-*.jsonl"))
        for r in read_jsonl(path)
        if r["meta"]["valid"]
    ]
    return valid[:used]
