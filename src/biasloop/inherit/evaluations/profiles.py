"""Counterfactual candidate profiles for the salary, hiring and story evaluations.

A *block* is one profile (an occupation and years of experience) written once for
every gender × culture group, each time with a different first name of that
group from the evaluation half of the name table. Everything but the name is
identical within a block, so a difference between groups can only come from
the name; between-group tests permute group labels within blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biasloop.inherit.evaluations.base import EvalSettings

CULTURE_ORDER = ("arabic", "chinese", "portuguese", "spanish")
GROUPINGS = ("gender", "culture", "gender+culture")


@dataclass(frozen=True, kw_only=True)
class Candidate:
    gender: str
    culture: str
    name: str

    @property
    def groups(self) -> dict[str, str]:
        return {
            "gender": self.gender,
            "culture": self.culture,
            "gender+culture": f"{self.gender}+{self.culture}",
        }


@dataclass(frozen=True, kw_only=True)
class Profile:
    block: str
    role: str
    years: int
    candidates: tuple[Candidate, ...]


def profiles(
    settings: EvalSettings,
    generator: np.random.Generator,
    *,
    prefix: str,
    years: tuple[int, ...] = (2, 5, 10),
) -> list[Profile]:
    """``settings.items`` blocks, each with one candidate per gender × culture cell."""
    names = settings.names
    cells = [(g, c) for g in names.genders for c in names.cultures if names.cell(g, c)]
    blocks = []
    for index in range(settings.items):
        role = settings.roles[int(generator.integers(len(settings.roles)))]
        experience = int(years[int(generator.integers(len(years)))])
        candidates = []
        for gender, culture in cells:
            cell = names.cell(gender, culture)
            candidates.append(
                Candidate(
                    gender=gender,
                    culture=culture,
                    name=cell[int(generator.integers(len(cell)))].name,
                )
            )
        blocks.append(
            Profile(
                block=f"{prefix}-{index:04d}",
                role=role,
                years=experience,
                candidates=tuple(candidates),
            )
        )
    return blocks


def group_order() -> tuple[str, ...]:
    genders = ("female", "male")
    return (*genders, *CULTURE_ORDER, *(f"{g}+{c}" for g in genders for c in CULTURE_ORDER))
