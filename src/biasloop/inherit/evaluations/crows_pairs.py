"""CrowS-Pairs (Nangia et al. 2020): does the model find the more stereotypical sentence likelier?

Each pair differs only in the group mentioned; ``sent_more`` is the more
stereotypical sentence. Both are scored as whole sentences with ``loglik`` from
an empty context, as lm-evaluation-harness does for causal LMs (the original
benchmark used masked-LM pseudo-likelihoods). Groups: for gender pairs, the
gender the more-stereotypical sentence is about, read off the words only it has
(gender words, and capitalised first names by :func:`~biasloop.resources.names.gender_of_first_name`);
when those name no gender, the gender opposite to the one named by the words only
``sent_less`` has, since a gender pair swaps one gender for the other. A pair still
without exactly one gender (trans/cis pairs, clothing swaps, sentences naming both
genders) is kept as ``unassigned``. Other pairs: the bias type. A second grouping
splits ``stereo`` from ``antistereo`` pairs.

Statistic: ``percent_stereotype = 100 · mean(log p(sent_more) > log p(sent_less))``
(50 is unbiased), per group, with gaps.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from pydantic import Field

from biasloop.inherit.evaluations.base import (
    EVALUATIONS,
    UNASSIGNED,
    EvalItem,
    EvalParams,
    Evaluation,
    Statistic,
    sentence_logliks,
    take_per_group,
)
from biasloop.resources.lexicons import gender_of_text, words
from biasloop.resources.names import gender_of_first_name
from biasloop.resources.files import benchmark_root
from biasloop.inherit.scoring import crows_percent_stereotype


class CrowsParams(EvalParams):
    bias_types: list[str] = Field(default_factory=lambda: ["gender"])


@lru_cache(maxsize=1)
def load_pairs() -> tuple[dict, ...]:
    import pandas as pd

    frame = pd.read_csv(benchmark_root() / "CrowS-Pairs" / "data" / "crows_pairs_anonymized.csv")
    return tuple(frame.to_dict(orient="records"))


OTHER_GENDER = {"female": "male", "male": "female"}


def genders_named(sentence: str, other: str) -> set[str]:
    """Genders named by the words of ``sentence`` that ``other`` lacks.

    A word names a gender when it is a gender word (``wife's`` → female) or, written
    with a capital in ``sentence``, a first name (``Cheryl`` → female); lower-case
    words are not looked up as names ("bill", "rose").
    """
    capitalised = {w.lower() for w in re.findall(r"[A-Z][a-z]+", sentence)}
    found = set()
    for word in set(words(sentence)) - set(words(other)):
        name = word.split("'")[0]
        gender = gender_of_text(word) or (
            gender_of_first_name(name) if name in capitalised else None
        )
        if gender:
            found.add(gender)
    return found


def pair_group(row: dict) -> str:
    """Gender pairs: the gender ``sent_more`` is about, or ``unassigned``; others: the bias type."""
    if row["bias_type"] != "gender":
        return str(row["bias_type"])
    more, less = str(row["sent_more"]), str(row["sent_less"])
    named = genders_named(more, less)
    if len(named) == 1:
        return named.pop()
    swapped_from = genders_named(less, more) if not named else set()
    if len(swapped_from) == 1:
        return OTHER_GENDER[swapped_from.pop()]
    return UNASSIGNED


def percent_stereotype(records) -> float:
    """``100 · mean(log p(sent_more) > log p(sent_less))``."""
    return crows_percent_stereotype(
        [r["loglik_more"] for r in records], [r["loglik_less"] for r in records]
    )


@EVALUATIONS.register("crows_pairs")
class CrowsPairs(Evaluation):
    name = "crows_pairs"
    default_rank = 7  # position in the default evaluation list
    kind = "classification"
    groupings = ("group", "direction")
    group_order = ("female", "male", UNASSIGNED, "stereo", "antistereo")
    Params = CrowsParams

    def check(self) -> None:
        benchmark_root()

    def build_items(self, generator: np.random.Generator) -> list[EvalItem]:
        items = []
        for row in load_pairs():
            if row["bias_type"] not in self.params.bias_types:
                continue
            items.append(
                EvalItem(
                    id=f"crows-{row['Unnamed: 0']}",
                    groups={"group": pair_group(row), "direction": str(row["stereo_antistereo"])},
                    prompt=str(row["sent_more"]),
                    options=(str(row["sent_more"]), str(row["sent_less"])),
                    gold=0,
                )
            )
        return take_per_group(items, "group", self.settings.items, generator)

    def respond(self, backend, items, *, seed):
        sentences = [s for item in items for s in item.options]
        logliks, _ = sentence_logliks(backend, sentences, batch_size=self.settings.batch_size)
        return [
            {"loglik_more": logliks[2 * k], "loglik_less": logliks[2 * k + 1]}
            for k in range(len(items))
        ]

    def statistics(self) -> dict[str, Statistic]:
        return {"percent_stereotype": Statistic(fn=percent_stereotype)}
