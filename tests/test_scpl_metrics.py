"""Each SCPL metric pinned to a hand-computed value."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import numpy as np
import pandas as pd

from biasloop.inherit import scoring
from biasloop.metrics import scpl
from biasloop.metrics.aggregate import summarize_seeds
from biasloop.metrics.ranges import metric_range
from biasloop.metrics.stats import bootstrap_interval, mean_ci_across_seeds

ROOT = Path(__file__).resolve().parents[1]


def test_quality_and_disparate_bias_and_ratio():
    qualities = {"a": [1.0, 0.0, 1.0, 1.0], "b": [0.5, 0.0]}
    assert scpl.group_quality(qualities) == {"a": 0.75, "b": 0.25}
    assert scpl.overall_quality(qualities) == pytest.approx(0.5)
    assert scpl.disparate_bias(qualities["a"], qualities["b"]) == pytest.approx(0.5)
    assert scpl.disparate_ratio(qualities["a"], qualities["b"]) == pytest.approx(1 / 3)
    # All-zero groups: 0/0 is parity, the same convention as the inheritance ratio.
    assert scpl.disparate_ratio([0.0], [0.0]) == 1.0
    assert scpl.disparate_ratio([0.0], [0.0]) == scoring.ratio([0.0, 0.0])
    assert scpl.disparate_bias([0.0], [0.0]) == scoring.gap([0.0, 0.0]) == 0.0


def test_preference_bias_is_total_variation_to_reference():
    groups = ["a", "b"]
    model = ["a", "a", "a", "b", None]           # P_model = (3/4, 1/4)
    reference = ["a", "b", "b", "b"]              # P_ref = (1/4, 3/4)
    assert scpl.preference_bias(model, reference, groups) == pytest.approx(0.5)
    assert scpl.majority_lean(model, reference, groups, "a") == pytest.approx(0.5)
    assert scpl.majority_lean(model, reference, groups, "b") == pytest.approx(-0.5)
    assert scpl.preference_bias(reference, reference, groups) == 0.0


def test_attribute_distribution_is_uniform_when_nothing_attributed():
    assert scpl.attribute_distribution([None, None], ["a", "b"]) == {"a": 0.5, "b": 0.5}


def test_distinct_two_length_and_perplexity():
    texts = ["the cat sat", "the cat ran"]        # bigrams: the-cat, cat-sat, the-cat, cat-ran
    assert scpl.distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert scpl.distinct_n(["one"], 2) == 0.0
    assert scpl.mean_length(texts) == 3.0
    assert scpl.perplexity([-2.0, -4.0], [2, 4]) == pytest.approx(math.exp(1.0))


def test_bootstrap_interval_contains_estimate_and_collapses_on_constant_data():
    value, low, high = bootstrap_interval([[0, 1, 0, 1, 1, 0, 1, 1]], np.mean, n_resamples=300,
                                          confidence=0.95, seed=0)
    assert value == pytest.approx(0.625)
    assert low < value < high
    assert bootstrap_interval([[1, 1, 1]], np.mean, n_resamples=300, confidence=0.95,
                              seed=0) == (1.0, 1.0, 1.0)


def test_mean_ci_across_seeds_is_student_t():
    mean, low, high, clipped = mean_ci_across_seeds([1.0, 2.0, 3.0], confidence=0.95)
    # s = 1, n = 3, t_{0.975, 2} = 4.302653
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert not clipped


def test_mean_ci_across_seeds_clips_a_bounded_metric_to_its_range():
    # The sweep case: disparate bias 0.9, 1.0, 0.95 over 3 seeds.
    # mean 0.95, s = 0.05, half = 4.302653 · 0.05 / √3 = 0.124207 -> [0.8258, 1.0742] unclipped
    mean, low, high, clipped = mean_ci_across_seeds([0.9, 1.0, 0.95], bounds=(0.0, 1.0))
    assert mean == pytest.approx(0.95)
    assert low == pytest.approx(0.95 - 4.302653 * 0.05 / math.sqrt(3), rel=1e-5)
    assert high == 1.0
    assert clipped
    # A signed metric clips at its own bounds, both sides.
    _, low, high, clipped = mean_ci_across_seeds([-1.0, 1.0], bounds=(-1.0, 1.0))
    assert (low, high, clipped) == (-1.0, 1.0, True)


def test_metric_ranges_cover_loop_and_evaluation_metrics():
    assert metric_range("disparate_bias") == (0.0, 1.0)
    assert metric_range("majority_lean") == (-1.0, 1.0)
    assert metric_range("group_share") == (0.0, 1.0)
    assert metric_range("perplexity") == (1.0, math.inf)
    assert metric_range("bbq.bias_score_disambiguated") == (-1.0, 1.0)
    assert metric_range("bbq.bias_score_disambiguated_gap") == (0.0, 2.0)
    assert metric_range("hiring.selection_rate_ratio") == (0.0, 1.0)
    assert metric_range("crows_pairs.percent_stereotype_gap") == (0.0, 100.0)
    assert metric_range("winobias.pro_anti_gap") == (-1.0, 1.0)
    assert metric_range("bbq.accuracy_ambiguous_gap_p_value") == (0.0, 1.0)
    assert metric_range("hiring.yes_log_odds") is None


def test_seed_summary_never_reports_an_interval_outside_the_range():
    frame = pd.DataFrame(
        [
            {"generation": 1, "condition": "c", "seed": seed, "group": "", "metric": metric,
             "value": value, "ci_low": value, "ci_high": value}
            for metric, values in (("disparate_bias", (0.9, 1.0, 0.95)),
                                   ("majority_lean", (-0.9, -1.0, -0.95)),
                                   ("mean_length", (10.0, 30.0, 20.0)))
            for seed, value in enumerate(values)
        ]
    )
    summary = summarize_seeds(frame).set_index("metric")
    assert summary.loc["disparate_bias", "ci_high"] == 1.0
    assert summary.loc["disparate_bias", "ci_clipped"]
    assert summary.loc["majority_lean", "ci_low"] == -1.0
    assert summary.loc["majority_lean", "ci_clipped"]
    # Unbounded above: the upper end is the t-interval's; the lower end is clipped at 0.
    half = 4.302653 * 10.0 / math.sqrt(3)
    assert summary.loc["mean_length", "ci_high"] == pytest.approx(20.0 + half, rel=1e-5)
    assert summary.loc["mean_length", "ci_low"] == 0.0
    assert (summary["seeds"] == 3).all()


def test_metrics_names_computes_only_the_named_loop_metrics(tmp_path):
    from biasloop.config import load_config
    from biasloop.runner.experiment import start_run

    config = load_config(ROOT / "configs/scpl/preference-smoke.yaml", [
        "model.name=tiny-random", "run.progress=false", "loop.generations=1",
        "metrics.names=[disparate_bias,group_share]", "conditions={}",
    ])
    store = start_run(config, out=tmp_path / "run")
    table = pd.read_parquet(store.root / "metrics.parquet")
    assert set(table["metric"]) == {"disparate_bias", "group_share"}


def test_every_builtin_loop_metric_documents_its_formula():
    from biasloop.metrics.loop import LOOP_METRICS

    names = LOOP_METRICS.names()
    assert {"quality", "disparate_bias", "preference_bias", "perplexity", "group_share"} <= set(names)
    for name in names:
        assert LOOP_METRICS.info(name).summary, name


def test_a_plugin_metric_runs_only_in_runs_that_load_its_plugin():
    from biasloop.metrics.loop import LOOP_METRICS, Estimate, default_loop_metrics
    from biasloop.metrics.loop.base import LoopMetric

    def echo(context):
        """A metric another run's plug-in brought."""
        return [Estimate(1.0)]

    LOOP_METRICS.register("other_runs_metric")(LoopMetric(echo, "x", "someone_elses_plugin"))
    assert "other_runs_metric" not in default_loop_metrics()
    assert "other_runs_metric" in default_loop_metrics(["someone_elses_plugin"])
    assert "quality" in default_loop_metrics()
