"""Evaluation data never overlaps training or augmentation data."""

from __future__ import annotations

from pathlib import Path

import pytest

from biasloop.config import load_config
from biasloop.resources.names import all_names
from biasloop.inherit.overlap import OverlapIndex, overlapping, shingles
from biasloop.inherit.study import InheritanceRun
from biasloop.store import RunStore

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "inheritance" / "gender.yaml"
EVERY_TYPE = (
    "[contextual_explicit,contextual_implicit,contrastive_explicit,contrastive_implicit,"
    "intersectional_explicit,intersectional_implicit,neutral]"
)


def no_model():
    raise AssertionError("building data must not need the model")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    config = load_config(
        CONFIG,
        [
            f"inheritance.bias_types={EVERY_TYPE}",
            "inheritance.original.size=200",
            "inheritance.evaluation_items=24",
        ],
    )
    store = RunStore(tmp_path_factory.mktemp("overlap"))
    run = InheritanceRun(config=config, condition="main", seed=0, store=store, backend=no_model)
    original = run.original()
    return run, original, run.evaluation_items(original)


def test_no_evaluation_item_shares_text_with_original_or_augmentation_prompts(study):
    run, original, items = study
    training = [
        *(r["prompt"] for r in original),
        *(r["response"] for r in original),
        *run.augmentation_prompts(),
    ]
    index = OverlapIndex(training)
    assert len(items) == len(run.evaluations)
    for name, rows in items.items():
        assert rows, name
        clashes = [item.id for item in rows if any(index.overlaps(t) for t in item.texts())]
        assert clashes == [], f"{name} items overlap training data: {clashes[:3]}"


def test_evaluated_names_never_appear_in_augmentation(study):
    run, _, items = study
    evaluated = {
        item.meta["name"] for name in ("salary", "hiring", "story") for item in items[name]
    }
    assert evaluated <= all_names([run.eval_names])
    assert not evaluated & all_names([run.augment_names])
    prompts = " ".join(run.augmentation_prompts())
    assert not [n for n in evaluated if f" {n} " in f" {prompts} "]


def test_evaluation_sources_differ_from_the_original_source(study):
    _, original, items = study
    assert {r["meta"]["source"] for r in original} == {"bold-profession"}
    originals = {r["response"] for r in original}
    assert not originals & {t for rows in items.values() for item in rows for t in item.texts()}


def test_items_sharing_text_with_training_data_are_dropped(tmp_path):
    config = load_config(
        CONFIG, ["inheritance.evaluations=[winobias]", "inheritance.original.size=4"]
    )
    run = InheritanceRun(
        config=config, condition="main", seed=0, store=RunStore(tmp_path), backend=no_model
    )
    clean = run.evaluation_items(run.original())["winobias"]
    sentence = clean[0].prompt.split("\n")[0]
    planted = [*run.original(), {"prompt": "Repeat.", "response": f"Note: {sentence} That is all."}]
    run2 = InheritanceRun(
        config=config,
        condition="main",
        seed=0,
        store=RunStore(tmp_path / "again"),
        backend=no_model,
    )
    kept = run2.evaluation_items(planted)["winobias"]
    assert clean[0].id not in {item.id for item in kept}
    assert len(kept) < len(clean)


def test_overlap_detector_finds_shared_thirteen_word_runs_and_containment():
    train = ["the quick brown fox jumps over the lazy dog near the river bank today again"]
    assert overlapping(
        train, ["so the quick brown fox jumps over the lazy dog near the river bank"]
    ) == [0]
    assert overlapping(train, ["a completely different sentence about cats"]) == []
    assert overlapping(train, ["lazy dog near the river"]) == [
        0
    ]  # short text contained in training text
    assert overlapping(["Paris"], ["Parisian food"]) == []  # whole words only
    assert len(shingles("one two three", n=13)) == 1
