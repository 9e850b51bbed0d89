"""Progress bars (rich) for long steps; a quiet run shows none."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


class ProgressBars:
    """A live rich display; ``track`` wraps one step's items in a transient bar."""

    def __init__(self, *, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )

    def __enter__(self) -> ProgressBars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def track(self, description: str, items: Sequence[T]) -> Iterator[T]:
        task = self.progress.add_task(description, total=len(items))
        for item in items:
            yield item
            self.progress.advance(task)
        self.progress.remove_task(task)
