"""``biasloop sweep``: every grid point × seed of a config as its own run, here or on Ray.

The command function is registered on the main app in :mod:`biasloop.cli`;
``python -m biasloop.cli_sweep`` runs it on its own. User errors end in one red
line and exit code 2; a sweep whose runs all finished exits 0, one with failed
runs exits 1 after the others have finished.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from biasloop.errors import BiasloopError

console = Console()
errors = Console(stderr=True)

OVERRIDES_HELP = (
    "Config overrides KEY.SUB=VALUE, e.g. model.name=tiny-random; sweep.grid.FIELD=LIST adds "
    "an axis and sweep.seeds=LIST sets the seeds (a LIST is YAML, as in the config file)."
)


@contextlib.contextmanager
def _display(quiet: bool) -> Iterator[Any]:
    """An ``on_event`` callback drawing a runs bar and one line per finished run."""
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=errors)
    state: dict[str, Any] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "plan":  # the bar starts once the sweep is valid, so errors print alone
            progress.start()
            done = data["total"] - data["to_run"]
            again = f", resumed (finished runs kept: {done})" if data["resumes"] else ""
            progress.console.print(f"sweep {escape(data['root'])}: {data['total']} runs on "
                                   f"executor {data['executor']!r}{again}")
            state["task"] = progress.add_task("runs", total=data["total"], completed=done)
        elif kind == "done":
            if data["status"] == "completed":
                seconds = f" ({data['seconds']:.1f} s, {data['action']})" if data["seconds"] else ""
                progress.console.print(f"[green]✓[/] {escape(data['id'])}{seconds}")
            else:
                error = escape(str(data["error"]))
                progress.console.print(f"[red]✗[/] {escape(data['id'])}: {error}")
            progress.advance(state["task"])

    try:
        yield on_event
    finally:
        if "task" in state:
            progress.stop()


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="sweep runs", show_lines=False)
    for column in ("run", "status", "attempts", "seconds"):
        table.add_column(column, justify="left" if column in ("run", "status") else "right")
    for run in runs:
        seconds = f"{run['seconds']:.1f}" if isinstance(run.get("seconds"), (int, float)) else ""
        status = run["status"] if run["status"] == "completed" else f"[red]{run['status']}[/]"
        table.add_row(escape(run["id"]), status, str(run["attempts"]), seconds)
    return table


def sweep(
    config: Path = typer.Argument(..., help="Experiment config (YAML) with a `sweep:` section."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="Sweep directory (default sweeps/NAME); an existing one is resumed.",
    ),
    executor: Optional[str] = typer.Option(
        None, "--executor", "-e", help="Where runs execute: local or ray (default: sweep.executor)."
    ),
    address: Optional[str] = typer.Option(
        None, "--address",
        help="Ray cluster address (auto, HOST:PORT, ray://HOST:10001); implies --executor ray.",
    ),
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", "-j", help="Runs at once (default: sweep.max_parallel)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary."),
) -> None:
    """Run every grid point × seed of a sweep as its own run; run it again to resume."""
    from biasloop.runner.sweep import SWEEP_METRICS, load_sweep_file, run_sweep

    # Flags become typed overrides of the sweep section, so they are validated like YAML.
    settings: list[tuple[list[str], Any]] = []
    if executor is not None:
        settings.append((["sweep", "executor"], executor))
    if address is not None:
        settings.append((["sweep", "address"], address))
        if executor is None:
            settings.append((["sweep", "executor"], "ray"))
    if max_parallel is not None:
        settings.append((["sweep", "max_parallel"], max_parallel))
    try:
        cfg = load_sweep_file(config, [*(overrides or []), *settings])
        with _display(quiet) as on_event:
            result = run_sweep(cfg, out=out, on_event=on_event, source=str(config))
    except BiasloopError as err:
        errors.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    if not quiet:
        console.print(_runs_table(result.runs))
    console.print(f"sweep directory: {result.root}")
    console.print(f"merged metrics: {result.root / SWEEP_METRICS}")
    if result.report is not None:
        console.print(f"report: {result.report}")
    if result.report_error:
        errors.print(f"[yellow]warning:[/] the sweep report failed: {escape(result.report_error)}")
    for run in result.failed:
        errors.print(f"[red]✗[/] {escape(run['id'])}: {escape(str(run['error']))}", soft_wrap=True,
                     highlight=False)
    if result.failed:
        failed = f"{len(result.failed)} of {len(result.runs)} runs failed"
        errors.print(f"[bold red]{failed}[/]; run the "
                     "same command again to retry them (finished runs are kept)", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(code=1)


def main() -> None:  # pragma: no cover - standalone entry point
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sweep)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
