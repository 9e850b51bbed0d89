"""The run store owns resumption and shared work: ``cached``, ``content_key`` and ``RunStore.shared``."""

from __future__ import annotations

import pandas as pd
import pytest

from biasloop.errors import RunStoreError
from biasloop.store import (
    RunStore,
    cached,
    content_key,
    read_json,
    staging_dir,
    write_bytes,
)


def never():
    raise AssertionError("this unit is done; it must not be recomputed")


@pytest.fixture
def store(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "run")
    store.create(config={"name": "x"}, config_hash="abc", seed=0)
    return store


def unit(store: RunStore, condition: str, seed: int = 0):
    """A unit writing a file and a model folder, and the summary path it is done by."""
    folder = store.path("conditions", condition, f"seed-{seed}", "round-1", "unit")

    def compute() -> dict:
        write_bytes(folder / "train.jsonl", f'{{"by": "{condition}"}}\n'.encode())
        with staging_dir(folder / "model") as staged:
            (staged / "adapter.safetensors").write_bytes(condition.encode())
        return {"loss": 0.5}

    return folder / "train.json", compute


def test_cached_computes_once_then_reads_back_each_format(tmp_path):
    frame = pd.DataFrame({"value": [1.0, 2.0]})
    assert cached(tmp_path / "a.jsonl", lambda: [{"i": 1}]) == [{"i": 1}]
    assert cached(tmp_path / "a.jsonl", never) == [{"i": 1}]
    assert cached(tmp_path / "b.json", lambda: {"x": 1}) == {"x": 1}
    assert cached(tmp_path / "b.json", never) == {"x": 1}
    cached(tmp_path / "c.parquet", lambda: frame)
    pd.testing.assert_frame_equal(cached(tmp_path / "c.parquet", never), frame)


def test_cached_names_the_file_with_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=r"'model.bin' has no known format; valid: .jsonl"):
        cached(tmp_path / "model.bin", lambda: b"")


def test_content_key_depends_on_the_inputs_not_their_order():
    assert content_key({"seed": 0, "data": [1, 2]}) == content_key({"data": [1, 2], "seed": 0})
    assert content_key({"seed": 0}) != content_key({"seed": 1})
    assert content_key({"data": [1, 2]}) != content_key({"data": [2, 1]})
    assert len(content_key({})) == 16


def test_shared_computes_a_new_unit_and_records_its_key(store):
    path, compute = unit(store, "none")
    summary = store.shared(path, compute, inputs=lambda: {"data": [1]}, outputs=["model", "*.jsonl"])
    assert summary == {"loss": 0.5, "key": content_key({"data": [1]})}
    assert read_json(path) == summary


def test_shared_resumes_a_done_unit_without_computing_or_hashing(store):
    path, compute = unit(store, "none")
    first = store.shared(path, compute, inputs=lambda: {"data": [1]})
    assert store.shared(path, never, inputs=never) == first


def test_shared_copies_the_outputs_of_another_condition_with_the_same_inputs(store):
    source, compute = unit(store, "none")
    store.shared(source, compute, inputs=lambda: {"data": [1]})
    target, _ = unit(store, "mask")
    summary = store.shared(target, never, inputs=lambda: {"data": [1]},
                           outputs=["model", "*.jsonl"])
    assert summary == {**read_json(source), "copied_from": "none"}
    assert read_json(target) == summary
    assert (target.parent / "train.jsonl").read_text() == '{"by": "none"}\n'
    assert (target.parent / "model" / "adapter.safetensors").read_bytes() == b"none"
    assert store.verify() > 0  # copies are listed in the checksums like any write


def test_shared_copies_only_the_listed_outputs(store):
    source, compute = unit(store, "none")
    store.shared(source, compute, inputs=lambda: {"data": [1]})
    target, _ = unit(store, "mask")
    store.shared(target, never, inputs=lambda: {"data": [1]}, outputs=["*.jsonl"])
    assert (target.parent / "train.jsonl").exists()
    assert not (target.parent / "model").exists()


def test_shared_recomputes_when_the_inputs_differ(store):
    source, compute = unit(store, "none")
    store.shared(source, compute, inputs=lambda: {"data": [1]})
    target, compute_masked = unit(store, "mask")
    summary = store.shared(target, compute_masked, inputs=lambda: {"data": [2]},
                           outputs=["model", "*.jsonl"])
    assert "copied_from" not in summary
    assert (target.parent / "model" / "adapter.safetensors").read_bytes() == b"mask"


def test_shared_only_looks_at_the_same_unit_of_the_same_seed(store):
    source, compute = unit(store, "none", seed=0)
    store.shared(source, compute, inputs=lambda: {"data": [1]})
    other_seed, compute_seed_1 = unit(store, "mask", seed=1)
    summary = store.shared(other_seed, compute_seed_1, inputs=lambda: {"data": [1]})
    assert "copied_from" not in summary


def test_shared_ignores_an_unfinished_unit_of_another_condition(store):
    source, _ = unit(store, "none")
    write_bytes(source.parent / "train.jsonl", b'{"half": "done"}\n')  # killed before train.json
    target, compute = unit(store, "mask")
    summary = store.shared(target, compute, inputs=lambda: {"data": [1]}, outputs=["*.jsonl"])
    assert "copied_from" not in summary
    assert (target.parent / "train.jsonl").read_text() == '{"by": "mask"}\n'


def test_shared_refuses_a_path_outside_a_condition_folder(store):
    with pytest.raises(RunStoreError, match=r"not a file below .*conditions"):
        store.shared(store.root / "train.json", never, inputs=never)
