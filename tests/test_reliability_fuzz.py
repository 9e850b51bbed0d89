"""Fuzzing: configs, CLI overrides and data files end in a result or one clean error line.

Each property feeds random or mutated input through the functions the CLI uses and
accepts exactly two outcomes: a correct result, or a :class:`BiasloopError` whose
message is one line naming the file (and line) or the field. Any other exception
fails the test with Hypothesis's minimal example.
"""

from __future__ import annotations

import copy
import json
import os
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from biasloop.cli import app
from biasloop.config.load import (
    apply_overrides,
    config_hash,
    parse_override,
    read_yaml,
    validate_config,
)
from biasloop.config.schema import ExperimentConfig
from biasloop.errors import BiasloopError, ConfigError, DataError
from biasloop.resources.names import load_names
from biasloop.io import read_jsonl
from biasloop.runner.experiment import check_plugins
from biasloop.tasks.sources import load_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "configs").glob("**/*.yaml"))
# Every field path of the schema's sections, so mutations often hit real fields.
FIELD_PATHS = sorted({
    f"{section}.{field}"
    for section, info in ExperimentConfig.model_fields.items()
    for field in (getattr(info.annotation, "model_fields", None) or {})
} | set(ExperimentConfig.model_fields))

# The same 300 cases per property on every run, so CI is repeatable; set
# BIASLOOP_FUZZ_EXPLORE=1 to draw new cases (and raise BIASLOOP_FUZZ_EXAMPLES) when hunting.
FUZZ = settings(max_examples=int(os.environ.get("BIASLOOP_FUZZ_EXAMPLES", "300")),
                deadline=None, database=None,
                derandomize=os.environ.get("BIASLOOP_FUZZ_EXPLORE") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ------------------------------------------------------------------ strategies
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", "..", "../../x", "/etc/passwd", "a\x00b", "x\ny",
                                           "tiny-random", "retain", "static", "lora", "hf"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
keys = st.one_of(st.sampled_from(FIELD_PATHS), st.text(min_size=1, max_size=12))
# Values that broke configs before: non-finite floats, control characters, huge numbers.
edge_keys = st.sampled_from(["a\nb", "x\ry", "\x00", "", " ", "..", "é", "a.b"])
edge_values = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, "a\nb", "\x00", "", 10**30, -1, 0, True, [], {}]),
    st.dictionaries(edge_keys, st.sampled_from(["x", 1, -1, math.nan, None]), min_size=1, max_size=2),
)


def _walk_paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            paths.extend(_walk_paths(value, (*prefix, key)))
    return paths


@st.composite
def mutated_configs(draw) -> dict[str, Any]:
    """An example config with a few random edits: set, delete, rename or add a key.

    Drawn values are copied before they go in: a later edit of this config must not
    change a value the strategy hands out again (hypothesis needs draws to be pure).
    """
    data = read_yaml(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _walk_paths(data)
        action = draw(st.sampled_from(["set", "delete", "rename", "add", "set_dotted"]))
        if action == "set_dotted":
            try:
                value = copy.deepcopy(draw(st.one_of(edge_values, values)))
                data = apply_overrides(data, [(draw(st.sampled_from(FIELD_PATHS)).split("."), value)])
            except ConfigError:  # an earlier edit made a section a scalar; keep the data
                pass
            continue
        if not paths:
            data[draw(keys)] = copy.deepcopy(draw(values))
            continue
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        if action == "set":
            parent[path[-1]] = copy.deepcopy(draw(values))
        elif action == "delete":
            del parent[path[-1]]
        elif action == "rename":
            parent[draw(st.text(max_size=10))] = parent.pop(path[-1])
        else:
            target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
            target[draw(st.text(max_size=10))] = copy.deepcopy(draw(values))
    return data


# ------------------------------------------------------------------ oracles
def assert_one_line(err: BaseException, *, names: str | None = None) -> None:
    message = str(err)
    assert isinstance(err, BiasloopError), f"{type(err).__name__}: {message}"
    assert message and "\n" not in message and "\r" not in message, repr(message)
    if names is not None:
        assert message.startswith(names), (names, message)


def assert_valid_and_stable(config: ExperimentConfig) -> None:
    """An accepted config survives the manifest round trip unchanged (same hash)."""
    stored = json.loads(json.dumps(config.model_dump(mode="json")))
    again = validate_config(stored, source="manifest.json")
    assert again == config
    assert config_hash(again) == config_hash(config)


FIELD_NAMED = re.compile(r"^(override |unknown \w+ |)'?[A-Za-z_]+[.:= ]")


def load_like_the_cli(path: Path, overrides: list[str]) -> None:
    """read_yaml -> parse_override/apply_overrides -> validate_config -> check_plugins.

    Loading errors start with the file (or the override); plug-in checks, which run on
    a validated config, start with the field or plug-in they name."""
    try:
        data = apply_overrides(read_yaml(path), overrides)
        config = validate_config(data, source=str(path))
    except BiasloopError as err:
        assert_one_line(err, names=str(path) if not str(err).startswith("override") else None)
        return
    assert_valid_and_stable(config)
    try:
        check_plugins(config)
    except BiasloopError as err:
        assert_one_line(err)
        assert FIELD_NAMED.match(str(err)), str(err)


# ------------------------------------------------------------------ configs
@FUZZ
@given(data=mutated_configs())
def test_mutated_configs_load_or_fail_in_one_line(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        load_like_the_cli(path, [])


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["[" * 5000, "a: &a [*a]", "- !!python/object/apply:os.system [echo]",
                                       "a: !!binary AAAA", "\ufeffname: x", "name: x\x00", "{" * 100,
                                       "seed: 1e999", "seed: .nan", "generation: {temperature: .inf}",
                                       "a: 1\na: 2", "? [1, 2]\n: 3", "1: 2", "name: x\r\nseed: 2"])))
