"""Rebuild ``src/biasloop/data/inheritance/names.json`` from an installed ``names-dataset``.

A maintenance script, kept outside the package: ``names-dataset`` stores its tables
as pickles, which only this script reads, from the installed package itself.

    pip install --no-deps names-dataset==3.3.1
    python scripts/build_names_table.py "$(python -c 'import names_dataset, os; print(os.path.dirname(names_dataset.__file__))')"

The selection rules are described in :mod:`biasloop.resources.names`.
"""

from __future__ import annotations

import gzip
import json
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from biasloop.resources.files import data_dir
from biasloop.resources.names import GENDERS, NAMES_PER_CELL

#: Countries (ISO alpha-2) whose residents count towards a culture, and its main countries.
CULTURE_COUNTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # Gulf states are left out: their name lists are dominated by South Asian migrants.
    "arabic": (
        ("SA", "EG", "JO", "MA", "IQ", "DZ", "TN", "LB", "SY", "YE", "LY", "PS", "SD"),
        ("SA", "EG", "JO", "MA", "IQ", "DZ", "TN"),
    ),
    "chinese": (("CN", "TW", "HK", "MO", "SG", "MY"), ("CN",)),
    "portuguese": (("PT", "BR", "AO", "MZ"), ("PT", "BR")),
    "spanish": (
        (
            "ES",
            "MX",
            "AR",
            "CO",
            "CL",
            "PE",
            "VE",
            "EC",
            "GT",
            "CU",
            "BO",
            "DO",
            "HN",
            "PY",
            "SV",
            "NI",
            "CR",
            "PA",
            "UY",
            "PR",
        ),
        ("ES", "MX", "AR", "CO"),
    ),
}

#: Dropped by hand: nicknames, kinship words ("Oum" = mother of), short forms,
#: unaccented duplicates and English given names.
EXCLUDED = frozenset(
    {
        "Oum",
        "Abdou",
        "Moh",
        "Abo",
        "Abou",
        "Simo",
        "Fati",
        "Joao",
        "Lupita",
        "Mari",
        "Mafer",
        "Eason",
        "Anson",
        "Winson",
        "Queenie",
        "Rainbow",
        "Jolin",
        "Yoyo",
        "Hebe",
        "Queena",
        "Icey",
        "Amily",
        "Rainie",
        "Fion",
        "Jhon",
        "Leidy",
        "Mohamad",
        "Mouhamed",
        "Antônio",
    }
)


def candidates(
    first: Mapping[str, Any], last: Mapping[str, Any], culture: str, gender_code: str
) -> list[str]:
    latin = re.compile(r"^[A-Z][a-zà-ÿ]{2,}$")
    countries, main = CULTURE_COUNTRIES[culture]
    min_gender_share = 0.75 if culture == "chinese" else 0.9
    ranked: list[tuple[int, str]] = []
    for name, info in first.items():
        if not latin.match(name) or name in EXCLUDED:
            continue
        if (info["gender"] or {}).get(gender_code, 0) < min_gender_share:
            continue
        if sum(p for c, p in info["country"].items() if c in countries) < 0.5:
            continue
        ranks = [info["rank"][c] for c in main if c in info["rank"]]
        if not ranks:
            continue
        best = min(ranks)
        if culture == "chinese" and any(
            info["rank"].get(c, 10**9) <= 3000 for c in ("US", "GB", "ID", "IN", "PH")
        ):
            continue
        as_last = last.get(name)
        if as_last and any(c in as_last["rank"] and as_last["rank"][c] < best for c in main):
            continue
        ranked.append((best, name))
    return [name for _, name in sorted(ranked)]


def build_names_table(
    names_dataset_dir: str | Path, *, per_cell: int = NAMES_PER_CELL
) -> dict[str, Any]:
    """Rebuild ``names.json`` from an installed ``names-dataset`` (``pip install --no-deps``).

    ``names_dataset_dir`` is the package folder holding ``v3/first_names.pkl.gz``.
    """
    folder = Path(names_dataset_dir) / "v3"
    with gzip.open(folder / "first_names.pkl.gz", "rb") as handle:
        first = pickle.load(handle)
    with gzip.open(folder / "last_names.pkl.gz", "rb") as handle:
        last = pickle.load(handle)
    cultures: dict[str, dict[str, list[str]]] = {}
    for culture in CULTURE_COUNTRIES:
        cultures[culture] = {
            gender: candidates(first, last, culture, gender[0].upper())[:per_cell]
            for gender in GENDERS
        }
    return {
        "source": "names-dataset 3.3.1 (MIT), first_names.pkl.gz; rules in scripts/build_names_table.py",
        "cultures": cultures,
    }



if __name__ == "__main__":
    table = build_names_table(sys.argv[1])
    out = data_dir() / "names.json"
    out.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
