"""The causal path (SPEC section 2): the group shares reach the next model's data.

A served query's group is in its prompt and in every record made from it; the
synthetic part of ``D_{t+1}`` follows ``p_t`` (the served queries) and the real part is
drawn by ``p_{t+1}``. The runs are on tiny-random with a fixed seed, so every count is
deterministic; each is checked against its share with a 4-σ binomial band
(``|k − m·p| ≤ 4·sqrt(m·p·(1 − p))``), which any seed passes with probability
about 1 − 6·10⁻⁵, so the tolerance is not fitted to the seed.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from biasloop.config import load_config
from biasloop.loop.engine import LoopRun
from biasloop.store import RunStore, write_json, write_jsonl
from biasloop.tasks import build_task
from biasloop.tasks.preference import CUES

SERVED = 200  # queries per generation: 4σ of a 0.9 share is ±17 queries
BASE = [
    "name=causal",
    "model.name=tiny-random",
    "task.name=preference",
    "task.eval_queries_per_group=2",
    "generation.max_new_tokens=2",
    "generation.batch_size=100",
    "loop.generations=1",
    f"loop.queries_per_generation={SERVED}",
    "loop.synthetic_fraction=0.5",
    "feedback.rule=static",
    "metrics.bootstrap_samples=0",
    "metrics.perplexity_texts=0",
    "run.progress=false",
]
MAJORITY_CONCISE = {"concise": 0.9, "detailed": 0.1}
MAJORITY_DETAILED = {"concise": 0.1, "detailed": 0.9}


def _shares_override(shares: dict[str, float]) -> str:
    return "loop.initial_shares={" + ", ".join(f"{g}: {p}" for g, p in shares.items()) + "}"


def _loop(folder: Path, overrides: list[str], backend: object = None) -> LoopRun:
    config = load_config(None, [*BASE, *overrides])
    return LoopRun(config=config, condition="main", seed=0, store=RunStore(folder),
                   backend=backend, task=build_task(config.task, seed=config.seed))  # type: ignore[arg-type]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_follows_share(records: list[dict], group: str, share: float) -> None:
    """The count of ``group`` among ``records`` lies within 4σ of ``len(records)·share``."""
    m = len(records)
    count = sum(r["group"] == group for r in records)
    band = 4 * math.sqrt(m * share * (1 - share))
    assert abs(count - m * share) <= band, (
        f"{count} of {m} records are {group!r}; expected {m * share:.0f} ± {band:.1f}")


@pytest.fixture(scope="module")
def generation_zero(tmp_path_factory) -> dict[str, LoopRun]:
    """Generation 0 up to D_1 (serve … assemble, no training) under opposite shares."""
    from biasloop.config.schema import ModelConfig
    from biasloop.models.loading import load_backend

    backend = load_backend(ModelConfig(name="tiny-random"))
    runs = {}
    for name, shares in (("concise", MAJORITY_CONCISE), ("detailed", MAJORITY_DETAILED)):
        run = _loop(tmp_path_factory.mktemp(name), [_shares_override(shares)], backend)
        run.start()
        run.next_training_set(0)
        runs[name] = run
    return runs


@pytest.mark.parametrize(("majority", "shares"), [("concise", MAJORITY_CONCISE),
                                                  ("detailed", MAJORITY_DETAILED)])
def test_served_queries_follow_the_group_shares(generation_zero, majority, shares):
    served = _read(generation_zero[majority].gen_dir(0) / "served.jsonl")
    assert len(served) == SERVED
    assert_follows_share(served, majority, shares[majority])


@pytest.mark.parametrize(("majority", "shares"), [("concise", MAJORITY_CONCISE),
                                                  ("detailed", MAJORITY_DETAILED)])
def test_both_parts_of_the_training_set_follow_the_group_shares(generation_zero, majority, shares):
    train = _read(generation_zero[majority].gen_dir(0) / "train.jsonl")
    synthetic = [r for r in train if r["source"] == "synthetic"]
    real = [r for r in train if r["source"] == "real"]
    # mitigation none accepts every served query; λ = 0.5 adds as many real examples.
    assert len(synthetic) == len(real) == SERVED
    assert_follows_share(synthetic, majority, shares[majority])  # served by p_0
    assert_follows_share(real, majority, shares[majority])  # drawn by p_1 = p_0 (static)


def test_shifting_the_shares_shifts_the_group_mix_of_the_next_training_set(generation_zero):
    def concise_share(run: LoopRun, name: str) -> float:
        records = _read(run.gen_dir(0) / name)
        return sum(r["group"] == "concise" for r in records) / len(records)

    for name in ("served.jsonl", "train.jsonl"):
        assert concise_share(generation_zero["concise"], name) > 0.8
        assert concise_share(generation_zero["detailed"], name) < 0.2


def test_every_served_and_training_record_carries_its_group_in_prompt_and_field(generation_zero):
    run = generation_zero["concise"]
    train_prompts = {g: {q.prompt for q in run.task.queries(g, "train")} for g in run.groups}
    for name in ("served.jsonl", "synthetic.jsonl", "train.jsonl"):
        for record in _read(run.gen_dir(0) / name):
            group = record["group"]
            assert group in run.groups, (name, record)
            # group_cue is on by default: the prompt states the group's preference.
            assert record["prompt"].endswith(CUES[group]), (name, record["prompt"])
            assert record["prompt"] in train_prompts[group], (name, record["prompt"])


def test_real_part_is_drawn_by_the_next_shares_not_the_current_ones(tmp_path):
    # p_0 favours concise, p_1 (as feedback would have written it) favours detailed.
    run = _loop(tmp_path, ["loop.synthetic_fraction=0.2", _shares_override(MAJORITY_CONCISE)])
    run.start()
    write_json(run.gen_dir(1) / "state.json",
               {"shares": {"concise": 0.2, "detailed": 0.8},
                "population": {"concise": 20.0, "detailed": 80.0}})
    write_jsonl(run.gen_dir(0) / "synthetic.jsonl", [
        {"id": f"syn-0-{i}", "group": "concise", "prompt": "p", "response": "r",
         "source": "synthetic", "generation": 0, "meta": {"weight": 1.0}}
        for i in range(100)
    ])
    records = run.assemble(0)
    real = [r for r in records if r["source"] == "real"]
    assert len(real) == 400  # round(|S|·(1 − λ)/λ) = 100 · 0.8 / 0.2
    assert_follows_share(real, "detailed", 0.8)
    assert all(r["response"] and r["prompt"].endswith(CUES[r["group"]]) for r in real)


def test_with_no_synthetic_fraction_the_training_set_is_n_real_examples_drawn_by_next_shares(tmp_path):
    run = _loop(tmp_path, ["loop.synthetic_fraction=0", _shares_override(MAJORITY_DETAILED)])
    run.start()
    write_json(run.gen_dir(1) / "state.json",
               {"shares": MAJORITY_DETAILED, "population": {"concise": 10.0, "detailed": 90.0}})
    write_jsonl(run.gen_dir(0) / "synthetic.jsonl", [])
    records = run.assemble(0)
    assert len(records) == SERVED and {r["source"] for r in records} == {"real"}
    assert_follows_share(records, "detailed", 0.9)


@pytest.mark.parametrize(
    ("overrides", "warned"),
    [
        (["task.params.group_cue=false", "loop.synthetic_fraction=1"], True),
        (["loop.synthetic_fraction=1"], False),  # group_cue is on by default
        (["task.params.group_cue=false", "loop.synthetic_fraction=0.5"], False),
        (["task.name=news", "loop.synthetic_fraction=1"], False),
        (["task.name=math", "loop.synthetic_fraction=1"], False),
    ],
)
def test_a_design_the_shares_cannot_reach_is_warned_about(tmp_path, caplog, overrides, warned):
    run = _loop(tmp_path, overrides)
    with caplog.at_level(logging.WARNING, logger="biasloop.loop"):
        assert run.warn_if_no_causal_path() is warned
    assert ("causal path" in caplog.text) is warned
