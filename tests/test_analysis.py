"""The misalignment analysis: formulas against hand computations, and `biasloop analyze` end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from biasloop.analysis import distribution, group_data, values
from biasloop.cli import app
from biasloop.config import load_config
from biasloop.errors import DataError
from biasloop.io import read_json, read_jsonl
from biasloop.runner.experiment import start_run

# --------------------------------------------------------------------------- values


def test_js_distance_matches_hand_computation():
    reference = values.ValueReference(
        name="toy",
        items=(values.ReferenceItem(item="a", prompts=("p",), options=(" x", " y"),
                                    shares=(1.0, 0.0)),),
    )
    table = values.value_misalignment([np.array([0.5, 0.5])], reference)
    mixture = np.array([0.75, 0.25])
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = 1.0 * math.log2(1.0 / mixture[0])
    assert table["js_distance"].iloc[0] == pytest.approx(math.sqrt(0.5 * kl_p + 0.5 * kl_q))
    assert list(table["option"]) == ["x", "y"]


def test_builtin_reference_is_winogender_labour_statistics():
    reference = values.load_reference("winogender-occupations")
    nurse = next(i for i in reference.items if i.item == "nurse")
    assert nurse.options == (" she", " he")
    assert nurse.shares[0] > 0.85  # BLS: about 90 % of nurses are women
    assert len(reference.items) >= 50


def test_csv_reference_normalises_shares_and_names_bad_lines(tmp_path):
    good = tmp_path / "survey.csv"
    good.write_text(
        "item,prompt,option,share\n"
        "q1,Is tax fair? Answer:, yes,30\nq1,Is tax fair? Answer:, no,10\n"
    )
    reference = values.load_reference(str(good))
    assert reference.items[0].shares == pytest.approx((0.75, 0.25))
    bad = tmp_path / "bad.csv"
    bad.write_text("item,prompt,option,share\nq1,P, yes,lots\nq1,P, no,1\n")
    with pytest.raises(DataError, match=r"bad.csv:2: share 'lots' is not a number"):
        values.load_reference(str(bad))
    with pytest.raises(DataError, match="missing column"):
        (tmp_path / "cols.csv").write_text("item,option\n")
        values.load_reference(str(tmp_path / "cols.csv"))


def test_model_distribution_is_the_softmax_of_logliks(tiny_backend):
    reference = values.ValueReference(
        name="toy",
        items=(values.ReferenceItem(item="a", prompts=("The nurse said that",),
                                    options=(" she", " he", " they"), shares=(0.4, 0.4, 0.2)),),
    )
    (model,) = values.model_distributions(tiny_backend, reference)
    logliks = np.array(tiny_backend.loglik(["The nurse said that"] * 3, [" she", " he", " they"]))
    expected = np.exp(logliks - logliks.max())
    assert model == pytest.approx(expected / expected.sum())


# --------------------------------------------------------------------------- group data


def test_proportion_test_is_pearsons_chi_square():
    table, summary = group_data.proportion_test(
        {"female": 30, "male": 10, "none": 5}, {"female": 0.5, "male": 0.5}
    )
    assert summary["chi2"] == pytest.approx(10.0)  # (30-20)²/20 + (10-20)²/20
    assert summary["p_value"] == pytest.approx(0.001565, rel=1e-3)
    assert summary["texts_none"] == 5
    assert summary["total_variation"] == pytest.approx(0.25)
    assert list(table["detected_share"]) == pytest.approx([0.75, 0.25])


# --------------------------------------------------------------------------- distribution


def test_mmd_matches_hand_computation_and_detects_a_shift():
    generator = np.random.default_rng(0)
    x = generator.normal(size=(6, 3))
    y = generator.normal(size=(5, 3)) + 3.0
    mmd2, p_value = distribution.mmd_test(x, y, permutations=200, seed=1)
    pooled = np.vstack([x, y])
    distances = [np.linalg.norm(a - b) for i, a in enumerate(pooled) for b in pooled[i + 1:]]
    sigma = np.median(distances)

    def k(a, b):
        return math.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))

    xx = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / 30
    yy = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / 20
    xy = sum(k(a, b) for a in x for b in y) / 30
    assert mmd2 == pytest.approx(xx + yy - 2 * xy)
    assert p_value < 0.05
    same = generator.normal(size=(20, 3)), generator.normal(size=(20, 3))
    assert distribution.mmd_test(*same, permutations=200, seed=1)[1] > 0.05


def test_classifier_test_separates_shifted_sets_only():
    generator = np.random.default_rng(0)
    x, y = generator.normal(size=(30, 4)), generator.normal(size=(30, 4)) + 2.0
    auc, p_value = distribution.classifier_test(x, y, permutations=30, seed=0)
    assert auc > 0.9 and p_value < 0.05
    auc_same, _ = distribution.classifier_test(
        x, generator.normal(size=(30, 4)), permutations=30, seed=0
    )
    assert auc_same < 0.8


def test_sentence_embeddings_are_unit_length_and_meaningful():
    vectors = distribution.embed(["A nurse helps patients.", "A nurse cares for the sick.",
                                  "The stock market fell today."])
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


# --------------------------------------------------------------------------- end to end

MITIGATED = [
    "name=mitigated", "study=inheritance", "model.name=tiny-random", "run.progress=false",
    "generation.batch_size=16", "training.batch_size=8", "training.max_length=64",
    "metrics.bootstrap_samples=20", "inheritance.bias_ratios=[0, 0.5]",
    "inheritance.bias_types=[contrastive_implicit]", "inheritance.target_groups=[female]",
    "inheritance.evaluate_base=false", "inheritance.original.size=8",
    "inheritance.augmentation.max_new_tokens=8", "inheritance.augmentation.temperature=0.0",
    "inheritance.augmentation.min_words=1", "inheritance.evaluation_items=2",
    "inheritance.evaluations=[occupation, winogender]", "inheritance.significance.resamples=20",
]


@pytest.fixture(scope="module")
def mitigated_run(tmp_path_factory) -> Path:
    config = load_config(None, MITIGATED).model_copy(
        update={"conditions": {"none": {"mitigation.name": "none"},
                               "mask": {"mitigation.name": "mask"},
                               "loss": {"mitigation.name": "loss"}}}
    )
    from biasloop.config.load import validate_config

    config = validate_config(config.model_dump(mode="json"))
    return start_run(config, out=tmp_path_factory.mktemp("mitigated") / "run").root


def test_conditions_share_the_pool_and_identical_fine_tunes(mitigated_run):
    seed_dir = "seed-0"
    none = mitigated_run / "conditions" / "none" / seed_dir
    mask = mitigated_run / "conditions" / "mask" / seed_dir
    pool = "round-1/augment/contrastive_implicit/pool.json"
    assert read_json(mask / pool)["copied_from"] == "none"
    assert read_json(mask / "round-1/ratio-0/none/train.json")["copied_from"] == "none"
    trained = "round-1/ratio-0.5/contrastive_implicit"
    assert "copied_from" not in read_json(mask / trained / "train.json")
    plain = [r for r in read_jsonl(none / trained / "train.jsonl") if r["source"] == "synthetic"]
    masked = [r for r in read_jsonl(mask / trained / "train.jsonl") if r["source"] == "synthetic"]
    assert [r["id"] for r in plain] == [r["id"] for r in masked]  # the same augmented texts
    assert any("[MASK]" in r["prompt"] for r in masked)  # names in contrastive prompts
    assert not any("[MASK]" in r["prompt"] for r in plain)


def test_analyze_writes_tables_figures_and_a_summary(mitigated_run):
    result = CliRunner().invoke(
        app, ["analyze", str(mitigated_run), "--neutral-texts", "6", "--permutations", "50",
              "--classifier-permutations", "10", "-q"],
    )
    assert result.exit_code == 0, result.output
    out = mitigated_run / "analysis"
    for table in ("values", "group_data", "group_data_tests", "distribution",
                  "augmented_groups", "mitigations", "mitigations_across_seeds"):
        assert not pd.read_parquet(out / f"{table}.parquet").empty, table
    figures = sorted((out / "figures").glob("*.png"))
    assert any(f.name.startswith("distribution_seed-0") for f in figures)
    assert all(f.stat().st_size > 5000 for f in figures)
    comparison = pd.read_parquet(out / "mitigations.parquet")
    assert set(comparison["condition"]) == {"mask", "loss"}
    assert comparison["p_value"].dropna().between(0, 1).all()
    assert comparison["p_value"].notna().sum() >= len(comparison) // 2
    values_table = pd.read_parquet(out / "values.parquet")
    assert values_table["js_distance"].between(0, 1).all()
    # base and γ = 0 models are shared by all three conditions: analysed once each
    assert len([p for p in (out / "models").glob("*.json") if not p.name.startswith(".")]) == 5
    summary = (out / "summary.md").read_text()
    assert "## Mitigations against `none`" in summary and "| all " in summary


def test_analyze_resumes_from_cached_model_results(mitigated_run):
    out = mitigated_run / "analysis" / "models"
    if not out.exists():
        CliRunner().invoke(app, ["analyze", str(mitigated_run), "--neutral-texts", "6", "-q"])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("[!.]*.json")}
    result = CliRunner().invoke(
        app, ["analyze", str(mitigated_run), "--neutral-texts", "6", "--permutations", "20",
              "--classifier-permutations", "10", "-q"],
    )
    assert result.exit_code == 0, result.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("[!.]*.json")} == stamps


def test_analyze_refuses_a_loop_run_in_one_line(tmp_path):
    store = start_run(load_config(None, [
        "name=loop", "model.name=tiny-random", "task.name=preference",
        "task.eval_queries_per_group=2", "generation.max_new_tokens=4", "loop.generations=1",
        "loop.queries_per_generation=4", "metrics.bootstrap_samples=0",
        "metrics.perplexity_texts=0", "run.progress=false"]), out=tmp_path / "loop")
    result = CliRunner().invoke(app, ["analyze", str(store.root)])
    assert result.exit_code == 2
    assert "analyze reads bias inheritance runs; this run's study is 'scpl'" in result.output
