"""The ``biasloop`` command line (typer + rich).

Every user error ends in one red line naming what is wrong, and exit code 2;
tracebacks go to the run's ``run.log`` only.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from biasloop.errors import BiasloopError

app = typer.Typer(
    help="Run, measure and mitigate social bias in LLM synthetic-data pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check and print configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()
errors = Console(stderr=True)

OVERRIDES_HELP = "Config overrides KEY.SUB=VALUE, e.g. model.name=tiny-random seed=3."


def _fail(err: BaseException) -> typer.Exit:
    # Messages quote user input, which may look like rich markup ("[/x]"): print it as text.
    errors.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@contextlib.contextmanager
def _user_errors():
    from biasloop.errors import RunInterrupted

    try:
        yield
    except RunInterrupted as err:  # stopped by SIGTERM: exit as a terminated process does
        errors.print(f"[bold yellow]stopped:[/] {escape(str(err))}", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(code=143) from None
    except BiasloopError as err:
        raise _fail(err) from None


def _progress(quiet: bool):
    from biasloop.runner.progress import ProgressBars

    return contextlib.nullcontext(None) if quiet else ProgressBars(console=errors)


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment config (YAML)."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/NAME-TIME)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Run an experiment and write its run directory."""
    from biasloop.config import load_config
    from biasloop.runner.experiment import start_run

    with _user_errors():
        cfg = load_config(config, overrides or [])
        with _progress(quiet or not cfg.run.progress) as bars:
            store = start_run(cfg, out=out, progress=bars, source=str(config))
    if not quiet:
        _print_summary(store.root)
    console.print(f"run directory: {store.root}")
    _print_report_path(store.root)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="A run directory written by `biasloop run`."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Continue a stopped or killed run; finished steps are kept, none repeated."""
    from biasloop.runner.experiment import resume_run

    with _user_errors():
        with _progress(quiet) as bars:
            store = resume_run(run_dir, progress=bars)
    if not quiet:
        _print_summary(store.root)
    console.print(f"run directory: {store.root}")
    _print_report_path(store.root)


@app.command()
def report(
    directory: Path = typer.Argument(..., help="A run directory, or a folder of runs (a sweep)."),
    samples: int = typer.Option(
        2, "--samples", min=0, help="Sample generations shown per group and generation."
    ),
) -> None:
    """Write DIR/report.html (self-contained, figures embedded) and DIR/figures/*.png."""
    from biasloop.report.html import write_report
    from biasloop.store import RunStore

    with _user_errors():
        store = RunStore(directory)
        with store.locked("report") if store.exists() else contextlib.nullcontext():
            if store.exists():
                store.verify()  # a changed or truncated run file is named, not drawn
            path = write_report(directory, samples_per_group=samples)
    console.print(f"report: {path}")


@app.command()
def analyze(
    run_dir: Path = typer.Argument(..., help="A bias inheritance run directory."),
    reference: str = typer.Option(
        "winogender-occupations", "--reference",
        help="Value reference: `winogender-occupations` (BLS gender shares) or a CSV with "
        "columns item, prompt, option, share.",
    ),
    neutral_texts: int = typer.Option(
        48, "--neutral-texts", min=0, max=100_000,
        help="Neutral-prompt generations per model for the group-data analysis (0: skip).",
    ),
    baseline: str = typer.Option(
        "none", "--baseline", help="Condition every other condition is compared with."
    ),
    permutations: int = typer.Option(
        1000, "--permutations", min=10, max=1_000_000, help="Permutations of the MMD test."
    ),
    classifier_permutations: int = typer.Option(
        100, "--classifier-permutations", min=10, max=100_000,
        help="Permutations of the classifier two-sample test.",
    ),
    no_models: bool = typer.Option(
        False, "--no-models", help="Skip the parts that load models (values, neutral prompts)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Misalignment analysis (values, group data, distribution) and mitigation tables.

    Writes RUN_DIR/analysis/: parquet tables, figures/*.png and summary.md.
    """
    from biasloop.analysis import AnalysisSettings, analyze_run

    settings = AnalysisSettings(
        reference=reference, neutral_texts=neutral_texts, baseline=baseline,
        permutations=permutations, classifier_permutations=classifier_permutations,
        models=not no_models,
    )
    from biasloop.store import RunStore

    with _user_errors():
        store = RunStore(run_dir)
        lock = store.locked("analyze") if store.exists() else contextlib.nullcontext()
        with lock, _progress(quiet) as bars:
            out = analyze_run(run_dir, settings=settings, track=bars.track if bars else None)
    console.print(f"analysis: {out}")
    console.print(f"summary: {out / 'summary.md'}")
    console.print(f"add its figures to the report with: biasloop report {run_dir}")


@app.command("simulate")
def simulate_command(
    config: Optional[Path] = typer.Argument(
        None, help="Config to simulate (YAML), run as `study: simulate` (omit with --fit)."
    ),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    fit: Optional[Path] = typer.Option(
        None, "--fit",
        help="A run directory (neural or simulated): fit the simulator to its early "
        "generations and predict the later ones.",
    ),
    fit_generations: Optional[int] = typer.Option(
        None, "--fit-generations", min=2,
        help="With --fit: generations 0..N-1 are fitted, the rest held out (default: the "
        "first half).",
    ),
    conditions: Optional[list[str]] = typer.Option(
        None, "--condition", help="With --fit: only this condition (repeatable)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o",
        help="Run directory (default runs/NAME-TIME); with --fit, the folder for the fit "
        "(default RUN_DIR/simulate-fit).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Mean-field simulation of the loop, or (--fit RUN_DIR) a fit of it to a run."""
    if fit is not None:
        if config is not None:
            raise _fail(BiasloopError(
                f"simulate: give a config or --fit RUN_DIR, not both (got {str(config)!r})"))
        with _user_errors():
            _simulate_fit(fit, fit_generations=fit_generations, conditions=conditions, out=out)
        return
    if config is None:
        raise _fail(BiasloopError("simulate: missing CONFIG; valid: `biasloop simulate "
                                  "CONFIG [overrides]` or `biasloop simulate --fit RUN_DIR`"))
    if fit_generations is not None or conditions:
        raise _fail(BiasloopError("simulate: --fit-generations and --condition need --fit RUN_DIR"))
    run(config=config, overrides=[*(overrides or []), "study=simulate"], out=out, quiet=quiet)


def _simulate_fit(run_dir: Path, *, fit_generations: Optional[int],
                  conditions: Optional[list[str]], out: Optional[Path]) -> None:
    from biasloop.simulate.fit import fit_run, write_fit

    results = fit_run(run_dir, fit_generations=fit_generations, conditions=conditions)
    table = Table("condition", "ρ rate", "q_min", "q_max", "κ", "fitted", "fit RMSE",
                  title=f"simulator fitted to {run_dir}")
    for r in results:
        table.add_row(r.condition, *(f"{v:.3f}" for v in r.params.as_tuple()),
                      f"0..{r.fit_generations - 1}", f"{r.fit_rmse:.4f}")
    console.print(table)
    errors = Table("condition", "metric", "held out", "RMSE", "persistence", "n",
                   title="prediction error on held-out generations (persistence: the last "
                   "fitted value carried forward)")
    for r in results:
        for row in r.errors[r.errors["window"] == "held-out"].itertuples():
            errors.add_row(r.condition, row.metric, f"{r.fit_generations}..{r.last_generation}",
                           f"{row.rmse:.4f}", f"{row.persistence_rmse:.4f}", str(row.n))
    console.print(errors)
    written = write_fit(results, out or run_dir / "simulate-fit", run_dir=run_dir)
    console.print(f"fit written: {', '.join(str(p) for p in written)}")


@app.command("ls")
def list_runs(directory: Path = typer.Argument(Path("runs"), help="Folder holding run directories.")) -> None:
    """List runs with their status and final key metrics."""
    from biasloop.runner.experiment import summarize_runs

    if not directory.is_dir():
        raise _fail(BiasloopError(f"{str(directory)!r} is not a folder"))
    rows = summarize_runs(directory)
    if not rows:
        console.print(f"no runs in {directory}")
        return
    table = Table("run", "status", "quality", "disparate_bias", "preference_bias")
    for row in rows:
        cells = [f"{row[m]:.3f}" if isinstance(row.get(m), float) else "" for m in
                 ("quality", "disparate_bias", "preference_bias")]
        table.add_row(row["run"], str(row["status"]), *cells)
    console.print(table)
    for row in rows:  # one line per damaged or unreadable run, in full
        if row.get("problem"):
            console.print(f"{row['status']}: {escape(row['problem'])}", highlight=False,
                          soft_wrap=True)


@app.command("list")
def list_plugins(
    kind: Optional[str] = typer.Argument(
        None, help="Plug-in kind: study, task, evaluation, mitigation, feedback-rule, model-backend, …"
    ),
    plugins: Optional[list[str]] = typer.Option(
        None, "--plugin", help="Also load this plug-in module or .py file (repeatable)."
    ),
) -> None:
    """List every registered plug-in with its one-line doc (and, for one kind, its params)."""
    from biasloop.plugins import load_plugins, registered

    with _user_errors():
        load_plugins(plugins or [], field="--plugin")
        infos = registered(kind)
    table = Table("kind", "name", "description", *(["params"] if kind else []), show_lines=bool(kind))
    for info in infos:
        params = "\n".join(f"{name}: {type_default}" + (f" — {doc}" if doc else "")
                            for name, type_default, doc in info.params)
        # Summaries hold formulas such as ``quality[g]``, which rich would read as markup.
        table.add_row(info.kind, info.name, escape(info.summary), *([escape(params)] if kind else []))
    console.print(table)


@config_app.command("validate")
def config_validate(
    config: Path = typer.Argument(..., help="Experiment config (YAML)."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Check a config without running it."""
    from biasloop.config import load_config
    from biasloop.runner.experiment import check_plugins

    with _user_errors():
        check_plugins(load_config(config, overrides or []), source=str(config))
    console.print(f"{config}: valid")


@config_app.command("show")
def config_show(
    config: Path = typer.Argument(..., help="Experiment config (YAML)."),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the resolved config: file + overrides + defaults."""
    from biasloop.config import load_config

    with _user_errors():
        resolved = load_config(config, overrides or []).model_dump(mode="json")
    text = json.dumps(resolved, indent=2) if as_json else yaml.safe_dump(resolved, sort_keys=False)
    sys.stdout.write(text)


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown) generated from the config models."""
    from biasloop.config.reference import markdown_reference

    sys.stdout.write(markdown_reference())


def _print_summary(run_dir: Path) -> None:
    from biasloop.io import read_table

    path = run_dir / "metrics.parquet"
    if not path.exists():
        return
    frame = read_table(path)
    overall = frame[frame["group"] == ""]
    last = overall[overall["generation"] == overall["generation"].max()]
    table = Table(title=f"final generation of {run_dir.name}", show_lines=False)
    table.add_column("condition")
    metrics = [m for m in ("quality", "disparate_bias", "preference_bias", "perplexity") if m in set(last["metric"])]
    for metric in metrics:
        table.add_column(metric, justify="right")
    for condition, rows in last.groupby("condition", sort=False):
        cells = []
        for metric in metrics:
            values = rows[rows["metric"] == metric]
            cells.append(f"{values['value'].mean():.3f} [{values['ci_low'].mean():.3f}, {values['ci_high'].mean():.3f}]")
        table.add_row(str(condition), *cells)
    console.print(table)


def _print_report_path(run_dir: Path) -> None:
    from biasloop.report.html import report_path

    if report_path(run_dir).exists():
        console.print(f"report: {report_path(run_dir)}")


from biasloop.cli_sweep import sweep  # noqa: E402  (the sweep command lives beside its runner)

app.command("sweep")(sweep)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
