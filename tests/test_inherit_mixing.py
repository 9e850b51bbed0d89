"""Mixing original and augmented data at a bias ratio γ, with D_o held fixed."""

from __future__ import annotations

import pytest

from biasloop.config.inheritance import OriginalDataConfig
from biasloop.errors import ConfigError
from biasloop.inherit.mixing import augmented_count, mix, realized_ratio
from biasloop.inherit.original import draw_original


@pytest.mark.parametrize(
    ("ratio", "original", "expected"),
    [
        (0.0, 96, 0),
        (0.05, 96, 5),
        (0.1, 96, 11),
        (0.2, 96, 24),
        (0.5, 96, 96),
        (0.5, 8, 8),
        (0.75, 10, 30),
    ],
)
def test_augmented_count_is_ratio_over_one_minus_ratio_times_original(ratio, original, expected):
    assert augmented_count(ratio, original) == expected


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.2, 0.5])
def test_mix_keeps_all_original_data_and_reaches_the_ratio(ratio):
    original = [{"id": f"o{i}", "source": "real"} for i in range(200)]
    pool = [{"id": f"a{i}", "source": "synthetic"} for i in range(400)]
    mixed = mix(original, pool, ratio)
    assert mixed[:200] == original
    augmented = len(mixed) - 200
    assert augmented == augmented_count(ratio, 200)
    assert realized_ratio(augmented, 200) == pytest.approx(ratio, abs=0.005)


def test_larger_ratios_extend_smaller_ones_from_the_same_pool():
    original = [{"id": "o"}] * 40
    pool = [{"id": f"a{i}"} for i in range(40)]
    small, large = mix(original, pool, 0.2), mix(original, pool, 0.5)
    assert large[: len(small)] == small


def test_a_short_pool_gives_what_it_has_and_the_realized_ratio_says_so():
    mixed = mix([{"id": "o"}] * 10, [{"id": "a"}] * 3, 0.5)
    assert len(mixed) == 13 and realized_ratio(3, 10) == pytest.approx(3 / 13)


def test_bias_ratio_outside_zero_one_is_rejected():
    with pytest.raises(ConfigError, match=r"bias ratio must be in \[0, 1\)"):
        augmented_count(1.0, 10)


def test_original_data_is_real_text_fixed_by_the_seed():
    config = OriginalDataConfig(size=12)
    first = draw_original(config, seed=3)
    assert len(first) == 12 and first == draw_original(config, seed=3)
    assert first != draw_original(config, seed=4)
    assert all(r["source"] == "real" and r["meta"]["source"] == "bold-profession" for r in first)
    assert all(r["prompt"].startswith("Write a short paragraph about working as") for r in first)
    assert all(len(r["response"].split()) > 5 for r in first)


def test_original_data_can_come_from_a_local_file(tmp_path):
    path = tmp_path / "original.jsonl"
    path.write_text('{"question": "Describe a baker.", "reference": "A baker bakes bread."}\n' * 3)
    config = OriginalDataConfig(
        source="hf", hf_dataset=str(path), hf_columns={"prompt": "question"}, size=2
    )
    records = draw_original(config, seed=0)
    assert len(records) == 2 and records[0]["response"] == "A baker bakes bread."
