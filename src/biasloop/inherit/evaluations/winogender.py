"""Winogender (Rudinger et al. 2018) with US labour statistics.

Each sentence with a male, female and neutral pronoun (one block). A sentence is
``pro`` when the answer being the occupation agrees with the pronoun matching the
occupation's majority gender in US labour statistics (``bls_pct_female`` of
``occupations-stats.tsv``, BLS 2015), else ``anti``; neutral pronouns are in
neither. Statistics as in :mod:`biasloop.inherit.evaluations.coreference`.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np
from pydantic import Field

from biasloop.inherit.evaluations.base import EVALUATIONS, EvalItem, EvalParams
from biasloop.inherit.evaluations.coreference import (
    PRONOUN_GENDER,
    CoreferenceEvaluation,
    coreference_prompt,
)
from biasloop.resources.files import benchmark_root


class WinogenderParams(EvalParams):
    genders: list[str] = Field(default_factory=lambda: ["female", "male", "neutral"])


@lru_cache(maxsize=1)
def winogender_sentences() -> tuple[tuple[str, str], ...]:
    lines = (
        (benchmark_root() / "Winogender" / "data" / "all_sentences.tsv")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    return tuple(tuple(line.split("\t")[:2]) for line in lines[1:] if "\t" in line)


@lru_cache(maxsize=1)
def occupation_female_share() -> dict[str, float]:
    """Percent of workers who are women per Winogender occupation (BLS 2015)."""
    lines = (
        (benchmark_root() / "Winogender" / "data" / "occupations-stats.tsv")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    header = lines[0].split("\t")
    column = header.index("bls_pct_female")
    return {
        parts[0]: float(parts[column]) for parts in (line.split("\t") for line in lines[1:] if line)
    }


def winogender_stance(gender: str, answer_is_occupation: bool, female_share: float) -> str | None:
    """``pro`` when "answer is the occupation" agrees with "pronoun is its majority gender"."""
    if gender == "neutral":
        return None
    majority = "female" if female_share >= 50 else "male"
    return "pro" if answer_is_occupation == (gender == majority) else "anti"


@EVALUATIONS.register("winogender")
class Winogender(CoreferenceEvaluation):
    """Winogender sentences with a named participant; ``items`` is the number of sentence blocks."""

    name = "winogender"
    default_rank = 10  # position in the default evaluation list
    Params = WinogenderParams

    def build_items(self, generator: np.random.Generator) -> list[EvalItem]:
        shares = occupation_female_share()
        blocks: dict[str, list[EvalItem]] = {}
        skipped: Counter[str] = Counter()
        for sentid, sentence in winogender_sentences():
            occupation, participant, answer, gender = sentid.split(".")[:4]
            if participant == "someone" or gender not in self.params.genders:
                continue
            pronoun = next(
                (w for w in re.findall(r"[a-z]+", sentence.lower()) if w in PRONOUN_GENDER), None
            )
            if pronoun is None:
                skipped["no_pronoun"] += 1
                continue
            if occupation not in shares:
                skipped["no_occupation_statistics"] += 1
                continue
            options = (f"The {occupation}", f"The {participant}")
            groups = {"gender": gender}
            stance = winogender_stance(gender, answer == "0", shares[occupation])
            if stance:
                groups["stereotype"] = stance
            block = f"winogender-{occupation}-{participant}-{answer}"
            blocks.setdefault(block, []).append(
                EvalItem(
                    id=f"{block}-{gender}",
                    block=block,
                    groups=groups,
                    prompt=coreference_prompt(sentence, pronoun),
                    options=options,
                    gold=int(answer),
                    meta={"bls_pct_female": shares[occupation]},
                )
            )
        self.skipped = dict(skipped)
        names = sorted(blocks)
        chosen = sorted(generator.permutation(len(names))[: self.settings.items])
        return [item for k in chosen for item in blocks[names[int(k)]]]
