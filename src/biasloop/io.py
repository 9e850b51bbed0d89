"""The one place that writes files: atomic writes and safe reads.

Every write goes to a temporary file in the same folder and is then renamed over
the target (``os.replace``), so a killed process leaves either the old file or the
new one, never half of one. Folders (model adapters, caches) are written into a
temporary sibling folder that is renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from biasloop.errors import DataError, RunStoreError


def _atomic(path: Path, write: Any, mode: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise RunStoreError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise RunStoreError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(Path(path), lambda handle: handle.write(text), "w")


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic(Path(path), lambda handle: handle.write(data), "wb")


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line atomically."""
    text = "".join(json.dumps(dict(r), ensure_ascii=False, default=str) + "\n" for r in records)
    write_text(path, text)


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as Parquet atomically."""
    _atomic(Path(path), lambda handle: frame.to_parquet(handle, index=False), "wb")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunStoreError(f"{str(path)!r} is not valid JSON ({err})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file; a malformed line is a one-line DataError naming file and line."""
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object per line")
                records.append(record)
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} does not exist") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
    return records


@contextlib.contextmanager
def staging_dir(final_dir: Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary sibling folder that becomes ``final_dir`` only if the block succeeds.

    A crash inside the block leaves ``final_dir`` untouched. With ``replace=False`` an
    existing ``final_dir`` wins (e.g. another process finished the same cache first).
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        if final_dir.exists():
            if not replace:
                return
            # rename() cannot replace a non-empty folder: move the old one aside first.
            old = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final_dir, old)
            os.replace(tmp, final_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


