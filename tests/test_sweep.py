"""Sweeps: grid × seeds as independent runs, local and Ray executors, kill and resume, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import typer
from typer.testing import CliRunner

from biasloop.cli_sweep import sweep
from biasloop.config import load_config
from biasloop.errors import ConfigError, RunStoreError
from biasloop.store import METRIC_COLUMNS, read_json
from biasloop.runner.sweep import SWEEP_MANIFEST, SWEEP_METRICS, plan_sweep, run_sweep

# A run of about ten seconds on tiny-random.
TINY = [
    "name=sweep-test",
    "model.name=tiny-random",
    "task.name=preference",
    "task.eval_queries_per_group=4",
    "generation.max_new_tokens=4",
    "generation.batch_size=8",
    "training.batch_size=8",
    "loop.generations=1",
    "loop.queries_per_generation=8",
    "metrics.bootstrap_samples=20",
    "metrics.perplexity_texts=4",
    "run.progress=false",
]
# Four runs: two feedback rules × two seeds.
GRID = [*TINY, "sweep.grid={feedback.rule: [static, retention]}", "sweep.seeds=[0, 1]"]
RUN_IDS = ["rule-static_seed-0", "rule-retention_seed-0",
           "rule-static_seed-1", "rule-retention_seed-1"]


def _manifest(sweep_dir: Path) -> dict:
    return read_json(sweep_dir / SWEEP_MANIFEST)


def _run_manifest(sweep_dir: Path, run_id: str) -> dict:
    return read_json(sweep_dir / "runs" / run_id / "manifest.json")


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory) -> Path:
    """The four-run sweep, one run after another in this process (the default executor)."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    run_sweep(load_config(None, GRID), out=out)
    return out


# ---------------------------------------------------------------- planning and config errors
def test_plan_is_every_grid_point_times_every_seed_with_stable_ids():
    config = load_config(None, [*TINY, "sweep.grid.feedback.rule=[static, retention]",
                                "sweep.grid.loop.type=[retrain, incremental]", "sweep.seeds=[3, 4]"])
    runs = plan_sweep(config)
    assert len(runs) == 8
    assert runs[0].run_id == "rule-static_type-retrain_seed-3"
    assert {(r.point["feedback.rule"], r.point["loop.type"], r.seed) for r in runs} == {
        (rule, loop, seed) for rule in ("static", "retention")
        for loop in ("retrain", "incremental") for seed in (3, 4)}
    for run in runs:
        assert run.config.feedback.rule == run.point["feedback.rule"]
        assert run.config.loop.type == run.point["loop.type"]
        assert run.config.seed == run.seed and run.config.seeds == [] and run.config.sweep.grid == {}
    assert [r.run_id for r in plan_sweep(config)] == [r.run_id for r in runs]


def test_run_ids_are_safe_file_names_and_unique_for_awkward_values(tmp_path):
    model = tmp_path / "up one" / "x"  # a model folder must exist to be planned
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    awkward = f"{tmp_path}/../{tmp_path.name}/up one/x"  # dots, slashes and a space
    config = load_config(None, [*TINY, f"sweep.grid={{model.name: ['{awkward}', tiny-random], "
                                "loop.initial_shares: [null, {concise: 1, detailed: 3}]}"])
    ids = [run.run_id for run in plan_sweep(config)]
    assert len(set(ids)) == len(ids) == 4
    for run_id in ids:
        assert not run_id.startswith(".") and "/" not in run_id and " " not in run_id
        assert len(run_id) <= 120
    assert "name-tiny-random_initial_shares-null_seed-0" in ids


SWEEP_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEP_CONFIGS, ids=[p.name for p in SWEEP_CONFIGS])
def test_shipped_sweep_configs_plan_at_least_four_tiny_runs(path):
    runs = plan_sweep(load_config(path))
    assert len(runs) >= 4
    assert {run.config.model.name for run in runs} == {"tiny-random"}


