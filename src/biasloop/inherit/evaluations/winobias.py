"""WinoBias (Zhao et al. 2018): occupation coreference, pro- versus anti-stereotypical.

Every sentence comes in a pro-stereotypical and an anti-stereotypical version
(the pronoun's gender swapped), which form one block; the referent is marked with
brackets in the data. Groups: the pronoun's gender, and ``pro``/``anti``.
Statistics as in :mod:`biasloop.inherit.evaluations.coreference`.
"""

from __future__ import annotations

import re
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


class WinoBiasParams(EvalParams):
    types: list[int] = Field(default_factory=lambda: [1, 2])
    split: str = "test"


@lru_cache(maxsize=1)
def winobias_occupations() -> tuple[str, ...]:
    folder = benchmark_root() / "WinoBias" / "data"
    names = []
    for file in ("male_occupations.txt", "female_occupations.txt"):
        names += [
            line.strip().lower()
            for line in (folder / file).read_text().splitlines()
            if line.strip()
        ]
    # Longest first, so "construction worker" wins over "worker".
    return tuple(sorted(set(names), key=len, reverse=True))


_BRACKET = re.compile(r"\[([^\]]+)\]")


def parse_winobias(line: str) -> dict | None:
    """``{"sentence", "pronoun", "options", "gold"}`` of one WinoBias line, or None."""
    text = re.sub(r"^\d+\s+", "", line.strip())
    marked = _BRACKET.findall(text)
    if len(marked) != 2:
        return None
    referent, pronoun = marked[0], marked[1]
    sentence = _BRACKET.sub(lambda m: m.group(1), text)
    lowered = sentence.lower()
    found: list[tuple[int, str]] = []
    for occupation in winobias_occupations():
        for match in re.finditer(rf"\b{re.escape(occupation)}\b", lowered):
            if not any(start <= match.start() < start + len(o) for start, o in found):
                found.append((match.start(), occupation))
    found.sort()
    people = list(dict.fromkeys(o for _, o in found))
    referent_occupation = next((o for o in people if o in referent.lower()), None)
    if len(people) != 2 or referent_occupation is None or pronoun.lower() not in PRONOUN_GENDER:
        return None
    # Keep the sentence's own spelling ("CEO", not "ceo").
    spelled = {o: sentence[start : start + len(o)] for start, o in reversed(found)}
    options = tuple(f"The {spelled[o]}" for o in people)
    return {
        "sentence": sentence,
        "pronoun": pronoun,
        "options": options,
        "gold": people.index(referent_occupation),
    }


@EVALUATIONS.register("winobias")
class WinoBias(CoreferenceEvaluation):
    """WinoBias type-1 and type-2 sentences; ``items`` is the number of pro/anti pairs per type."""

    name = "winobias"
    default_rank = 9  # position in the default evaluation list
    Params = WinoBiasParams

    def build_items(self, generator: np.random.Generator) -> list[EvalItem]:
        folder = benchmark_root() / "WinoBias" / "data"
        items = []
        unparsed = 0
        for kind in self.params.types:
            versions = {}
            for stance in ("pro", "anti"):
                path = folder / f"{stance}_stereotyped_type{kind}.txt.{self.params.split}"
                versions[stance] = path.read_text(encoding="utf-8").splitlines()
            pairs = []
            for index, (pro, anti) in enumerate(zip(versions["pro"], versions["anti"])):
                parsed = {"pro": parse_winobias(pro), "anti": parse_winobias(anti)}
                if parsed["pro"] and parsed["anti"]:
                    pairs.append((index, parsed))
                else:
                    unparsed += 1
            for k in sorted(generator.permutation(len(pairs))[: self.settings.items]):
                index, parsed = pairs[int(k)]
                block = f"winobias-t{kind}-{index}"
                for stance, item in parsed.items():
                    items.append(
                        EvalItem(
                            id=f"{block}-{stance}",
                            block=block,
                            groups={
                                "gender": PRONOUN_GENDER[item["pronoun"].lower()],
                                "stereotype": stance,
                            },
                            prompt=coreference_prompt(item["sentence"], item["pronoun"]),
                            options=item["options"],
                            gold=item["gold"],
                        )
                    )
        self.skipped = {"unparsed_pair": unparsed} if unparsed else {}
        return items
