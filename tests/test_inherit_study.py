"""The bias inheritance study end to end on tiny-random, through the runner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from biasloop.config import load_config
from biasloop.inherit.evaluations import default_evaluations
from biasloop.inherit.study import InheritanceRun, Unit, parse_label
from biasloop.runner.experiment import start_run
from biasloop.store import METRIC_COLUMNS, RunStore, read_json, read_jsonl

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "inheritance" / "gender-smoke.yaml"
TYPES = ("contextual_explicit", "contrastive_implicit")
FINE_TUNED = [f"ratio=0.5,type={t},round={r}" for t in TYPES for r in (1, 2)]
REFERENCE = "ratio=0,type=none,round=1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inheritance") / "run"
    start_run(load_config(SMOKE, ["run.progress=false"]), out=out)
    return out


@pytest.fixture(scope="module")
def metrics(run_dir) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "metrics.parquet")


def test_run_completes_with_the_fixed_and_study_columns(run_dir, metrics):
    assert read_json(run_dir / "manifest.json")["status"] == "completed"
    assert list(metrics.columns[: len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    assert {"bias_ratio", "bias_type", "round", "task"} <= set(metrics.columns)


def test_conditions_name_ratio_type_and_round(metrics):
    assert set(metrics["condition"]) == {"base", REFERENCE, *FINE_TUNED}
    for condition, rows in metrics.groupby("condition"):
        parsed = parse_label(condition)
        assert set(rows["round"]) == {parsed["round"]} == set(rows["generation"])
        assert set(rows["bias_type"]) == {parsed["bias_type"]}
        if parsed["bias_ratio"] is not None:
            assert set(rows["bias_ratio"]) == {parsed["bias_ratio"]}


@pytest.mark.parametrize("evaluation", default_evaluations())
def test_every_evaluation_reports_per_group_values_and_gaps_for_every_model(metrics, evaluation):
    rows = metrics[metrics["task"] == evaluation]
    assert set(rows["condition"]) == {"base", REFERENCE, *FINE_TUNED}
    values = rows[~rows["metric"].str.endswith("p_value")]
    per_group = values[(values["group"] != "") & ~values["metric"].str.endswith(("_gap", "_ratio"))]
    assert per_group.groupby("condition")["group"].nunique().min() >= 2
    assert values["metric"].str.endswith("_gap").any()
    overall = values[values["group"] == ""]
    assert not overall.empty
    # A statistic can be undefined (e.g. no salary parsed from the random model): NaN, not an error.
    defined = values.dropna(subset=["value", "ci_low", "ci_high"])
    assert (defined["ci_low"] <= defined["ci_high"] + 1e-9).all()


def test_generation_evaluations_report_parse_failure_rates(metrics):
    for evaluation in ("salary", "story"):
        rates = metrics[
            (metrics["metric"] == f"{evaluation}.parse_failure_rate") & (metrics["group"] == "")
        ]
        assert len(rates) == 6 and rates["value"].between(0, 1).all()


def test_p_values_compare_each_ratio_with_zero_and_groups_with_each_other(metrics):
    tests = metrics[metrics["metric"].str.endswith("p_value")]
    assert tests["value"].dropna().between(0, 1).all()
    versus_zero = tests[tests["metric"].str.contains("_vs_ratio0_")]
    assert set(versus_zero["condition"]) == set(FINE_TUNED)
    assert (versus_zero["metric"] == "occupation.accuracy_vs_ratio0_p_value").any()
    between = tests[tests["metric"] == "hiring.selection_rate_gap_p_value"]
    assert set(between["group"]) == {"gender", "culture", "gender+culture"}
    assert set(between["condition"]) == {"base", REFERENCE, *FINE_TUNED}


def test_mixing_sizes_follow_the_bias_ratio(metrics, run_dir):
    data = metrics[metrics["task"] == "data"].pivot_table(
        index="condition", columns="metric", values="value"
    )
    assert (
        data.loc[REFERENCE, "data.train_size"] == 8
        and data.loc[REFERENCE, "data.augmented_size"] == 0
    )
    for condition in FINE_TUNED:
        assert data.loc[condition, "data.train_size"] == 16
        assert data.loc[condition, "data.realized_bias_ratio"] == pytest.approx(0.5)
    seed_dir = run_dir / "conditions" / "main" / "seed-0"
    original = read_jsonl(seed_dir / "original.jsonl")
    mixed = read_jsonl(seed_dir / "round-1" / "ratio-0.5" / "contextual_explicit" / "train.jsonl")
    assert mixed[:8] == original


def test_augmented_records_keep_type_attribute_target_and_prompt(run_dir):
    seed_dir = run_dir / "conditions" / "main" / "seed-0"
    for bias_type in TYPES:
        chunks = sorted((seed_dir / "round-1" / "augment" / bias_type).glob("chunk-*.jsonl"))
        records = [r for path in chunks for r in read_jsonl(path)]
        assert records
        for record in records:
            meta = record["meta"]
            assert record["source"] == "synthetic" and record["group"] == "female"
            assert meta["bias_type"] == bias_type and meta["attribute"] == "gender"
            assert meta["target_group"] == "female" and meta["written_by"] == "base"
            assert meta["generation_prompt"].startswith(record["prompt"])
    second = read_json(
        seed_dir / "round-2" / "ratio-0.5" / "contrastive_implicit" / "augment" / "pool.json"
    )
    assert second["written_by"] == "ratio=0.5,type=contrastive_implicit,round=1"


def test_plots_show_each_evaluation_against_the_bias_ratio(run_dir):
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    for evaluation in default_evaluations():
        assert {f"{evaluation}.round-1.png", f"{evaluation}.round-2.png"} <= plots


def test_a_finished_study_resumes_without_touching_the_model(run_dir):
    def no_model():
        raise AssertionError("every unit is done; the model must not be needed")

    config = load_config(SMOKE)
    before = (
        (run_dir / "conditions" / "main" / "seed-0" / "base" / "metrics.parquet").stat().st_mtime_ns
    )
    InheritanceRun(
        config=config, condition="main", seed=0, store=RunStore(run_dir), backend=no_model
    ).run()
    assert (
        run_dir / "conditions" / "main" / "seed-0" / "base" / "metrics.parquet"
    ).stat().st_mtime_ns == before


def test_unit_labels_round_trip():
    unit = Unit(round=2, bias_ratio=0.05, bias_type="intersectional_implicit")
    assert parse_label(unit.label()) == {
        "prefix": "",
        "bias_ratio": 0.05,
        "bias_type": "intersectional_implicit",
        "round": 2,
    }
    assert parse_label(Unit(round=0).label("mitigated"))["prefix"] == "mitigated"
    assert parse_label("gen-3") is None
