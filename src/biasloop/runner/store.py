"""The run store: the one place that writes run files.

Layout of a run directory::

    RUN_DIR/
      manifest.json          resolved config, hash, seed, versions, git revision, times, status
      run.log                the run's log
      metrics.parquet        tidy table: one row per measurement
      conditions/<condition>/seed-<seed>/gen-<t>/...   one folder per generation

Every write goes to a temporary file in the same folder and is then renamed
over the target (``os.replace``), so a killed process leaves either the old
file or the new one, never half of one. A unit of work is done exactly when its
output file exists; resuming a run skips every unit whose output is present.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from biasloop.errors import DataError, RunStoreError

METRIC_COLUMNS = ["generation", "condition", "seed", "group", "metric", "value", "ci_low", "ci_high"]
MANIFEST = "manifest.json"


# ---------------------------------------------------------------- atomic writes
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


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written temporary folder into place (old folder removed first)."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


@contextlib.contextmanager
def staging_dir(final_dir: Path) -> Iterator[Path]:
    """A temporary sibling folder that becomes ``final_dir`` only if the block succeeds."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    try:
        yield tmp
        replace_dir(tmp, final_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- provenance
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("biasloop", "torch", "transformers", "peft", "numpy", "pandas", "pydantic"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def git_revision() -> str | None:
    """The git commit of the biasloop source tree, or None outside a git checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the run directory
class RunStore:
    """One run directory: its manifest, its per-unit outputs and its metric table."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def create(self, *, config: dict[str, Any], config_hash: str, seed: int) -> dict[str, Any]:
        """Start a new run: refuse a non-empty folder that is not this same run."""
        if self.exists():
            raise RunStoreError(
                f"{str(self.root)!r} already holds a run; use `biasloop resume {self.root}`"
            )
        if self.root.exists() and any(self.root.iterdir()):
            raise RunStoreError(f"{str(self.root)!r} is not empty; choose a new --out folder")
        manifest = {
            "config": config,
            "config_hash": config_hash,
            "seed": seed,
            "versions": package_versions(),
            "git_revision": git_revision(),
            "host": platform.node(),
            "started_at": now(),
            "ended_at": None,
            "status": "running",
            "resumes": 0,
        }
        write_json(self.manifest_path, manifest)
        return manifest

    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise RunStoreError(f"{str(self.root)!r} is not a run directory (no {MANIFEST})")
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict) or "config" not in manifest:
            raise RunStoreError(f"{str(self.manifest_path)!r} has no 'config' entry")
        return manifest

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.manifest()
        manifest.update(fields)
        write_json(self.manifest_path, manifest)
        return manifest

    def path(self, *parts: str) -> Path:
        """A path inside the run; parts may not climb out of the run directory."""
        target = self.root.joinpath(*parts).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise RunStoreError(f"path {'/'.join(parts)!r} escapes the run directory")
        return target

    def collect_metrics(self) -> pd.DataFrame:
        """Merge every ``metrics.parquet`` below ``conditions/`` into the run-level table."""
        frames = [
            pd.read_parquet(path)
            for path in sorted((self.root / "conditions").glob("**/metrics.parquet"))
        ]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=METRIC_COLUMNS)
        # Studies may add descriptive columns (e.g. bias_ratio); they follow the fixed ones.
        extra = [c for c in frame.columns if c not in METRIC_COLUMNS]
        frame = frame[METRIC_COLUMNS + extra].sort_values(
            ["condition", "seed", "generation", "metric", "group"], kind="stable"
        ).reset_index(drop=True)
        write_table(self.root / "metrics.parquet", frame)
        return frame
