"""Faults: kills at many points, full or read-only disks, and corrupted files.

A run killed (SIGKILL) or stopped (SIGTERM) anywhere and then resumed must write
exactly the records and metrics of an uninterrupted run. A failed write must leave
the previous state intact and say so in one line. A file changed after it was
written must stop ``resume`` with a one-line error naming it.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from biasloop.cli import app
from biasloop.config import load_config
from biasloop.errors import RunStoreError
from biasloop.io import CHECKSUMS, write_json
from biasloop.runner.experiment import resume_run, start_run
from biasloop.store import LOCK_FILE, RunStore, read_json

TINY = [
    "name=faults", "model.name=tiny-random", "task.name=preference",
    "task.eval_queries_per_group=4", "generation.max_new_tokens=4", "generation.batch_size=4",
    "training.batch_size=4", "loop.generations=2", "loop.queries_per_generation=8",
    "metrics.bootstrap_samples=20", "metrics.perplexity_texts=2", "run.progress=false",
]
GEN = "conditions/main/seed-0/gen-{:03d}"
# Kill points: "when this path appears, wait a seeded random delay, then signal".
# They span model loading, generation, evaluation, metric writing, training, model
# saving, and the final merge, plots and report. Signals alternate SIGKILL / SIGTERM.
KILL_POINTS = [
    ("manifest.json", 2.5), (f"{GEN.format(0)}/served.jsonl", 0.1),
    (f"{GEN.format(0)}/candidates/r0/00000.jsonl", 0.1), (f"{GEN.format(0)}/eval/00000.jsonl", 0.1),
    (f"{GEN.format(0)}/train.jsonl", 0.4), (f"{GEN.format(0)}/model", 0.02),
    (f"{GEN.format(1)}/candidates/r0/00001.jsonl", 0.1), (f"{GEN.format(1)}/train.jsonl", 0.3),
    (f"{GEN.format(2)}/eval/00000.jsonl", 0.1), ("metrics.parquet", 0.05), ("plots", 0.3),
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def records(run_dir: Path) -> dict[str, str]:
    """The run's data: every JSONL file, state and curation file, by relative path."""
    return {
        str(path.relative_to(run_dir)): path.read_text()
        for pattern in ("*.jsonl", "state.json", "curation.json")
        for path in sorted(run_dir.rglob(pattern))
        if not any(part.startswith(".") for part in path.relative_to(run_dir).parts)
    }


def assert_same_results(run_dir: Path, reference: Path) -> None:
    assert records(run_dir) == records(reference)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "metrics.parquet"),
                                  pd.read_parquet(reference / "metrics.parquet"))
    assert read_json(run_dir / "manifest.json")["status"] == "completed"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    start_run(load_config(None, TINY), out=out)
    return out


def _command(out: Path, config: Path, resume: bool) -> list[str]:
    if resume:
        return [sys.executable, "-m", "biasloop.cli", "resume", "--quiet", str(out)]
    return [sys.executable, "-m", "biasloop.cli", "run", "--quiet", "--out", str(out), str(config), *TINY]


def kill_chain(tmp_path: Path, points, seed: int) -> dict[str, object]:
    """Run; at each point send SIGKILL or SIGTERM (alternating) and resume; resume to the end."""
    out, config = tmp_path / "run", tmp_path / "empty.yaml"
    config.write_text("{}\n")
    generator = random.Random(seed)
    landed = {signal.SIGKILL: 0, signal.SIGTERM: 0}
    resumes = 0
    for index, (relative, max_delay) in enumerate(points):
        if (out / relative).exists():
            continue  # already passed while the previous segment ran
        signum = signal.SIGKILL if index % 2 == 0 else signal.SIGTERM
        resume = out.exists()
        leftovers = set(out.rglob(".*tmp*"))  # SIGKILLed segments may leave temporary files
        process = subprocess.Popen(_command(out, config, resume=resume),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
        resumes += resume
        deadline = time.time() + 120
        while not (out / relative).exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(generator.uniform(0, max_delay))
        if process.poll() is not None:
            continue  # the run finished first
        process.send_signal(signum)
        landed[signum] += 1
        _, stderr = process.communicate(timeout=120)
        if signum == signal.SIGKILL:
            assert process.returncode in (0, -signal.SIGKILL), stderr
        elif process.returncode == 143:
            # Stopped cleanly (exit 128 + SIGTERM): one line, manifest marked, temp files removed.
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and "run stopped by SIGTERM" in lines[0], stderr
            assert read_json(out / "manifest.json")["status"] == "interrupted"
            assert set(out.rglob(".*tmp*")) <= leftovers, "SIGTERM left temporary files"
        else:  # the signal came after the run's work was done (default handler restored)
            assert read_json(out / "manifest.json")["status"] == "completed", stderr
    if read_json(out / "manifest.json")["status"] != "completed":
        finished = subprocess.run(_command(out, config, resume=True), capture_output=True, text=True, check=False,
                                  env=ENV, timeout=300)
        assert finished.returncode == 0, finished.stderr
        resumes += 1
    return {"kills": landed[signal.SIGKILL], "stops": landed[signal.SIGTERM], "resumes": resumes,
            "out": out}


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_and_sigterm_at_many_points_then_resume_equals_uninterrupted_run(reference_run, tmp_path):
    result = kill_chain(tmp_path, KILL_POINTS, seed=9)
    print(f"{result['kills']} SIGKILL + {result['stops']} SIGTERM landed, {result['resumes']} resumes")
    assert result["kills"] >= 5 and result["stops"] >= 5  # the last point may race the run's end
    assert_same_results(result["out"], reference_run)
    assert read_json(result["out"] / "manifest.json")["resumes"] == result["resumes"]


# ------------------------------------------------------------------ full or read-only disk
def _failing_fsync(monkeypatch, *, after: int, code: int) -> list[int]:
    """Make the (after+1)-th fsync of a regular file fail with ``code``, and every one after."""
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(fd)
            if len(calls) > after:
                raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_failed_write_keeps_the_old_file_and_says_why_in_one_line(tmp_path, monkeypatch, code):
    target = tmp_path / "state.json"
    write_json(target, {"version": 1})
    _failing_fsync(monkeypatch, after=0, code=code)
    with pytest.raises(RunStoreError) as info:
        write_json(target, {"version": 2})
    assert str(info.value) == f"cannot write {str(target)!r}: {os.strerror(code)}"
    assert read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize(("code", "seed"), [(errno.ENOSPC, 1), (errno.EROFS, 2)])
def test_disk_failure_mid_run_is_one_cli_line_and_resume_completes_it(
        reference_run, tmp_path, monkeypatch, code, seed):
    out, config = tmp_path / "run", tmp_path / "empty.yaml"
    config.write_text("{}\n")
    after = random.Random(seed).randrange(3, 40)  # writes that succeed before the disk fails
    _failing_fsync(monkeypatch, after=after, code=code)
    result = CliRunner().invoke(app, ["run", "--quiet", "--out", str(out), str(config), *TINY])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), result.output
    assert lines[0].endswith(os.strerror(code)), lines[0]
    monkeypatch.undo()
    assert RunStore(out).verify() > 0  # every file written before the failure is whole
    resume_run(out)
    assert_same_results(out, reference_run)


