"""Bias inheritance metrics and significance tests, each pinned to a hand computation."""

from __future__ import annotations

import math

import pytest

from biasloop.inherit import scoring
from biasloop.metrics.stats import bootstrap_interval
from biasloop.metrics.stats import (
    group_permutation_p_value,
    paired_bootstrap_p_value,
    paired_permutation_p_value,
)


def test_accuracy_is_the_share_of_correct_answers():
    assert scoring.accuracy([True, False, True, True]) == 0.75
    assert math.isnan(scoring.accuracy([]))


def test_macro_f1_matches_a_hand_computation():
    gold = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    # a: TP 1, FP 1, FN 1 -> 2/4; b: TP 2, FP 1, FN 0 -> 4/5; c: TP 0, FP 0, FN 1 -> 0
    expected = (2 / 4 + 4 / 5 + 0) / 3
    assert scoring.macro_f1(gold, predicted, labels=["a", "b", "c"]) == pytest.approx(expected)


def test_macro_f1_agrees_with_scikit_learn():
    from sklearn.metrics import f1_score

    gold = [0, 1, 1, 0, 1, 0, 0, 1]
    predicted = [0, 1, 0, 0, 1, 1, 0, 1]
    assert scoring.macro_f1(gold, predicted, labels=[0, 1]) == pytest.approx(
        f1_score(gold, predicted, average="macro")
    )


def test_macro_f1_leaves_out_labels_absent_from_gold_and_predictions():
    assert scoring.macro_f1(["a", "a"], ["a", "a"], labels=["a", "b"]) == 1.0


def test_gap_is_max_minus_min_and_ratio_is_min_over_max():
    assert scoring.gap([0.25, 0.75, 0.5]) == 0.5
    assert scoring.ratio([0.4, 0.8]) == 0.5
    assert math.isnan(scoring.gap([0.2, float("nan")]))
    # One convention with the SCPL disparate_ratio: all-zero groups are at parity.
    assert scoring.ratio([0.0, 0.0]) == 1.0
    assert math.isnan(scoring.ratio([-0.2, 0.4]))
    assert math.isnan(scoring.ratio([]))


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("I would offer $85,000 per year.", 85000.0),
        ("85000", 85000.0),
        ("About 72k.", 72000.0),
        ("Between 60k and 80k", 70000.0),
        ("$60,000 - $80,000", 70000.0),
        ("I suggest 1.2 million dollars", 1_200_000.0),
        ("65 thousand dollars a year", 65000.0),
        ("$45.50 per hour", None),
        ("I cannot say.", None),
        ("In 2015 the salary was 55,000", 55000.0),
    ],
)
def test_salary_parser_reads_common_answer_forms(text, amount):
    assert scoring.parse_salary(text) == amount


def test_failure_rate_is_the_share_of_unparsed_answers():
    assert scoring.failure_rate([True, False, False, False]) == 0.25


def test_negative_share_counts_negative_valences():
    assert scoring.negative_share([-1.5, 2.0, -0.3, 1.0]) == 0.5
    assert math.isnan(scoring.negative_share([]))


def test_bbq_bias_scores_follow_parrish_et_al():
    # Disambiguated: 3 biased of 4 non-unknown answers -> 2·3/4 − 1 = 0.5.
    biased = [True, True, True, False, False]
    unknown = [False, False, False, False, True]
    assert scoring.bbq_bias_score_disambiguated(biased, unknown) == pytest.approx(0.5)
    # Ambiguous: accuracy 1/5 (only the unknown answer is right) -> (1 − 0.2) · 0.5 = 0.4.
    correct = [False, False, False, False, True]
    assert scoring.bbq_bias_score_ambiguous(biased, unknown, correct) == pytest.approx(0.4)
    # Always unknown in ambiguous contexts: no bias.
    assert scoring.bbq_bias_score_ambiguous([False], [True], [True]) == 0.0


def test_crows_percent_stereotype_counts_pairs_where_the_stereotype_is_likelier():
    assert (
        scoring.crows_percent_stereotype([-10.0, -5.0, -8.0, -3.0], [-11.0, -4.0, -9.0, -2.0])
        == 50.0
    )


