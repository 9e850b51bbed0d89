"""Each SCPL metric pinned to a hand-computed value."""

from __future__ import annotations

import math

import pytest

from biasloop.metrics import scpl
from biasloop.metrics.stats import bootstrap_ci, mean_ci_across_seeds


def test_quality_and_disparate_bias_and_ratio():
    qualities = {"a": [1.0, 0.0, 1.0, 1.0], "b": [0.5, 0.0]}
    assert scpl.group_quality(qualities) == {"a": 0.75, "b": 0.25}
    assert scpl.overall_quality(qualities) == pytest.approx(0.5)
    assert scpl.disparate_bias(qualities["a"], qualities["b"]) == pytest.approx(0.5)
    assert scpl.disparate_ratio(qualities["a"], qualities["b"]) == pytest.approx(1 / 3)
    assert scpl.disparate_ratio([0.0], [0.0]) == 1.0


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
    value, low, high = bootstrap_ci([[0, 1, 0, 1, 1, 0, 1, 1]], lambda x: x.mean(), n_resamples=300)
    assert value == pytest.approx(0.625)
    assert low < value < high
    assert bootstrap_ci([[1, 1, 1]], lambda x: x.mean()) == (1.0, 1.0, 1.0)


def test_mean_ci_across_seeds_is_student_t():
    mean, low, high = mean_ci_across_seeds([1.0, 2.0, 3.0], confidence=0.95)
    # s = 1, n = 3, t_{0.975, 2} = 4.302653
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