def test_random_yaml_documents_load_or_fail_in_one_line(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        load_like_the_cli(path, [])


@FUZZ
@given(raw=st.binary(max_size=120))
def test_config_bytes_in_any_encoding_load_or_fail_in_one_line(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_bytes(raw)
        load_like_the_cli(path, [])


# ------------------------------------------------------------------ overrides
override_texts = st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}={v}", keys, st.text(max_size=30)),
    st.builds(lambda k, v: f"{k}={json.dumps(v, default=str)}", st.sampled_from(FIELD_PATHS), values),
    st.builds(lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}",
              st.sampled_from(FIELD_PATHS), values),
)


@FUZZ
@given(text=override_texts)
def test_parse_override_gives_a_key_path_or_one_line_error(text):
    try:
        path, _ = parse_override(text)
    except ConfigError as err:
        assert_one_line(err, names="override")
        return
    assert path and all(isinstance(p, str) and p for p in path)
    assert ".".join(path) == text.partition("=")[0].strip()


@FUZZ
@given(overrides=st.lists(override_texts, min_size=1, max_size=3))
def test_overrides_on_an_example_config_load_or_fail_in_one_line(overrides):
    load_like_the_cli(REPO / "configs" / "scpl" / "preference-smoke.yaml", overrides)


# ------------------------------------------------------------------ JSONL data files
good_lines = st.dictionaries(st.text(max_size=6), values, max_size=4).map(
    lambda d: json.dumps(d, ensure_ascii=False).encode())
bad_lines = st.one_of(
    st.just(b'{"broken": '), st.just(b"[1, 2]"), st.just(b"3"), st.just(b'"text"'), st.just(b"null"),
    st.just(b"\xff\xfe{}"), st.just(b'{"a": "\xc3\x28"}'), st.just(b'{"s": "\\ud800"}'),
    st.just(b"[" * 100_000), st.just(b'{"n": ' + b"9" * 5000 + b"}"),
    st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b and b.strip()),
)
huge_line = st.just(json.dumps({"prompt": "x" * 2_000_000}).encode())


def _expected_jsonl(lines: list[bytes]) -> tuple[list[dict] | None, int | None]:
    """The records a correct reader returns, or the number of the first bad line."""
    records = []
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            if not text.strip():
                continue
            record = json.loads(text)
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError, UnicodeError):
            return None, number
        if not isinstance(record, dict):
            return None, number
        records.append(record)
    return records, None


@FUZZ
@given(lines=st.lists(st.one_of(good_lines, good_lines, bad_lines, huge_line, st.just(b""), st.just(b"  ")),
                      max_size=6),
       bom=st.booleans())
def test_jsonl_reader_returns_records_or_names_file_and_line(lines, bom):
    assume(all(b"\n" not in line for line in lines))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines))
        lines = [(b"\xef\xbb\xbf" if bom and i == 0 else b"") + line for i, line in enumerate(lines)]
        expected, bad_line = _expected_jsonl(lines)
        try:
            records = read_jsonl(path)
        except DataError as err:
            assert_one_line(err, names=f"{path}:")
            assert bad_line is not None, str(err)
            assert str(err).startswith(f"{path}:{bad_line}:"), (bad_line, str(err))
            return
        assert bad_line is None, f"line {bad_line} is bad but was read"
        assert _equal_json(records, expected)


def _equal_json(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN (JSON data may hold NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal_json(x, y) for x, y in zip(a, b))
    return a == b


# ------------------------------------------------------------------ task data (task.hf_dataset)
cells = st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 5), st.floats(allow_nan=True),
                  st.booleans(), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
columns = st.lists(st.sampled_from(["group", "prompt", "reference", "id", "answer", "other", ""]),
                   min_size=0, max_size=4, unique=True)