# ------------------------------------------------------------------ checksums
def test_every_finished_file_of_a_run_has_a_checksum(reference_run):
    listed = {
        (listing.parent / name).resolve()
        for listing in reference_run.rglob(CHECKSUMS)
        for name in read_json(listing)
    }
    written = {p.resolve() for p in reference_run.rglob("*")
               if p.is_file() and p.name not in (CHECKSUMS, "run.log", LOCK_FILE)}
    assert written - listed == set()
    assert RunStore(reference_run).verify() == len(written)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
@pytest.mark.parametrize("relative", [
    f"{GEN.format(0)}/served.jsonl", f"{GEN.format(1)}/metrics.parquet",
    f"{GEN.format(0)}/model/adapter_model.safetensors", "manifest.json",
])
def test_resume_names_a_corrupted_or_truncated_file(reference_run, tmp_path, relative, damage):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    path = copy / relative
    data = path.read_bytes()
    if damage == "flip":
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    else:
        data = data[: len(data) // 2] if damage == "truncate" else b""
    path.write_bytes(data)
    with pytest.raises(RunStoreError) as info:
        resume_run(copy)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{str(path)!r} was changed or truncated"), message
    assert path.read_bytes() == data  # the check only reads: nothing was redone over it


def test_a_start_killed_before_its_manifest_can_start_again(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / CHECKSUMS).write_text("{}\n")
    (out / ".manifest.json.abc123.tmp").write_text('{"half": ')
    RunStore(out).create(config={"name": "x"}, config_hash="abc", seed=0)
    assert read_json(out / "manifest.json")["status"] == "running"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunStoreError, match="is not empty"):
        RunStore(tmp_path / "other").create(config={}, config_hash="abc", seed=0)


@pytest.mark.parametrize("study_file", [f"{GEN.format(1)}/metrics.parquet", f"{GEN.format(0)}/served.jsonl"])
def test_a_garbled_unit_without_its_checksums_is_recomputed_on_resume(reference_run, tmp_path,
                                                                       study_file):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    for listing in copy.rglob(CHECKSUMS):  # nothing left to say the file was changed
        listing.unlink()
    path = copy / study_file
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    write_json(copy / "manifest.json", {**read_json(copy / "manifest.json"), "status": "failed"})
    resume_run(copy)
    assert_same_results(copy, reference_run)


def test_ls_reports_a_run_with_a_truncated_table_as_damaged_and_lists_the_rest(reference_run,
                                                                              tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(reference_run, runs / "good")
    shutil.copytree(reference_run, runs / "bad")
    table = runs / "bad" / "metrics.parquet"
    table.write_bytes(table.read_bytes()[:100])
    result = CliRunner().invoke(app, ["ls", str(runs)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "damaged" in result.output and "metrics.parquet" in result.output
    assert "completed" in result.output  # the good run is still listed


def test_a_deleted_model_file_is_redone_on_resume(reference_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    adapter = copy / GEN.format(0) / "model" / "adapter_model.safetensors"
    original = adapter.read_bytes()
    adapter.unlink()
    write_json(copy / "manifest.json", {**read_json(copy / "manifest.json"), "status": "failed"})
    resume_run(copy)
    assert adapter.read_bytes() == original  # retrained, seeded: the same weights
    assert_same_results(copy, reference_run)


def test_a_second_process_on_a_busy_run_folder_is_refused_in_one_line(reference_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    # Another process holds the folder (a live `run` or `resume`).
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from biasloop.store import RunStore\n"
         "with RunStore(sys.argv[1]).locked('resume'):\n"
         "    print('held', flush=True); time.sleep(60)", str(copy)],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = read_json(copy / "manifest.json")
        for command in (["resume", str(copy)], ["report", str(copy)]):
            result = CliRunner().invoke(app, command)
            assert result.exit_code != 0
            line = result.output.strip()
            assert "is in use by another biasloop process" in line and "\n" not in line, line
        assert read_json(copy / "manifest.json") == before  # nothing was touched
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the OS lock went with it, so nothing is stale.
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
