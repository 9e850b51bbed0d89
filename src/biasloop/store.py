"""The run store: the layout of a run directory, its manifest and its metric table.

Layout of a run directory::

    RUN_DIR/
      manifest.json          resolved config, hash, seed, versions, git revision, times, status
      run.log                the run's log
      metrics.parquet        tidy table: one row per measurement
      conditions/<condition>/seed-<seed>/gen-<t>/...   one folder per generation

Every write goes to a temporary file in the same folder and is then renamed
over the target (``os.replace``), so a killed process leaves either the old
file or the new one, never half of one. A unit of work is done exactly when its
output file exists; resuming a run skips every unit whose output is present
(:func:`cached`). Work that several conditions of a run would repeat on identical
inputs is done once and copied (:meth:`RunStore.shared`, keyed by
:func:`content_key`).
Every folder of a run lists the SHA-256 of its files in ``.checksums.json``
(see :mod:`biasloop.io`); :meth:`RunStore.verify` checks them before a resume.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pandas as pd
from filelock import FileLock, Timeout

from biasloop.errors import DataError, RunStoreError
from biasloop.io import (  # noqa: F401  (re-exported: the run store's writers)
    CHECKSUMS,
    read_json,
    read_jsonl,
    read_table,
    staging_dir,
    track_checksums,
    verify_checksums,
    write_bytes,
    write_json,
    write_jsonl,
    write_table,
    write_text,
)

METRIC_COLUMNS = ["generation", "condition", "seed", "group", "metric", "value", "ci_low", "ci_high"]
#: Optional columns that describe a measurement, not an arm: ``n``, the number of
#: items (or responses) an estimate was computed on.
MEASUREMENT_COLUMNS = ["n"]
MANIFEST = "manifest.json"

log = logging.getLogger("biasloop.store")

#: The file a process locks while it works on a run folder (see :meth:`RunStore.locked`).
LOCK_FILE = ".lock"


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


# ---------------------------------------------------------------- resumable units of work
T = TypeVar("T")

#: How a unit's output is read back and written, by file suffix.
_FORMATS: dict[str, tuple[Callable[[Path], Any], Callable[[Path, Any], Any]]] = {
    ".jsonl": (read_jsonl, write_jsonl),
    ".json": (read_json, write_json),
    ".parquet": (read_table, write_table),
}


def is_complete(output: Path) -> bool:
    """A unit's file exists; a unit's folder exists and holds every file its
    ``.checksums.json`` lists (or, without a listing, at least one file)."""
    output = Path(output)
    if not output.is_dir():
        return output.is_file()
    listing = output / CHECKSUMS
    if listing.is_file():
        try:
            names = list(read_json(listing))
        except RunStoreError:
            return False
        return all((output / name).is_file() for name in names)
    return any(p.is_file() for p in output.rglob("*"))


def _incomplete(path: Path, requires: Sequence[Path]) -> bool:
    """``path`` (a done unit's summary) has a required output missing: redo the unit."""
    missing = [str(r) for r in requires if not is_complete(r)]
    if missing:
        log.warning("%s is missing or incomplete; redoing the unit that wrote it", missing[0])
        path.unlink(missing_ok=True)
    return bool(missing)


def cached(path: Path, compute: Callable[[], T], *, requires: Sequence[Path] = ()) -> T:
    """The output of one unit of work: read back if a run already wrote it, else computed.

    This is how a killed run resumes: a unit whose output file exists is not redone,
    and a unit's output is written atomically (and last), so it exists only once the
    unit is complete. The suffix picks the format: ``.jsonl`` (a list of records),
    ``.json`` (one object) or ``.parquet`` (a table). ``requires`` are the other files
    or folders the unit writes before ``path``; if one is missing or incomplete
    (:func:`is_complete`), the unit is redone.

        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "answer.json"
        >>> cached(path, lambda: {"x": 1}), cached(path, lambda: {"x": 2})
        ({'x': 1}, {'x': 1})
    """
    try:
        read, write = _FORMATS[path.suffix]
    except KeyError:
        raise ValueError(f"cached: {path.name!r} has no known format; valid: {', '.join(_FORMATS)}") from None
    if path.exists() and not _incomplete(path, requires):
        try:
            return read(path)
        except (RunStoreError, DataError) as err:
            # A damaged output (a run without checksums, or a listed file deleted with
            # its checksum) is redone: every unit is seeded, so it comes out the same.
            log.warning("%s; recomputing it", err)
            path.unlink(missing_ok=True)
    value = compute()
    write(path, value)
    return value


def content_key(inputs: Any) -> str:
    """A short name for the inputs of a unit of work: equal inputs, equal key.

    The first 16 hex digits of the SHA-256 of ``inputs`` as JSON with sorted keys;
    ``inputs`` holds everything the unit's outputs depend on (data, model, settings,
    seed), and nothing that does not (such as a condition's name).

        >>> content_key({"seed": 0, "data": [1, 2]}) == content_key({"data": [1, 2], "seed": 0})
        True
        >>> len(content_key({"seed": 0})), content_key({"seed": 0}) == content_key({"seed": 1})
        (16, False)
    """
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the run directory
def _left_by_a_killed_start(path: Path) -> bool:
    return path.is_file() and (path.name == CHECKSUMS
                               or (path.name.startswith(".") and path.name.endswith(".tmp")))


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
        # A start killed before its manifest leaves at most the checksum listing and
        # temporary files: that folder is still empty for a new run.
        if self.root.is_dir() and not all(_left_by_a_killed_start(p) for p in self.root.iterdir()):
            raise RunStoreError(f"{str(self.root)!r} is not empty; choose a new --out folder")
        if self.root.exists() and not self.root.is_dir():
            raise RunStoreError(f"{str(self.root)!r} is a file, not a folder; choose a new --out folder")
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
        track_checksums(self.root)
        write_json(self.manifest_path, manifest)
        return manifest

    def verify(self) -> int:
        """Check every recorded SHA-256 of the run; a changed file is a RunStoreError naming it."""
        return verify_checksums(self.root)

    @contextlib.contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """Hold the run folder for ``command`` alone: a second process is refused in one line.

        The lock is an OS file lock on ``LOCK_FILE`` (``filelock``): it is released when
        the process ends, however it ends, so a crashed run never leaves a stale lock.
        """
        lock = FileLock(self.root / LOCK_FILE)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunStoreError(
                f"{str(self.root)!r} is in use by another biasloop process (run, resume, "
                f"analyze or report); `{command}` waits for nothing: retry when it has finished"
            ) from None
        except OSError as err:
            raise RunStoreError(f"cannot lock {str(self.root)!r}: {err.strerror or err}") from None
        try:
            yield
        finally:
            lock.release()

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

    def shared(
        self,
        path: Path,
        compute: Callable[[], dict[str, Any]],
        *,
        inputs: Callable[[], Any],
        outputs: Sequence[str] = (),
        requires: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The summary of a unit of work that another condition of the run may have done already.

        ``path`` is the unit's summary, a ``.json`` file below ``conditions/<condition>/``
        written last (so, as with :func:`cached`, the unit is done exactly when it exists);
        ``outputs`` are glob patterns, relative to the summary's folder, of the other files
        and folders the unit writes. ``inputs()`` returns everything those outputs depend
        on; its :func:`content_key` is the summary's ``"key"``. In order:

        1. resume: ``path`` exists, and is read back;
        2. reuse: the same path in another condition (the first by name) holds a summary
           with the same key: its ``outputs`` are copied (a folder whole and atomically),
           then its summary is written with ``"copied_from"``: that condition;
        3. compute: ``compute()`` writes the outputs and returns the summary, which is
           written with ``"key"`` added.

        ``inputs`` is only called when the unit is not done, so resuming costs nothing.
        ``requires`` (relative to the summary's folder) are outputs that must be whole for
        the unit to count as done, as in :func:`cached`.

            >>> import tempfile
            >>> store = RunStore(tempfile.mkdtemp())
            >>> plain = store.path("conditions", "plain", "seed-0", "model", "train.json")
            >>> masked = store.path("conditions", "masked", "seed-0", "model", "train.json")
            >>> store.shared(plain, lambda: {"loss": 0.5}, inputs=lambda: {"data": [1, 2]})
            {'loss': 0.5, 'key': '...'}
            >>> store.shared(masked, lambda: {"loss": 9.9}, inputs=lambda: {"data": [1, 2]})
            {'loss': 0.5, 'key': '...', 'copied_from': 'plain'}
        """
        path = Path(path)
        if path.exists() and not _incomplete(path, [path.parent / r for r in requires]):
            return read_json(path)
        condition, below = self._condition_of(path)
        key = content_key(inputs())
        for sibling in sorted((self.root / "conditions").glob("*")):
            source = sibling.joinpath(*below)
            if sibling.name == condition or not source.is_file():
                continue
            summary = read_json(source)
            if summary.get("key") != key:
                continue
            for pattern in outputs:
                for found in sorted(source.parent.glob(pattern)):
                    target = path.parent / found.relative_to(source.parent)
                    if found.is_dir():
                        with staging_dir(target) as staged:
                            shutil.copytree(found, staged, dirs_exist_ok=True)
                    else:
                        write_bytes(target, found.read_bytes())
            copied = {**summary, "copied_from": sibling.name}
            write_json(path, copied)
            log.info("%s: same inputs (key %s) as condition %s; reused its outputs",
                     "/".join(below[:-1]), key, sibling.name)
            return copied
        summary = {**compute(), "key": key}
        write_json(path, summary)
        return summary

    def _condition_of(self, path: Path) -> tuple[str, tuple[str, ...]]:
        """(condition, the path's parts below the condition folder) of a path in ``conditions/``."""
        try:
            parts = path.resolve().relative_to((self.root / "conditions").resolve()).parts
        except ValueError:
            parts = ()
        if len(parts) < 2:
            raise RunStoreError(
                f"shared: {str(path)!r} is not a file below {str(self.root / 'conditions')!r}/<condition>/"
            )
        return parts[0], parts[1:]

    def collect_metrics(self) -> pd.DataFrame:
        """Merge every ``metrics.parquet`` below ``conditions/`` into the run-level table."""
        frames = [
            read_table(path)
            for path in sorted((self.root / "conditions").glob("**/metrics.parquet"))
        ]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=METRIC_COLUMNS)
        # Studies may add descriptive columns (e.g. bias_ratio); they follow the fixed ones.
        measured = [c for c in MEASUREMENT_COLUMNS if c in frame.columns]
        extra = [c for c in frame.columns if c not in (*METRIC_COLUMNS, *measured)]
        frame = frame[METRIC_COLUMNS + measured + extra].sort_values(
            ["condition", "seed", "generation", "metric", "group"], kind="stable"
        ).reset_index(drop=True)
        write_table(self.root / "metrics.parquet", frame)
        return frame