BAD_SWEEPS = [
    (["sweep.grid={feedback.rule: static}"], "sweep.grid.feedback.rule = 'static': Input should be a valid list"),
    (["sweep.grid={feedback.rule: []}"], "axis 'feedback.rule' lists no values"),
    (["sweep.grid={feedback.rule: [static, static]}"], "axis 'feedback.rule' lists 'static' twice"),
    (["sweep.grid={seed: [1, 2]}"], "axis 'seed' cannot be swept (use sweep.seeds)"),
    (["sweep.grid={feedback.rul: [static]}"], "unknown field 'feedback.rul'; valid:"),
    (["sweep.grid={loop.generations: [1, 0]}"],
     "[sweep run loop.generations=0, seed=0]: loop.generations = 0: Input should be greater than"),
    (["sweep.grid={feedback.rule: [static, nonsense]}"],
     "[sweep run feedback.rule=\"nonsense\", seed=0]: feedback.rule: unknown feedback rule 'nonsense'; "
     "valid:"),
    (["sweep.seeds=[1, 1]"], "sweep.seeds = [1, 1]: seeds must be distinct"),
    (["seeds=[0, 1]", "sweep.seeds=[2]"], "seeds = [0, 1] and sweep.seeds = [2] are both set"),
    (["sweep.executor=slurm"], "sweep.executor = 'slurm': unknown executor; valid: local, ray"),
    (["sweep.max_parallel=0"], "sweep.max_parallel = 0: Input should be greater than or equal to 1"),
    (["sweep.address=auto"], "sweep.address = 'auto': needs executor 'ray', not 'local'"),
    (["sweep.resources_per_run.gpus=1"],
     "sweep.resources_per_run = {\"gpus\": 1}: gpus = 1 needs executor 'ray'"),
    (["sweep.resources_per_run.cpus=0", "sweep.executor=ray"],
     "sweep.resources_per_run.cpus = 0: Input should be greater than 0"),
    (["sweep.workers=2"], "unknown field 'sweep.workers'; valid: address, executor, grid"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_SWEEPS)
def test_bad_sweep_values_give_one_line_errors_naming_the_field(tmp_path, overrides, expected):
    with pytest.raises(ConfigError) as info:
        run_sweep(load_config(None, [*TINY, *overrides]), out=tmp_path / "sweep")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "sweep").exists(), "nothing is written before the config is valid"


