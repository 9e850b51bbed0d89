"""Sweeps: a grid over config fields × seeds, each point an independent run.

Layout of a sweep directory::

    SWEEP_DIR/
      sweep.json               base config, the planned runs, their status, errors and attempts
      runs/<run-id>/           one ordinary run directory per grid point × seed
      sweep_metrics.parquet    every completed run's metrics.parquet, with the sweep axes as columns
      report.html, figures/    the sweep report

A run id names its grid values and seed, e.g. ``rule-static_type-retrain_seed-0``
(with a short hash when a value had to be shortened or cleaned to be safe in a
file name), so it is the same every time the same config is planned. A sweep
is resumed by running it again on the same directory: completed runs are
skipped, unfinished or failed ones continue from where they stopped
(:func:`~biasloop.runner.experiment.resume_run`), and unstarted ones start. A
failed run is recorded with its error and the others carry on.

Only this process (the driver) writes ``sweep.json``; each run writes only its
own directory, through the run store.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from biasloop.config.load import apply_overrides, config_hash, read_yaml, validate_config
from biasloop.config.schema import ExperimentConfig
from biasloop.errors import BiasloopError, ConfigError, RunStoreError
from biasloop.runner.executors import Executor, get_executor
from biasloop.store import (
    METRIC_COLUMNS,
    RunStore,
    git_revision,
    now,
    package_versions,
    read_json,
    read_table,
    write_json,
    write_table,
)

log = logging.getLogger("biasloop.sweep")

SWEEP_MANIFEST = "sweep.json"


_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


def run_folder(root: Path, record: dict[str, Any]) -> Path:
    """``root/runs/<id>`` of a planned run; an id from an edited ``sweep.json`` cannot escape."""
    run_id = str(record.get("id", ""))
    if not _SAFE_RUN_ID.match(run_id) or run_id in {".", ".."}:
        raise RunStoreError(
            f"{str(root / SWEEP_MANIFEST)!r}: run id {run_id!r} is not a plain folder name"
        )
    return root / RUNS_DIR / run_id
RUNS_DIR = "runs"
SWEEP_METRICS = "sweep_metrics.parquet"

#: ``on_event(kind, data)``: ``plan`` (a summary), then ``start`` and ``done`` (a run record).
OnEvent = Callable[[str, dict[str, Any]], None]


# ---------------------------------------------------------------- planning
@dataclass(frozen=True, kw_only=True)
class PlannedRun:
    """One grid point × seed: its id, its axis values and its resolved config."""

    run_id: str
    point: dict[str, Any]
    seed: int
    config: ExperimentConfig
    config_hash: str


def sweep_seeds(config: ExperimentConfig) -> list[int]:
    """The seeds every grid point runs with: ``sweep.seeds``, else the config's seeds."""
    return list(config.sweep.seeds) or config.run_seeds


def _axis_labels(axes: Sequence[str]) -> dict[str, str]:
    """Short labels for run ids: the last part of each axis, unless two axes share it."""
    last = [axis.split(".")[-1] for axis in axes]
    return {axis: (short if last.count(short) == 1 else axis)
            for axis, short in zip(axes, last, strict=True)}


