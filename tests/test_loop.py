"""The SCPL loop end to end on tiny-random: outputs, determinism, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from biasloop.config import load_config
from biasloop.runner.experiment import resume_run, start_run
from biasloop.store import RunStore, read_json

SMOKE = [
    "name=smoke",
    "model.name=tiny-random",
    "task.name=preference",
    "task.eval_queries_per_group=6",
    "generation.max_new_tokens=8",
    "generation.batch_size=4",
    "training.batch_size=4",
    "loop.generations=2",
    "loop.queries_per_generation=16",
    "metrics.bootstrap_samples=50",
    "metrics.perplexity_texts=4",
    "run.progress=false",
]


def _records(run_dir: Path) -> dict[str, str]:
    """Every data file of a run (JSONL records and the metric table), by relative path."""
    files = {}
    for path in sorted(run_dir.rglob("*.jsonl")):
        files[str(path.relative_to(run_dir))] = path.read_text()
    for path in sorted(run_dir.rglob("state.json")):
        files[str(path.relative_to(run_dir))] = path.read_text()
    return files


def _metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    start_run(load_config(None, SMOKE), out=out)
    return out


def test_run_writes_manifest_metrics_and_one_folder_per_generation(reference_run):
    manifest = read_json(reference_run / "manifest.json")
    assert manifest["status"] == "completed"
    assert manifest["ended_at"] and manifest["config_hash"]
    folder = reference_run / "conditions" / "main" / "seed-0"
    assert sorted(p.name for p in folder.iterdir()) == ["gen-000", "gen-001", "gen-002"]
    for t in (0, 1):
        gen = folder / f"gen-{t:03d}"
        for name in ("served.jsonl", "synthetic.jsonl", "train.jsonl", "curation.json", "train.json",
                     "metrics.parquet", "state.json"):
            assert (gen / name).exists(), name
        assert any((gen / "model").iterdir())
    metrics = _metrics(reference_run)
    assert list(metrics.columns) == ["generation", "condition", "seed", "group", "metric", "value",
                                     "ci_low", "ci_high", "n"]
    names = set(metrics["metric"])
    for name in ("quality", "disparate_bias", "disparate_ratio", "preference_bias", "majority_lean",
                 "group_share", "distinct_2", "perplexity", "mean_length", "acceptance_rate",
                 "fallback_uniform_shares", "fallback_uniform_model_attributes",
                 "fallback_uniform_reference_attributes"):
        assert name in names, name
    # Every estimate carries the number of responses it rests on.
    quality = metrics[metrics["metric"] == "quality"]
    assert (quality[quality["group"] != ""]["n"] == 6).all()  # task.eval_queries_per_group
    assert (quality[quality["group"] == ""]["n"] == 12).all()  # two groups
    assert metrics[metrics["metric"] == "group_share"]["n"].isna().all()  # a state, not an estimate
    assert sorted(metrics["generation"].unique()) == [0, 1, 2]
    assert (metrics["ci_low"] <= metrics["value"] + 1e-9).all()
    assert (metrics["value"] <= metrics["ci_high"] + 1e-9).all()


def test_served_records_follow_the_example_schema(reference_run):
    synthetic = (reference_run / "conditions/main/seed-0/gen-000/synthetic.jsonl").read_text().splitlines()
    import json

    record = json.loads(synthetic[0])
    assert set(record) == {"id", "group", "prompt", "response", "source", "generation", "meta"}
    assert record["source"] == "synthetic" and record["generation"] == 0


def test_by_default_every_training_record_carries_its_group_in_field_and_prompt(reference_run):
    import json

    from biasloop.tasks.preference import CUES

    # Only defaults here (λ = 1, group_cue on): the causal path of SPEC section 2.
    for t in (0, 1):
        gen = reference_run / f"conditions/main/seed-0/gen-{t:03d}"
        for name in ("served.jsonl", "train.jsonl"):
            records = [json.loads(line) for line in (gen / name).read_text().splitlines()]
            assert records
            for record in records:
                assert record["prompt"].endswith(CUES[record["group"]]), (name, record)


def test_same_seed_gives_identical_data_and_metrics(reference_run, tmp_path):
    again = tmp_path / "again"
    start_run(load_config(None, SMOKE), out=again)
    assert _records(again) == _records(reference_run)
    pd.testing.assert_frame_equal(_metrics(again), _metrics(reference_run))


def test_different_seed_gives_different_data(reference_run, tmp_path):
    other = tmp_path / "other"
    start_run(load_config(None, [*SMOKE, "seed=1"]), out=other)
    served = "conditions/main/seed-0/gen-000/served.jsonl"
    assert (other / "conditions/main/seed-1/gen-000/served.jsonl").read_text() != (
        reference_run / served).read_text()


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_mid_generation_then_resume_equals_uninterrupted_run(reference_run, tmp_path):
    out = tmp_path / "killed"
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    command = [sys.executable, "-m", "biasloop.cli", "run", "--quiet", "--out", str(out),
               str(config), *SMOKE]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill as soon as the second generation has written its first candidate chunk.
    marker = out / "conditions/main/seed-0/gen-001/candidates/r0/00000.jsonl"
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, f"run ended before it could be killed: {process.stderr.read()}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert read_json(out / "manifest.json")["status"] == "running"
    assert not (out / "conditions/main/seed-0/gen-001/train.json").exists()

    resume_run(out)
    assert RunStore(out).manifest()["status"] == "completed"
    assert RunStore(out).manifest()["resumes"] == 1
    assert _records(out) == _records(reference_run)
    pd.testing.assert_frame_equal(_metrics(out), _metrics(reference_run))


def test_conditions_and_seeds_each_get_their_own_rows(tmp_path):
    overrides = [*SMOKE, "loop.generations=1", "seeds=[0, 1]",
                 "conditions={static: {feedback.rule: static}, performative: {feedback.rule: retention}}"]
    store = start_run(load_config(None, overrides), out=tmp_path / "grid")
    metrics = _metrics(store.root)
    assert set(metrics["condition"]) == {"static", "performative"}
    assert set(metrics["seed"]) == {0, 1}
    static = metrics[(metrics.condition == "static") & (metrics.metric == "group_share")]
    assert static["value"].tolist() == pytest.approx([0.5] * len(static))


def test_resume_refuses_an_edited_manifest(reference_run, tmp_path):
    import json
    import shutil

    from biasloop.errors import RunStoreError

    copy = tmp_path / "edited"
    shutil.copytree(reference_run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["seed"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    # The manifest's checksum (or, without one, the config hash) gives the edit away.
    with pytest.raises(RunStoreError, match="manifest.json' was changed|does not match the recorded"):
        resume_run(copy)


def test_initial_population_counts_users_in_the_first_state(reference_run):
    state = read_json(reference_run / "conditions" / "main" / "seed-0" / "gen-000" / "state.json")
    # feedback.initial_population (default 100) split by the uniform initial shares.
    assert state["population"] == {"concise": 50.0, "detailed": 50.0}
    assert state["shares"] == {"concise": 0.5, "detailed": 0.5}


def test_fallbacks_are_logged_counted_and_reported(tmp_path, caplog):
    # Everyone leaves after generation 0 (ν = 0); and with 8 new tokens no `detailed`
    # answer reaches τ = 1 (its reward is words / 60), so balanced rejection cannot
    # hold that group to its share. Both fallbacks must be visible.
    overrides = [o for o in SMOKE if not o.startswith("loop.generations")] + [
        "loop.generations=1",
        "loop.queries_per_generation=6",
        "feedback.rule=retention", "feedback.params.retention.alpha=0",
        "feedback.params.retention.beta=0",
        "mitigation.name=balanced_reward_rejection", "mitigation.threshold=1.0",
        "mitigation.candidates=1",
    ]
    with caplog.at_level("WARNING", logger="biasloop"):
        start_run(load_config(None, overrides), out=tmp_path / "run")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "every group has left" in messages
    assert "curation fallback group_dropped" in messages
    metrics = _metrics(tmp_path / "run").set_index(["generation", "metric", "group"])["value"]
    assert metrics[(0, "fallback_uniform_shares", "")] == 0.0
    assert metrics[(1, "fallback_uniform_shares", "")] == 1.0
    rates = read_json(tmp_path / "run" / "conditions" / "main" / "seed-0" / "gen-000"
                      / "curation.json")["acceptance_rate"]
    assert rates["detailed"] == 0.0
    for group, rate in rates.items():
        assert metrics[(0, "fallback_group_dropped", group)] == float(rate == 0.0)
    report = (tmp_path / "run" / "report.html").read_text()
    assert "fallback_uniform_shares" in report and "fallback_group_dropped" in report