# ---------------------------------------------------------------- the local executor
def test_sweep_merges_every_run_into_one_tidy_table(reference_sweep):
    manifest = _manifest(reference_sweep)
    assert manifest["status"] == "completed"
    assert [run["id"] for run in manifest["runs"]] == RUN_IDS
    assert all(run["status"] == "completed" and run["attempts"] == 1 for run in manifest["runs"])
    merged = pd.read_parquet(reference_sweep / SWEEP_METRICS)
    assert list(merged.columns)[:2 + len(METRIC_COLUMNS)] == ["run", "feedback.rule", *METRIC_COLUMNS]
    for run in manifest["runs"]:
        own = pd.read_parquet(reference_sweep / run["dir"] / "metrics.parquet")
        rows = merged[merged["run"] == run["id"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[own.columns], own)
        assert set(rows["feedback.rule"]) == {run["point"]["feedback.rule"]}
        assert set(rows["seed"]) == {run["seed"]}
    assert (reference_sweep / "report.html").is_file()


def test_running_a_finished_sweep_again_repeats_nothing(reference_sweep):
    before = {run_id: _run_manifest(reference_sweep, run_id) for run_id in RUN_IDS}
    result = run_sweep(load_config(None, GRID), out=reference_sweep)
    assert not result.failed
    assert {run_id: _run_manifest(reference_sweep, run_id) for run_id in RUN_IDS} == before
    assert _manifest(reference_sweep)["resumes"] == 1


def test_a_different_sweep_in_the_same_directory_is_refused(reference_sweep):
    with pytest.raises(RunStoreError, match="holds a different sweep"):
        run_sweep(load_config(None, [*GRID, "loop.queries_per_generation=9"]), out=reference_sweep)


def test_a_failing_run_is_reported_with_its_error_and_the_rest_finish(tmp_path):
    out = tmp_path / "sweep"
    # A folder that passes the setup check (it has a config.json) but holds no model,
    # so the run fails only when it loads the model.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    config = load_config(None, [*TINY, f"sweep.grid={{model.name: [{broken}, tiny-random]}}"])
    result = run_sweep(config, out=out)
    failed, done = result.runs
    assert failed["status"] == "failed" and "broken-model" in failed["error"]
    assert "\n" not in failed["error"]
    assert done["status"] == "completed"
    assert [run["id"] for run in result.failed] == [failed["id"]]
    assert _manifest(out)["status"] == "failed"
    assert _manifest(out)["runs"][0]["error"] == failed["error"]
    assert set(pd.read_parquet(out / SWEEP_METRICS)["run"]) == {done["id"]}

    again = run_sweep(config, out=out)  # retries the failed run only
    assert [run["attempts"] for run in again.runs] == [2, 1]
    assert again.runs[0]["status"] == "failed"


@pytest.mark.subprocess
def test_cli_reports_failed_runs_with_exit_code_1_and_bad_flags_with_exit_code_2(tmp_path):
    app = typer.Typer()
    app.command()(sweep)
    app.command("noop")(lambda: None)  # two commands, so `sweep` is called by name
    config = tmp_path / "sweep.yaml"
    config.write_text("sweep:\n  grid:\n    model.name: [./missing-a, ./missing-b]\n")
    runner = CliRunner()

    # A model that does not resolve is refused while the sweep is planned, before any run.
    result = runner.invoke(app, ["sweep", str(config), "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code == 2, result.output
    assert "model.name" in result.output and "./missing-a" in result.output
    assert not (tmp_path / "s").exists()

    broken = []  # folders that resolve, but fail when loaded: the runs fail
    for name in ("broken-a", "broken-b"):
        broken.append(tmp_path / name)
        broken[-1].mkdir()
        (broken[-1] / "config.json").write_text("{}")
    config.write_text(f"sweep:\n  grid:\n    model.name: [{broken[0]}, {broken[1]}]\n")
    result = runner.invoke(app, ["sweep", str(config), "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code == 1, result.output
    assert "2 of 2 runs failed" in result.output

    result = runner.invoke(app, ["sweep", str(config), "--executor", "slurm", "-q"])
    assert result.exit_code == 2
    assert "sweep.executor = 'slurm': unknown executor; valid: local, ray" in result.output
    result = runner.invoke(app, ["sweep", str(config), "--executor", "local", "--address", "auto"])
    assert result.exit_code == 2
    assert "sweep.address = 'auto': needs executor 'ray'" in result.output


# ---------------------------------------------------------------- kill and resume
@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_sweep_resumes_without_losing_or_repeating_a_run(reference_sweep, tmp_path):
    out = tmp_path / "killed"
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    # Two worker processes, so the kill lands while runs are in flight in both.
    command = [sys.executable, "-m", "biasloop.cli_sweep", str(config), "--out", str(out),
               "--max-parallel", "2", "--quiet", *GRID]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill once one run has finished and another is part-way through its own run directory.
    deadline = time.time() + 600
    while process.poll() is None and time.time() < deadline:
        if (out / SWEEP_MANIFEST).exists():
            finished = [run for run in _manifest(out)["runs"] if run["status"] == "completed"]
            part_way = [run_id for run_id in RUN_IDS
                        if (out / "runs" / run_id / "manifest.json").exists()
                        and _run_manifest(out, run_id)["status"] == "running"]
            if finished and part_way:
                break
        time.sleep(0.05)
    assert process.poll() is None, f"sweep ended before it could be killed: {process.stderr.read()}"
    workers = psutil.Process(process.pid).children(recursive=True)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"workers outlived the killed sweep: {alive}"

    killed = _manifest(out)
    assert killed["status"] == "running"
    finished = {run["id"] for run in killed["runs"] if run["status"] == "completed"}
    in_flight = {run["id"] for run in killed["runs"] if run["status"] == "running"}
    assert 0 < len(finished) < len(RUN_IDS) and in_flight
    # A run may have finished its own directory just before the kill, unseen by the sweep.
    on_disk = {run_id: _run_manifest(out, run_id) for run_id in RUN_IDS
               if (out / "runs" / run_id / "manifest.json").exists()}
    done_at_kill = {run_id for run_id, own in on_disk.items() if own["status"] == "completed"}
    cut_off = set(on_disk) - done_at_kill
    assert finished <= done_at_kill and cut_off
    before = {run_id: on_disk[run_id] for run_id in done_at_kill}

    result = run_sweep(load_config(None, GRID), out=out)
    assert not result.failed
    manifest = _manifest(out)
    assert manifest["status"] == "completed" and manifest["resumes"] == 1
    assert [run["id"] for run in manifest["runs"]] == RUN_IDS
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(RUN_IDS)
    for run in manifest["runs"]:
        own = _run_manifest(out, run["id"])
        assert own["status"] == "completed"
        if run["id"] in done_at_kill:  # untouched: not run again, not resumed
            assert own == before[run["id"]] and run["attempts"] == 1
        else:  # a cut-off run continues once; an unstarted one starts once
            assert own["resumes"] == (1 if run["id"] in cut_off else 0)
            assert run["attempts"] == (2 if run["id"] in in_flight else 1)
    # Nothing lost, nothing doubled: the same table as the sweep that was never killed.
    pd.testing.assert_frame_equal(pd.read_parquet(out / SWEEP_METRICS),
                                  pd.read_parquet(reference_sweep / SWEEP_METRICS))


# ---------------------------------------------------------------- the Ray executor
HEAD = """
import signal, sys, time
import ray
ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2)
print(ray.get_runtime_context().gcs_address, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit runs ray.shutdown()
while True:
    time.sleep(1)
"""


@pytest.fixture
def ray_cluster(monkeypatch):
    """A real two-CPU Ray cluster in its own process; yields its address, stops it after."""
    # Token authentication on both ends: a cluster started by ray.init() uses it, and a
    # driver connecting by address only sends the token when asked to.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    pytest.importorskip("ray", reason="the ray executor needs `pip install 'ray[default]'`")
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdout=subprocess.PIPE, text=True)
    cluster: list[psutil.Process] = []
    try:
        address = head.stdout.readline().strip()
        assert address, "the Ray head did not start"
        cluster = psutil.Process(head.pid).children(recursive=True)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        for proc in psutil.wait_procs(cluster, timeout=30)[1]:
            proc.kill()  # only processes of the cluster this fixture started


@pytest.mark.slow
def test_ray_executor_on_a_local_cluster_gives_the_same_table_as_local(reference_sweep, ray_cluster,
                                                                       tmp_path):
    out = tmp_path / "ray"
    config = load_config(None, [*GRID, "sweep.executor=ray", f"sweep.address='{ray_cluster}'",
                                "sweep.resources_per_run.cpus=1", "sweep.report=false"])
    result = run_sweep(config, out=out)
    assert not result.failed, result.failed
    manifest = _manifest(out)
    assert manifest["executor"] == "ray" and manifest["status"] == "completed"
    assert [run["id"] for run in manifest["runs"]] == RUN_IDS
    pd.testing.assert_frame_equal(pd.read_parquet(out / SWEEP_METRICS),
                                  pd.read_parquet(reference_sweep / SWEEP_METRICS))
