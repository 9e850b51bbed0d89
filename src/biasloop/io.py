"""The one place that writes files: atomic writes, checksums and safe reads.

Every write goes to a temporary file in the same folder and is then renamed over
the target (``os.replace``), so a killed process leaves either the old file or the
new one, never half of one. Folders (model adapters, caches) are written into a
temporary sibling folder that is renamed into place.

Checksums. A folder tree opts in by holding a ``.checksums.json`` at its top (the
run store creates one in every run directory). Inside such a tree every file written
here has its SHA-256 recorded in the ``.checksums.json`` of its own folder, and
:func:`verify_checksums` finds any file changed or truncated since. An overwrite
first records the new digest beside the old one, then renames, then keeps only the
new one, so a kill at any instant leaves a listing that matches the file on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
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

#: The per-folder listing of SHA-256 digests: ``{file name: digest or [digests]}``.
CHECKSUMS = ".checksums.json"


def _cannot_write(path: Path, err: BaseException) -> RunStoreError:
    reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
    return RunStoreError(f"cannot write {str(path)!r}: {reason}")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


def _atomic(path: Path, write: Any, mode: str) -> None:
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tracked = path.name != CHECKSUMS and _tracked(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp makes files private (0600); run files get the usual mode under the umask,
        # so collaborators on a shared cluster can read a run.
        os.chmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        digest = sha256_file(Path(tmp)) if tracked else None
        if digest is not None and path.exists():
            _record_digest(path, digest, keep_old=True)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
        if digest is not None:
            _record_digest(path, digest)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(err, OSError) or (isinstance(err, ValueError) and tmp is None):
            raise _cannot_write(path, err) from None  # ValueError here: a NUL byte in the path
        raise


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` survive a power loss (where the OS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


# ---------------------------------------------------------------- checksums
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tracked(folder: Path) -> bool:
    """True when ``folder`` or a folder above it holds a checksum listing."""
    return any((parent / CHECKSUMS).is_file() for parent in (folder, *folder.parents))


def _listing(folder: Path) -> dict[str, Any]:
    path = folder / CHECKSUMS
    if not path.is_file():
        return {}
    listing = read_json(path)
    if not isinstance(listing, dict):
        raise RunStoreError(f"{str(path)!r} must map file names to SHA-256 digests")
    return listing


def _record_digest(path: Path, digest: str, *, keep_old: bool = False) -> None:
    listing = _listing(path.parent)
    if keep_old:
        old = listing.get(path.name, [])
        digest_or_list: Any = [*([old] if isinstance(old, str) else old), digest]
    else:
        digest_or_list = digest
    listing[path.name] = digest_or_list
    write_json(path.parent / CHECKSUMS, listing)


def track_checksums(folder: Path) -> None:
    """Make ``folder`` and everything below it record the SHA-256 of each file written."""
    folder = Path(folder)
    if not (folder / CHECKSUMS).is_file():
        write_json(folder / CHECKSUMS, {})


def _record_tree(folder: Path) -> None:
    """List every file below ``folder`` (written by other libraries) in its checksums."""
    listing = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != CHECKSUMS
    }
    write_json(folder / CHECKSUMS, listing)


def verify_checksums(root: Path) -> int:
    """Check every file listed in a ``.checksums.json`` below ``root``; return how many.

    A listed file that is missing is not an error (resume redoes a missing unit); one
    whose content differs is a :class:`RunStoreError` naming it. Leftover staging folders
    (names starting with a dot) are skipped.
    """
    root = Path(root)
    checked = 0
    for listing_path in sorted(root.rglob(CHECKSUMS)):
        folder = listing_path.parent
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        for name, expected in _listing(folder).items():
            allowed = {expected} if isinstance(expected, str) else set(expected or [])
            target = folder / str(name)
            if not target.resolve().is_relative_to(folder.resolve()):
                raise RunStoreError(f"{str(listing_path)!r}: entry {name!r} points outside its folder")
            if not target.is_file():
                continue
            actual = sha256_file(target)
            if actual not in allowed:
                recorded = min(allowed)[:12] if allowed else "none"
                raise RunStoreError(
                    f"{str(target)!r} was changed or truncated after it was written "
                    f"(sha256 {actual[:12]}..., recorded {recorded}...); "
                    "restore it, or delete it and rerun the steps that depend on it"
                )
            checked += 1
    return checked


# ---------------------------------------------------------------- reading
def read_table(path: Path) -> pd.DataFrame:
    """A Parquet table the run wrote; a missing, truncated or garbled file is one line."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise RunStoreError(f"{str(path)!r} does not exist") from None
    except OSError as err:
        raise RunStoreError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
    except Exception as err:  # pyarrow raises ArrowInvalid and others for damaged files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunStoreError(f"{str(path)!r} is not a readable Parquet table ({reason})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{str(path)!r} does not exist") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, int limits
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RunStoreError(f"{str(path)!r} is not valid JSON ({reason})") from None
    except OSError as err:
        raise RunStoreError(f"cannot read {str(path)!r}: {err.strerror or err}") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file; a malformed line is a one-line DataError naming file and line.

    A line must be a JSON object in UTF-8 (a leading byte-order mark is allowed) whose
    strings are valid Unicode text; blank lines are skipped.
    """
    records = []
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte "
                                    f"{err.start})") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
                except (ValueError, RecursionError) as err:  # too many digits, too deep
                    reason = str(err).splitlines()[0] if str(err) else "nested too deeply"
                    raise DataError(f"{path}:{number}: not valid JSON ({reason})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object per line, "
                                    f"got {type(record).__name__}")
                if "\\u" in line and not _is_unicode_text(record):
                    raise DataError(f"{path}:{number}: a string holds an unpaired surrogate "
                                    "escape (\\ud800-\\udfff), which is not Unicode text")
                records.append(record)
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} does not exist") from None
    except OSError as err:
        raise DataError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
    return records


def _is_unicode_text(value: Any) -> bool:
    """False when a string inside ``value`` cannot be encoded as UTF-8 (lone surrogates)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def staging_dir(final_dir: Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary sibling folder that becomes ``final_dir`` only if the block succeeds.

    A crash inside the block leaves ``final_dir`` untouched. With ``replace=False`` an
    existing ``final_dir`` wins (e.g. another process finished the same cache first).
    Inside a tree that records checksums, every file of the folder is listed in its
    ``.checksums.json`` before it moves into place.
    """
    final_dir = Path(final_dir)
    try:
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    except (OSError, ValueError) as err:
        raise _cannot_write(final_dir, err) from None
    tmp.chmod(0o755)
    try:
        yield tmp
        if _tracked(final_dir.parent):
            _record_tree(tmp)
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
        _fsync_folder(final_dir.parent)
    except OSError as err:
        raise _cannot_write(final_dir, err) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