@st.composite
def task_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
    cols = draw(columns)
    rows = draw(st.lists(st.fixed_dictionaries({c: cells for c in cols}), max_size=5))
    mode = draw(st.sampled_from(["table", "table", "garbage", "empty", "latin1"]))
    if mode == "empty":
        return suffix, b""
    if mode == "garbage":
        return suffix, draw(st.binary(min_size=1, max_size=60))
    if suffix == ".jsonl":
        text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    elif suffix == ".json":
        text = json.dumps(rows, ensure_ascii=False)
    elif suffix == ".csv":
        frame = pd.DataFrame(rows, columns=cols)
        text = frame.to_csv(index=False)
    else:
        frame = pd.DataFrame({c: [json.dumps(r.get(c)) if r.get(c) is not None else None for r in rows]
                              for c in cols})
        with tempfile.TemporaryFile() as handle:
            frame.to_parquet(handle, index=False)
            handle.seek(0)
            return suffix, handle.read()
    return suffix, text.encode("latin-1", errors="replace") if mode == "latin1" else text.encode()


@FUZZ
@given(file=task_files())
def test_task_data_files_give_rows_or_one_line_error_naming_the_file(file):
    suffix, content = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        try:
            rows = load_rows(str(path))
        except DataError as err:
            assert_one_line(err, names=str(path))
            return
        assert rows
        for row in rows:
            assert isinstance(row["group"], str) and row["group"]
            assert isinstance(row["prompt"], str) and row["prompt"]
            json.dumps(row, ensure_ascii=False).encode("utf-8")  # written later as UTF-8 JSONL


@pytest.mark.parametrize(("lines", "expected"), [
    (['{"group": "a", "prompt": "p"}', '{"group": "a", "prompt": '], ":2: not valid JSON"),
    (['{"group": "a", "prompt": {"nested": 1}}'], "row 1 column 'prompt' holds a dict; expected text"),
    (['{"group": "a", "prompt": ["x"]}'], "row 1 column 'prompt' holds a list; expected text"),
    (['{"group": "a", "prompt": "\\ud800"}'], ":1: a string holds an unpaired surrogate"),
])
def test_task_data_errors_name_the_line_or_row_and_column(tmp_path, lines, expected):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        load_rows(str(path))
    assert str(info.value).startswith(str(path)) and expected in str(info.value), str(info.value)


def test_yaml_errors_without_a_line_do_not_print_an_empty_line_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: x\x00\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert str(info.value).startswith(f"{path}: invalid YAML ("), str(info.value)


# ------------------------------------------------------------------ names files (inheritance.names.file)
@st.composite
def names_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".json", ".csv"]))
    if draw(st.booleans()):
        return suffix, draw(st.binary(max_size=60))
    if suffix == ".json":
        data = draw(st.one_of(
            values,
            st.fixed_dictionaries({"cultures": st.dictionaries(
                st.text(max_size=5), st.dictionaries(st.text(max_size=5), values, max_size=2), max_size=2)}),
        ))
        return suffix, json.dumps(data).encode()
    cols = draw(st.lists(st.sampled_from(["name", "gender", "culture", "x"]), max_size=4, unique=True))
    rows = draw(st.lists(st.lists(st.text(max_size=6), min_size=len(cols), max_size=len(cols)), max_size=4))
    return suffix, pd.DataFrame(rows, columns=cols).to_csv(index=False).encode()


@FUZZ
@given(file=names_files())
def test_names_files_give_a_table_or_one_line_error_naming_the_file(file):
    suffix, content = file
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"names{suffix}"
        path.write_bytes(content)
        try:
            table = load_names(str(path))
        except DataError as err:
            assert_one_line(err)
            assert str(path) in str(err), str(err)
            return
        assert table.people
        assert all(p.name and p.gender and p.culture for p in table.people)


# ------------------------------------------------------------------ the real CLI
CLI_CASES = [
    ("seed: abc\n", [], "seed = 'abc'"),
    ("generation: {temperature: .inf}\n", [], "generation.temperature"),
    ("seed: .nan\n", [], "seed"),
    ("a: &a [*a]\n", [], "recursive"),
    ("[[[[[[\n", [], "invalid YAML"),
    ("{}\n", ["seed"], "must look like KEY.SUB=VALUE"),
    ("{}\n", ["seed=3", "seed.x=1"], "seed is 3, not a section"),
    ("{}\n", ["loop.initial_shares={'a\\nb': -1}"], "loop.initial_shares"),
    ("conditions: {a: {loop.generations.x: 1}}\n", [], "conditions.a.loop.generations.x"),
    ("name: ../../x\n", [], "name = '../../x'"),
    ("conditions: {'../up': {}}\n", [], "condition name '../up'"),
]


@pytest.mark.parametrize(("text", "overrides", "expected"), CLI_CASES)
def test_cli_rejects_bad_configs_with_exit_2_and_one_line(tmp_path, text, overrides, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    for command in (["config", "validate", str(path), *overrides],
                    ["run", "--quiet", "--out", str(out), str(path), "model.name=tiny-random", *overrides]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (result.output, result.exception)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert expected in lines[0], lines[0]
    assert not out.exists(), "a rejected config must not leave a run directory"


def test_cli_resume_of_a_folder_that_is_not_a_run_fails_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["resume", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert lines[0].endswith("is not a run directory (no manifest.json)"), lines[0]