def _slug(value: Any) -> tuple[str, bool]:
    """A file-name-safe form of a value, and whether it lost anything on the way."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip(".-")[:40] or "x"
    return slug, slug != text


def _digest(point: dict[str, Any], seed: int) -> str:
    text = json.dumps({"point": point, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def run_id(point: dict[str, Any], seed: int, labels: dict[str, str]) -> str:
    """``rule-static_type-retrain_seed-0``; a short hash is added when a value was cleaned."""
    parts, lossy = [], False
    for axis, value in point.items():
        slug, changed = _slug(value)
        parts.append(f"{labels[axis]}-{slug}")
        lossy = lossy or changed
    text = "_".join([*parts, f"seed-{seed}"])
    if lossy or len(text) > 120:
        text = f"{text[:110]}_{_digest(point, seed)}"
    return text


def _describe_point(point: dict[str, Any], seed: int) -> str:
    values = ", ".join(f"{axis}={json.dumps(value, default=str)}" for axis, value in point.items())
    return f"[sweep run {values + ', ' if values else ''}seed={seed}]"


def plan_sweep(config: ExperimentConfig, *, source: str = "config") -> list[PlannedRun]:
    """Every grid point × seed as a validated run config, in a stable order (seeds outermost).

    Each run's config is the base config with the point's values set, ``seed`` set
    to the run's seed, and no ``seeds`` or ``sweep`` of its own. Any value that a
    plain run would reject (wrong type, unknown field, unknown plug-in) fails here,
    before any run starts, with a one-line error naming the run and the field.
    """
    from biasloop.runner.experiment import check_plugins

    settings = config.sweep
    if settings.seeds and config.seeds:
        raise ConfigError(
            f"{source}: seeds = {config.seeds} and sweep.seeds = {settings.seeds} are both set; "
            "keep one (a sweep runs every grid point with sweep.seeds, else with seeds)"
        )
    axes = list(settings.grid)
    labels = _axis_labels(axes)
    base = config.model_dump(mode="json")
    base["sweep"], base["seeds"] = {}, []  # a run of a sweep is a plain single-seed run
    runs: list[PlannedRun] = []
    for seed in sweep_seeds(config):
        for values in itertools.product(*settings.grid.values()):
            point = dict(zip(axes, values, strict=True))
            where = f"{source} {_describe_point(point, seed)}"
            items = [(axis.split("."), value) for axis, value in point.items()]
            try:
                data = apply_overrides(base, [*items, (["seed"], seed)])
                run_config = validate_config(data, source=where)
                check_plugins(run_config)
            except ConfigError as err:
                message = str(err)
                located = message if message.startswith(where) else f"{where}: {message}"
                raise ConfigError(located) from None
            runs.append(PlannedRun(run_id=run_id(point, seed, labels), point=point, seed=seed,
                                   config=run_config, config_hash=config_hash(run_config)))
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.run_id] = counts.get(run.run_id, 0) + 1
    return [
        run if counts[run.run_id] == 1 else PlannedRun(
            run_id=f"{run.run_id}_{_digest(run.point, run.seed)}", point=run.point, seed=run.seed,
            config=run.config, config_hash=run.config_hash)
        for run in runs
    ]


def plan_hash(runs: Sequence[PlannedRun]) -> str:
    """What makes two sweeps the same sweep: the same run ids with the same run configs."""
    text = json.dumps([[run.run_id, run.config_hash] for run in runs])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- one run (on a worker)
@dataclass(frozen=True, kw_only=True)
class RunUnit:
    """What a worker needs to execute one run: plain data, picklable, paths absolute."""

    run_id: str
    run_dir: str
    sweep_dir: str
    config: dict[str, Any]
    config_hash: str
    threads: int


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """How one run ended: ``completed`` or ``failed`` (with its error), and what was done."""

    run_id: str
    status: str
    action: str  # started, resumed, skipped (already completed), none (failed before starting)
    error: str | None
    seconds: float
    host: str


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    if not isinstance(err, BiasloopError):
        first = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return first[:500]


def _clear_partial_start(run_dir: Path) -> None:
    """A run killed while writing its first manifest leaves only a temp file: remove it."""
    if not run_dir.is_dir():
        return
    leftovers = list(run_dir.iterdir())
    if leftovers and all(p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")
                         for p in leftovers):
        for path in leftovers:
            path.unlink()


def run_unit(unit: RunUnit) -> RunOutcome:
    """Start, resume or skip one run, and never raise: a failure comes back as its error."""
    import torch

    from biasloop.runner.experiment import resume_run, start_run

    started = time.perf_counter()
    action = "none"

    def outcome(status: str, error: str | None = None) -> RunOutcome:
        return RunOutcome(run_id=unit.run_id, status=status, action=action, error=error,
                          seconds=round(time.perf_counter() - started, 3), host=platform.node())

    if not (Path(unit.sweep_dir) / SWEEP_MANIFEST).is_file():
        return outcome("failed", f"the sweep directory {unit.sweep_dir!r} is not visible on host "
                       f"{platform.node()!r}; put --out on a filesystem every node shares")
    threads = torch.get_num_threads()
    # The same thread count under every executor keeps float results identical.
    torch.set_num_threads(unit.threads)
    try:
        store = RunStore(unit.run_dir)
        if store.exists():
            manifest = store.manifest()
            if manifest.get("config_hash") != unit.config_hash:
                return outcome("failed", f"{unit.run_dir!r} holds a run with another config "
                               f"(hash {manifest.get('config_hash')}, planned {unit.config_hash})")
            if manifest.get("status") == "completed":
                action = "skipped"
                return outcome("completed")
            action = "resumed"
            resume_run(Path(unit.run_dir))
        else:
            _clear_partial_start(Path(unit.run_dir))
            action = "started"
            start_run(validate_config(unit.config, source=unit.run_id), out=Path(unit.run_dir))
        return outcome("completed")
    except Exception as err:  # noqa: BLE001 - a failed run is reported, the sweep goes on
        log.debug("run %s failed", unit.run_id, exc_info=True)
        return outcome("failed", _one_line(err))
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- the sweep directory
def _process_identity() -> dict[str, Any]:
    import psutil

    return {"host": platform.node(), "pid": os.getpid(),
            "create_time": psutil.Process().create_time()}


def _refuse_if_live(root: Path, manifest: dict[str, Any]) -> None:
    """Two drivers on one sweep would run the same runs twice: refuse a live one."""
    import psutil

    driver = manifest.get("driver") or {}
    if manifest.get("status") != "running" or driver.get("host") != platform.node():
        return
    pid = driver.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        same = abs(process.create_time() - float(driver.get("create_time", 0))) < 1
        if same and process.status() != psutil.STATUS_ZOMBIE:
            raise RunStoreError(
                f"{str(root)!r} is being run by process {pid} on this host; wait for it or stop it"
            )


def _new_manifest(config: ExperimentConfig, runs: Sequence[PlannedRun]) -> dict[str, Any]:
    return {
        "kind": "biasloop-sweep",
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash(config),
        "plan_hash": plan_hash(runs),
        "axes": list(config.sweep.grid),
        "seeds": sweep_seeds(config),
        "executor": config.sweep.executor,
        "versions": package_versions(),
        "git_revision": git_revision(),
        "started_at": now(),
        "ended_at": None,
        "status": "running",
        "resumes": 0,
        "runs": [
            {"id": run.run_id, "dir": f"{RUNS_DIR}/{run.run_id}", "point": run.point,
             "seed": run.seed, "config_hash": run.config_hash, "status": "pending",
             "action": None, "error": None, "attempts": 0, "seconds": None, "host": None}
            for run in runs
        ],
    }


def default_sweep_dir(config: ExperimentConfig, out: Path | None) -> Path:
    """``out`` if given, else ``sweeps/<name>`` (so running the same command again resumes)."""
    return out if out is not None else Path("sweeps") / config.name


def _existing(root: Path, runs: Sequence[PlannedRun]) -> dict[str, Any] | None:
    """The manifest of the same sweep in ``root`` (to resume), None for a new one; reads only."""
    path = root / SWEEP_MANIFEST
    if not path.is_file():
        if root.exists() and any(root.iterdir()):
            raise RunStoreError(
                f"{str(root)!r} is not empty and holds no sweep; choose a new --out"
            )
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("kind") != "biasloop-sweep":
        raise RunStoreError(f"{str(path)!r} is not a biasloop sweep manifest")
    if manifest.get("plan_hash") != plan_hash(runs):
        raise RunStoreError(
            f"{str(root)!r} holds a different sweep (other runs or run configs); choose a "
            "new --out, or resume it with the config it was started with"
        )
    _refuse_if_live(root, manifest)
    return manifest


def _open(root: Path, config: ExperimentConfig, runs: Sequence[PlannedRun],
          existing: dict[str, Any] | None) -> dict[str, Any]:
    """Write the manifest of a new sweep, or mark an existing one as resumed."""
    if existing is None:
        manifest = _new_manifest(config, runs)
    else:
        manifest = existing
        manifest.update(config=config.model_dump(mode="json"), config_hash=config_hash(config),
                        executor=config.sweep.executor, status="running", ended_at=None,
                        resumes=int(manifest.get("resumes", 0)) + 1, error=None)
    manifest["driver"] = _process_identity()
    # Reconcile with the run directories: they, not sweep.json, say what finished.
    for record in manifest["runs"]:
        store = RunStore(run_folder(root, record))
        status = None
        with contextlib.suppress(RunStoreError):
            status = store.manifest().get("status") if store.exists() else None
        if status == "completed":
            record["status"] = "completed"
        elif record["status"] != "failed":
            record["status"] = "pending"
    write_json(root / SWEEP_MANIFEST, manifest)
    return manifest


# ---------------------------------------------------------------- the merged table
def _axis_cells(values: Sequence[Any]) -> list[Any]:
    """Axis values as table cells: plain when one scalar kind, else their JSON text."""
    def kind(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, (int, float)):
            return "number"
        return "str" if isinstance(value, str) else "other"

    kinds = {kind(v) for v in values} - {"none"}
    if len(kinds) <= 1 and "other" not in kinds:
        return list(values)
    return [json.dumps(v, sort_keys=True, default=str) for v in values]


def merge_sweep_metrics(root: Path, manifest: dict[str, Any] | None = None) -> pd.DataFrame:
    """One tidy table: ``run``, the sweep axes, then the ``metrics.parquet`` columns of every
    completed run (in plan order), written to ``SWEEP_DIR/sweep_metrics.parquet``."""
    root = Path(root)
    manifest = manifest if manifest is not None else read_json(root / SWEEP_MANIFEST)
    axes: list[str] = manifest["axes"]
    records = manifest["runs"]
    ids = [record["id"] for record in records]
    cells = {axis: dict(zip(ids, _axis_cells([r["point"][axis] for r in records]), strict=True))
             for axis in axes}
    frames = []
    for record in records:
        if record["status"] != "completed":
            continue
        frame = read_table(run_folder(root, record) / "metrics.parquet")
        frame.insert(0, "run", record["id"])
        for position, axis in enumerate(axes, start=1):
            frame.insert(position, axis, [cells[axis][record["id"]]] * len(frame))
        frames.append(frame)
    if frames:
        merged = pd.concat(frames, ignore_index=True)
    else:
        merged = pd.DataFrame(columns=["run", *axes, *METRIC_COLUMNS])
    write_table(root / SWEEP_METRICS, merged)
    return merged


def write_sweep_report(root: Path) -> Path:
    """The sweep's ``report.html`` over all its runs (the report itself is biasloop.report's)."""
    from biasloop.report.html import write_report

    return write_report(root)


# ---------------------------------------------------------------- running a sweep
@dataclass(kw_only=True)
class SweepResult:
    """A finished (or partly failed) sweep: its directory, run records and merged table."""

    root: Path
    runs: list[dict[str, Any]]
    metrics: pd.DataFrame
    report: Path | None = None
    report_error: str | None = None
    axes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [run for run in self.runs if run["status"] != "completed"]


def _execute(executor: Executor, root: Path, manifest: dict[str, Any], runs: Sequence[PlannedRun],
             config: ExperimentConfig, emit: OnEvent) -> None:
    """Hand every unfinished run to the executor, recording each start and end in sweep.json."""
    path = root / SWEEP_MANIFEST
    records = {record["id"]: record for record in manifest["runs"]}
    threads = max(1, int(config.sweep.resources_per_run.cpus))
    units = [
        RunUnit(run_id=run.run_id, run_dir=str(run_folder(root, records[run.run_id])),
                sweep_dir=str(root), config=run.config.model_dump(mode="json"),
                config_hash=run.config_hash, threads=threads)
        for run in runs if records[run.run_id]["status"] != "completed"
    ]
    emit("plan", {"root": str(root), "total": len(runs), "to_run": len(units),
                  "executor": config.sweep.executor, "axes": list(config.sweep.grid),
                  "resumes": manifest["resumes"]})

    def on_start(unit: RunUnit) -> None:
        record = records[unit.run_id]
        record.update(status="running", error=None, attempts=int(record["attempts"]) + 1)
        write_json(path, manifest)
        emit("start", record)

    def on_done(unit: RunUnit, result: RunOutcome | None, lost: str | None) -> None:
        record = records[unit.run_id]
        if result is None:
            record.update(status="failed", error=lost)
        else:
            record.update(status=result.status, action=result.action, error=result.error,
                          seconds=result.seconds, host=result.host)
        if record["status"] == "failed":
            log.info("sweep run %s failed: %s", unit.run_id, record["error"])
        write_json(path, manifest)
        emit("done", record)

    try:
        executor.run(run_unit, units, settings=config.sweep, on_start=on_start, on_done=on_done)
    except BaseException as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        for record in manifest["runs"]:
            if record["status"] == "running":
                record["status"] = "pending"
        with contextlib.suppress(Exception):
            manifest.update(status=status, error=_one_line(err), ended_at=now())
            write_json(path, manifest)
        raise


def run_sweep(config: ExperimentConfig, *, out: Path | None = None, on_event: OnEvent | None = None,
              source: str = "config") -> SweepResult:
    """Plan, run (or resume) and merge the sweep of ``config`` in ``out``.

    Everything that can be checked is checked before the first run: every run
    config, every plug-in name, the executor. Runs that fail are recorded with
    their error in ``sweep.json`` and the rest carry on; run it again to retry them.
    """
    runs = plan_sweep(config, source=source)
    executor = get_executor(config.sweep)
    root = default_sweep_dir(config, out).resolve()
    existing = _existing(root, runs)
    with executor.session(config.sweep):  # connect first: a failed connection writes nothing
        manifest = _open(root, config, runs, existing)
        _execute(executor, root, manifest, runs, config, on_event or (lambda kind, data: None))
    metrics = merge_sweep_metrics(root, manifest)
    result = SweepResult(root=root, runs=manifest["runs"], metrics=metrics, axes=manifest["axes"])
    if config.sweep.report:
        try:
            result.report = write_sweep_report(root)
        except Exception as err:  # noqa: BLE001 - the runs and the table are safe; say what failed
            result.report_error = _one_line(err)
            log.debug("sweep report failed: %s", result.report_error, exc_info=True)
    manifest.update(status="failed" if result.failed else "completed", ended_at=now(),
                    report_error=result.report_error)
    write_json(root / SWEEP_MANIFEST, manifest)
    return result


def load_sweep_config(sweep_dir: Path) -> ExperimentConfig:
    """The config a sweep directory was last run with (from its ``sweep.json``)."""
    path = Path(sweep_dir) / SWEEP_MANIFEST
    manifest = read_json(path)
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise RunStoreError(f"{str(path)!r} has no 'config' entry")
    return validate_config(manifest["config"], source=str(path))


def resume_sweep(sweep_dir: Path, *, overrides: Iterable[str] = (),
                 on_event: OnEvent | None = None) -> SweepResult:
    """Continue a sweep from its directory alone; ``overrides`` may change where it runs
    (e.g. ``sweep.executor=ray``), not what it runs."""
    config = load_sweep_config(sweep_dir)
    if overrides:
        data = apply_overrides(config.model_dump(mode="json"), overrides)
        config = validate_config(data, source=str(Path(sweep_dir) / SWEEP_MANIFEST))
    return run_sweep(config, out=Path(sweep_dir), on_event=on_event,
                     source=str(Path(sweep_dir) / SWEEP_MANIFEST))


def load_sweep_file(
    path: Path, overrides: Iterable[str | tuple[list[str], Any]] = ()
) -> ExperimentConfig:
    """Read a sweep config file with overrides: ``KEY=VALUE`` strings or ``(path, value)`` pairs."""
    data = apply_overrides(read_yaml(path), overrides)
    return validate_config(data, source=str(path))
