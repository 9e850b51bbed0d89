"""The run store: atomic writes, manifests, safe paths, clear errors."""

from __future__ import annotations

import json
import pandas as pd
import pytest

from biasloop.errors import DataError, RunStoreError
from biasloop.store import RunStore, read_jsonl, staging_dir, write_json, write_jsonl, write_table


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    write_jsonl(tmp_path / "b.jsonl", [{"i": 1}, {"i": 2}])
    write_table(tmp_path / "c.parquet", pd.DataFrame({"v": [1.0]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.jsonl", "c.parquet"]
    assert read_jsonl(tmp_path / "b.jsonl") == [{"i": 1}, {"i": 2}]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "keep.json"
    write_json(target, {"version": 1})

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json(target, {"bad": Unserialisable()})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_unwritable_target_gives_a_clear_error(tmp_path):
    # A folder that is really a file cannot be written into, even as root.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(RunStoreError, match="cannot write"):
        write_json(blocker / "x.json", {})


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"ok": 1}\n{"broken": \n')
    with pytest.raises(DataError, match=r"data.jsonl:2: not valid JSON"):
        read_jsonl(path)
    path.write_text('[1, 2]\n')
    with pytest.raises(DataError, match=r"data.jsonl:1: expected a JSON object"):
        read_jsonl(path)
    path.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_jsonl(path)


def test_manifest_records_provenance_and_refuses_reuse(tmp_path):
    store = RunStore(tmp_path / "run")
    manifest = store.create(config={"name": "x"}, config_hash="abc", seed=3)
    for key in ("config", "config_hash", "seed", "versions", "git_revision", "started_at", "status"):
        assert key in manifest
    assert manifest["versions"]["torch"].startswith("2.13.0")
    with pytest.raises(RunStoreError, match="already holds a run"):
        store.create(config={}, config_hash="abc", seed=3)
    with pytest.raises(RunStoreError, match="is not a run directory"):
        RunStore(tmp_path).manifest()


def test_paths_cannot_escape_the_run_directory(tmp_path):
    store = RunStore(tmp_path / "run")
    assert store.path("conditions", "a") == (tmp_path / "run" / "conditions" / "a").resolve()
    with pytest.raises(RunStoreError, match="escapes the run directory"):
        store.path("..", "elsewhere")


def test_staging_dir_appears_only_when_complete(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with staging_dir(final) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert not final.exists()
    with staging_dir(final) as tmp:
        (tmp / "weights").write_text("full")
    assert (final / "weights").read_text() == "full"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
