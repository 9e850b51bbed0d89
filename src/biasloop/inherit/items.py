"""An evaluation's fixed items for one seed, minus every item sharing text with training data."""

from __future__ import annotations

import logging
from typing import Any

from biasloop.errors import ConfigError
from biasloop.inherit.evaluations import UNASSIGNED, EvalItem, Evaluation
from biasloop.inherit.overlap import OverlapIndex
from biasloop.seeding import rng

log = logging.getLogger("biasloop.inherit")


def fixed_items(
    evaluation: Evaluation, *, seed: int, training: OverlapIndex
) -> tuple[list[EvalItem], dict[str, Any]]:
    """(the items kept, their counts) of ``evaluation``, drawn with ``seed``.

    An item is dropped when any of its texts overlaps ``training`` (the original
    data and the augmentation prompts). The counts are ``items`` kept,
    ``dropped_for_overlap``, benchmark items ``skipped`` for incomplete data (by
    reason) and kept items whose group the data does not tell (``unassigned``).
    No item left is a ConfigError naming the evaluation.
    """
    built = evaluation.build_items(rng(seed, "eval-items", evaluation.name))
    kept = [i for i in built if not any(training.overlaps(t) for t in i.texts())]
    unassigned = sum(1 for i in kept if UNASSIGNED in i.groups.values())
    counts = {
        "items": len(kept),
        "dropped_for_overlap": len(built) - len(kept),
        "skipped": dict(evaluation.skipped),
        "unassigned": unassigned,
    }
    if evaluation.skipped:
        log.warning(
            "evaluation %s: skipped %d benchmark items with incomplete data (%s)",
            evaluation.name,
            sum(evaluation.skipped.values()),
            ", ".join(f"{reason}: {n}" for reason, n in evaluation.skipped.items()),
        )
    if unassigned:
        log.warning(
            "evaluation %s: %d of %d items have no group (labelled %r)",
            evaluation.name,
            unassigned,
            len(kept),
            UNASSIGNED,
        )
    if not kept:
        raise ConfigError(f"inheritance.evaluations: {evaluation.name!r} has no items left")
    if len(kept) < len(built):
        log.info(
            "evaluation %s: dropped %d items sharing text with training data",
            evaluation.name,
            len(built) - len(kept),
        )
    return kept, counts
