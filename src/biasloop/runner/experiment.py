"""Run an experiment config end to end: the loop for every condition × seed, into one run store."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from biasloop.config.load import (
    condition_names,
    config_hash,
    one_line,
    resolved_condition,
    validate_config,
)
from biasloop.config.schema import ExperimentConfig
from biasloop.errors import BiasloopError, RunInterrupted, RunStoreError
from biasloop.store import RunStore, now
from biasloop.seeding import seed_everything

log = logging.getLogger("biasloop")


def check_plugins(config: ExperimentConfig, *, source: str | None = None) -> None:
    """Load the config's plug-ins; fail before any work on an unknown plug-in or bad options.

    ``source`` (the config file) starts the one-line error, before the field it names.
    """
    from biasloop.models.loading import check_model_names
    from biasloop.plugins import load_plugins
    from biasloop.runner.studies import get_study

    try:
        load_plugins(config.plugins)
        for name in condition_names(config):
            condition = resolved_condition(config, name)
            study = get_study(condition.study)
            study.check(condition)
            if study.loads_model:
                check_model_names(condition)  # local folder, HF cache, or the hub asked once
    except BiasloopError as err:
        # Plug-ins may quote user keys holding line breaks; the error must stay one line.
        message = one_line(str(err))
        if source is not None and not message.startswith(f"{source!r}"):
            message = f"{source!r}: {message}"
        if message == str(err):
            raise
        raise type(err)(message) from None


def default_run_dir(config: ExperimentConfig, out: Path | None) -> Path:
    """``out`` if given, else ``runs/<name>-<YYYYmmdd-HHMMSS>``."""
    if out is not None:
        return out
    return Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextlib.contextmanager
def run_logging(store: RunStore, *, level: str) -> Iterator[None]:
    """Log to ``RUN_DIR/run.log`` (appending, so resumed runs keep their history)."""
    handler = logging.FileHandler(store.root / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("biasloop")
    root.addHandler(handler)
    previous = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


@contextlib.contextmanager
def stop_on_sigterm(store: RunStore) -> Iterator[None]:
    """Turn SIGTERM into :class:`RunInterrupted`, so the run ends like Ctrl-C does.

    The exception unwinds through the atomic writers (which delete their temporary
    files) and marks the manifest ``interrupted``. A second SIGTERM kills at once.
    Only the main thread can own signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise RunInterrupted(f"run stopped by SIGTERM; continue it with `biasloop resume {store.root}`")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(store: RunStore, config: ExperimentConfig, *, progress: Any = None) -> None:
    """Run (or continue) every condition × seed of ``config`` inside ``store``."""
    from biasloop.runner.studies import Components, run_condition

    components = Components()
    track = progress.track if progress is not None else None
    with run_logging(store, level=config.run.log_level), stop_on_sigterm(store):
        try:
            for seed in config.run_seeds:
                for name in condition_names(config):
                    condition = resolved_condition(config, name)
                    seed_everything(seed)
                    run_condition(config=condition, condition=name, seed=seed, store=store,
                                  components=components, track=track)
            finalize(store, config)
        except BaseException as err:
            status = "interrupted" if isinstance(err, (KeyboardInterrupt, RunInterrupted)) else "failed"
            with contextlib.suppress(Exception):
                store.update_manifest(status=status, error=f"{type(err).__name__}: {err}".splitlines()[0])
            log.exception("run %s", status)
            raise
        store.update_manifest(status="completed", ended_at=now())
        log.info("run completed: %s", store.root)


def finalize(store: RunStore, config: ExperimentConfig) -> None:
    """Merge the metric tables, summarise across seeds, draw the study's plots, write the report."""
    from biasloop.metrics.aggregate import summarize_seeds
    from biasloop.report.html import write_report
    from biasloop.store import write_table
    from biasloop.runner.studies import get_study

    metrics = store.collect_metrics()
    summary = summarize_seeds(metrics, confidence=config.metrics.confidence)
    write_table(store.root / "summary.parquet", summary)
    get_study(config.study).plot(summary, store.root / "plots")
    # Every unit is done here; the manifest says "completed" only once this returns.
    write_report(store.root, status="completed")


def start_run(
    config: ExperimentConfig,
    *,
    out: Path | None = None,
    progress: Any = None,
    source: str | None = None,
) -> RunStore:
    """Create a run directory for ``config`` (read from ``source``, if a file) and execute it."""
    check_plugins(config, source=source)
    store = RunStore(default_run_dir(config, out))
    store.create(config=config.model_dump(mode="json"), config_hash=config_hash(config),
                 seed=config.seed)
    with store.locked("run"):
        execute(store, config, progress=progress)
    return store


def resume_run(run_dir: Path, *, progress: Any = None) -> RunStore:
    """Continue a run from its manifest; finished units are skipped, none repeated."""
    store = RunStore(run_dir)
    with store.locked("resume"):
        return _resume(store, progress=progress)


def _resume(store: RunStore, *, progress: Any) -> RunStore:
    if store.exists():
        store.verify()  # a file changed or truncated since it was written stops the resume
    manifest = store.manifest()
    config = validate_config(manifest["config"], source=str(store.manifest_path))
    if config_hash(config) != manifest.get("config_hash"):
        raise RunStoreError(
            f"{str(store.manifest_path)!r}: config hash {config_hash(config)} does not match "
            f"the recorded {manifest.get('config_hash')}; the manifest was edited"
        )
    check_plugins(config)
    store.update_manifest(status="running", resumes=int(manifest.get("resumes", 0)) + 1, error=None)
    execute(store, config, progress=progress)
    return store


def summarize_runs(directory: Path) -> list[dict[str, Any]]:
    """One row per run directory below ``directory``: status and key final metrics."""
    from biasloop.io import read_table

    rows = []
    manifests: Sequence[Path] = sorted(directory.glob("*/manifest.json"))
    if (directory / "manifest.json").exists():
        manifests = [directory / "manifest.json", *manifests]
    for manifest_path in manifests:
        store = RunStore(manifest_path.parent)
        try:
            manifest = store.manifest()
        except RunStoreError as err:
            rows.append({"run": str(store.root), "status": "unreadable", "problem": str(err)})
            continue
        row: dict[str, Any] = {"run": str(store.root), "status": manifest.get("status"),
                               "name": manifest["config"].get("name"),
                               "started": manifest.get("started_at")}
        metrics_path = store.root / "metrics.parquet"
        if metrics_path.exists():
            try:
                frame = read_table(metrics_path)
            except RunStoreError as err:  # list the rest; say what is wrong with this one
                row.update(status="damaged", problem=str(err))
                rows.append(row)
                continue
            final = frame[(frame["generation"] == frame["generation"].max()) & (frame["group"] == "")]
            for metric in ("quality", "disparate_bias", "preference_bias"):
                values = final[final["metric"] == metric]["value"]
                if len(values):
                    row[metric] = float(values.mean())
        rows.append(row)
    return rows