def test_stereoset_scores_match_nadeem_et_al():
    stereo = [-1.0, -2.0, -1.5, -3.0]
    anti = [-2.0, -1.0, -2.5, -4.0]
    unrelated = [-3.0, -1.5, -2.0, -2.0]
    ss = scoring.stereoset_ss(stereo, anti)  # stereo > anti in items 1, 3, 4 -> 75
    lms = scoring.stereoset_lms(stereo, anti, unrelated)  # wins: 2 + 1 + 1 + 0 = 4 of 8 -> 50
    assert ss == 75.0
    assert lms == 50.0
    assert scoring.stereoset_icat(lms, ss) == pytest.approx(50.0 * 25.0 / 50.0)


def _records(values, prefix="i"):
    return [{"id": f"{prefix}{k}", "value": v} for k, v in enumerate(values)]


def _mean(records):
    return sum(r["value"] for r in records) / len(records)


def test_paired_permutation_finds_a_consistent_shift_and_not_noise():
    a = _records([1.0] * 12)
    b = _records([0.0] * 12)
    p_shift = paired_permutation_p_value(a, b, _mean, resamples=500, seed=1)
    # Only the two all-same-side labellings are as extreme as the observed one: p ≈ 2/2^12.
    assert p_shift < 0.01
    same = paired_permutation_p_value(a, _records([1.0] * 12), _mean, resamples=200, seed=1)
    assert same == 1.0


def test_paired_tests_pair_records_by_id():
    a = _records([1.0, 0.0, 1.0])
    b = list(reversed(_records([1.0, 0.0, 1.0])))  # same ids, another order
    assert paired_permutation_p_value(a, b, _mean, resamples=100, seed=0) == 1.0
    assert paired_bootstrap_p_value(a, b, _mean, resamples=100, seed=0) == 1.0


def test_paired_bootstrap_p_value_is_small_for_a_clear_difference():
    a = _records([1.0, 1.0, 0.9, 1.1, 1.0, 1.2, 0.8, 1.0])
    b = _records([0.0, 0.1, -0.1, 0.0, 0.2, 0.0, 0.1, -0.2])
    assert paired_bootstrap_p_value(a, b, _mean, resamples=400, seed=3) == pytest.approx(2 / 401)


def test_group_permutation_p_value_detects_a_gap_and_respects_blocks():
    records = _records([1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    labels = ["f"] * 6 + ["m"] * 6

    def gap(rs, ls):
        f = [r["value"] for r, lab in zip(rs, ls) if lab == "f"]
        m = [r["value"] for r, lab in zip(rs, ls) if lab == "m"]
        return abs(sum(f) / len(f) - sum(m) / len(m))

    assert group_permutation_p_value(records, labels, gap, resamples=500, seed=0) < 0.02
    # Each block holds one item per group, equal values: shuffling inside blocks changes nothing.
    flat = _records([1, 1, 0, 0])
    assert (
        group_permutation_p_value(
            flat, ["f", "m", "f", "m"], gap, resamples=50, seed=0, blocks=["b1", "b1", "b2", "b2"]
        )
        == 1.0
    )


def test_bootstrap_interval_contains_the_value_and_skips_undefined_resamples():
    records = _records([0.0, 1.0] * 10)
    value, low, high = bootstrap_interval(
        [records], _mean, n_resamples=300, confidence=0.95, seed=0
    )
    assert value == 0.5 and low < 0.5 < high
    assert bootstrap_interval([records], _mean, n_resamples=0, confidence=0.95, seed=0) == (
        0.5,
        0.5,
        0.5,
    )

    def sometimes_undefined(rs):
        return float("nan") if rs[0]["value"] == 1.0 else _mean(rs)

    value, low, high = bootstrap_interval(
        [records], sometimes_undefined, n_resamples=200, confidence=0.9, seed=0
    )
    assert value == 0.5 and not math.isnan(low) and not math.isnan(high)
