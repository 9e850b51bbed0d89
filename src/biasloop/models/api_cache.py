"""On-disk cache of API responses, so a resumed or repeated run does not pay twice.

Each response is stored under the SHA-256 of the request that produced it
(:func:`request_key`: endpoint URL, the JSON body sent — model, prompt, sampling
parameters, seed — and the sample index). Entries live in at most 256 JSON
shard files named after the key's first two hex digits::

    <folder>/3f.json   {"format": 1, "entries": {"3f9a…": "the response text", …}}

so thousands of entries cost a few hundred small files, and a flush rewrites
only the shards that gained entries. Files are written atomically through
:mod:`biasloop.io`; a shard that cannot be read is ignored with a warning (its
responses are requested again and the shard rewritten). Request headers, and so
the API key, are never part of a key or an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from biasloop.io import write_text

logger = logging.getLogger("biasloop.models")

CACHE_FORMAT = 1


def request_key(url: str, body: Mapping[str, Any], sample: int) -> str:
    """SHA-256 (hex) of the canonical JSON of ``url``, the request ``body`` and ``sample``."""
    canonical = json.dumps(
        {"url": url, "body": dict(body), "sample": sample},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Response texts by request key, in 256 JSON shards under ``folder``.

    Not thread-safe: the backend reads and writes it from the calling thread only.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._shards: dict[str, dict[str, str]] = {}
        self._dirty: set[str] = set()

    def _path(self, shard: str) -> Path:
        return self.folder / f"{shard}.json"

    def _read(self, shard: str) -> dict[str, str]:
        path = self._path(shard)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            logger.warning("ignoring unreadable API cache file %s (%s); its responses will be "
                           "requested again", path, type(err).__name__)
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("format") != CACHE_FORMAT
            or not isinstance(entries, dict)
            or not all(isinstance(v, str) for v in entries.values())
        ):
            logger.warning("ignoring API cache file %s: not a format-%d cache shard; its "
                           "responses will be requested again", path, CACHE_FORMAT)
            return {}
        return entries

    def _shard(self, key: str) -> dict[str, str]:
        shard = key[:2]
        if shard not in self._shards:
            self._shards[shard] = self._read(shard)
        return self._shards[shard]

    def get(self, key: str) -> str | None:
        """The cached response for ``key``, or None."""
        return self._shard(key).get(key)

    def put(self, key: str, text: str) -> None:
        """Remember ``text`` for ``key`` (on disk at the next :meth:`flush`)."""
        self._shard(key)[key] = text
        self._dirty.add(key[:2])

    @property
    def pending(self) -> int:
        """Shards with entries not yet on disk."""
        return len(self._dirty)

    def flush(self) -> None:
        """Write every shard that gained entries, merged with what is on disk now."""
        for shard in sorted(self._dirty):
            # Another process may have written this shard since we read it: keep its entries.
            merged = {**self._read(shard), **self._shards[shard]}
            self._shards[shard] = merged
            text = json.dumps({"format": CACHE_FORMAT, "entries": merged}, ensure_ascii=False)
            write_text(self._path(shard), text + "\n")
        self._dirty.clear()
