"""Progress tracking that the engines report through, shown or silent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: ``track(description, items)`` iterates ``items``, showing progress (or not).
Track = Callable[[str, Sequence[Any]], Iterator[Any]]


def no_progress(description: str, items: Sequence[Any]) -> Iterator[Any]:
    """The silent :data:`Track`."""
    return iter(items)
