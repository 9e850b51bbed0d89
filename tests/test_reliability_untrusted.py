"""Untrusted files: safe loading, no code from data, and no writes outside the run directory."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from biasloop.config import load_config
from biasloop.config.schema import ModelConfig
from biasloop.errors import ConfigError, RunStoreError
from biasloop.io import CHECKSUMS, verify_checksums, write_json
from biasloop.runner.experiment import start_run
from biasloop.store import RunStore
from biasloop.runner.sweep import run_id

SOURCE = Path(__file__).resolve().parents[1] / "src" / "biasloop"
# Calls that run code or build objects from data. None is allowed in the package: the
# names-table rebuild, which reads names-dataset's pickles, is a script outside it.
UNSAFE_LOADERS = {("pickle", "load"), ("pickle", "loads"), ("joblib", "load"), ("torch", "load"),
                  ("dill", "load"), ("cloudpickle", "load"), ("yaml", "load"),
                  ("yaml", "unsafe_load"), ("yaml", "full_load"), ("numpy", "load"), ("np", "load")}
ALLOWED: set[tuple[str, str, str]] = set()


def _unsafe_calls() -> set[tuple[str, str, str]]:
    found = set()
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in [tree, *[n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]]:
            name = getattr(function, "name", "<module>")
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Name) and func.id in {"eval", "exec", "compile", "__import__"}:
                    found.add((path.relative_to(SOURCE).as_posix(), name, func.id))
                if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                        and (func.value.id, func.attr) in UNSAFE_LOADERS):
                    found.add((path.relative_to(SOURCE).as_posix(), name, f"{func.value.id}.{func.attr}"))
    # Calls inside a function are also seen from the module; keep the innermost name.
    return {f for f in found if f[1] != "<module>" or not any(
        g[0] == f[0] and g[2] == f[2] and g[1] != "<module>" for g in found)}


def test_no_code_is_run_or_unpickled_from_data_and_generated_text_is_never_evaluated():
    assert _unsafe_calls() == ALLOWED
    # The scanner does see such calls: the maintenance script outside the package has one.
    script = SOURCE.parents[1] / "scripts" / "build_names_table.py"
    assert "pickle.load(" in script.read_text(encoding="utf-8")
    assert not any("pickle" in p.read_text(encoding="utf-8") for p in SOURCE.rglob("*.py"))


def test_trust_remote_code_is_off_unless_the_config_sets_it():
    assert ModelConfig().trust_remote_code is False
    assert load_config(None).model.trust_remote_code is False
    assert load_config(None, ["model.trust_remote_code=true"]).model.trust_remote_code is True
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert not (isinstance(node.value, ast.Constant) and node.value.value is True), path


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {mark}']",
    "!!python/object/new:subprocess.Popen [['touch', '{mark}']]",
])
def test_yaml_tags_that_would_run_code_are_refused(tmp_path, payload):
    mark = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: {payload.format(mark=mark)}\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(config)
    with pytest.raises(ConfigError):  # as an override the tag stays a string and fails validation
        load_config(None, [f"name={payload.format(mark=mark)}"])
    assert not mark.exists()


@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "..", ".hidden", "a\x00b", "", "x" * 65])
def test_run_and_condition_names_cannot_leave_the_output_folder(name):
    with pytest.raises(ConfigError, match="must be 1-64 letters"):
        load_config(None, [f"name={name!r}"])
    with pytest.raises(ConfigError, match="condition name"):
        load_config(None, [f"conditions={{{name!r}: {{}}}}"])


@pytest.mark.parametrize("value", ["../../x", "/etc", "..", "a\x00b", "a/../../b"])
def test_sweep_run_ids_are_single_safe_folder_names(value):
    identifier = run_id({"task.name": value}, 0, {"task.name": "name"})
    assert "/" not in identifier and "\x00" not in identifier and not identifier.startswith(".")
    assert Path(identifier).name == identifier


def test_store_paths_and_checksum_entries_cannot_escape_the_run(tmp_path):
    store = RunStore(tmp_path / "run")
    for parts in (("..", "x"), ("/etc", "passwd"), ("a", "..", "..", "b")):
        with pytest.raises(RunStoreError, match="escapes the run directory"):
            store.path(*parts)
    (tmp_path / "secret").write_text("x")
    write_json(tmp_path / "run" / CHECKSUMS, {"../secret": "0" * 64})
    with pytest.raises(RunStoreError, match="points outside its folder"):
        verify_checksums(tmp_path / "run")


def test_an_out_folder_with_a_nul_byte_is_one_line_error(tmp_path):
    with pytest.raises(RunStoreError, match="embedded null byte") as info:
        start_run(load_config(None, ["model.name=tiny-random"]), out=tmp_path / "a\x00b")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_out_path_that_is_a_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    with pytest.raises(RunStoreError, match="is a file, not a folder"):
        start_run(load_config(None, ["model.name=tiny-random"]), out=blocker)
    assert blocker.read_text() == "mine"
