"""Inputs longer than the model's context are cut to fit, with a warning, never a crash."""

from __future__ import annotations

import logging

import pytest

from biasloop.config.schema import GenerationConfig, TrainingConfig
from biasloop.errors import ConfigError
from biasloop.models.base import TrainExample

HUGE = "word " * 200_000  # about 200k tokens: 100 times the tiny model's context


def test_a_huge_prompt_is_cut_to_its_end_and_generates(tiny_backend, caplog):
    config = GenerationConfig(max_new_tokens=4, temperature=0.0, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="biasloop.models"):
        answers = tiny_backend.generate([HUGE + "What colour is the sky?", "Hi"], config=config)
    assert len(answers) == 2 and all(len(a) == 1 for a in answers)
    assert "1 of 2 prompts are longer than the model's context" in caplog.text
    # The end of the prompt is what is kept: the same answer as for its last tokens alone.
    room = tiny_backend.context_length - config.max_new_tokens
    assert f"cut to its last {room} tokens" in caplog.text


def test_a_huge_context_is_cut_from_its_start_when_scored(tiny_backend, caplog):
    with caplog.at_level(logging.WARNING, logger="biasloop.models"):
        scores = tiny_backend.loglik([HUGE, "The sky is"], [" blue", " blue"])
    assert len(scores) == 2 and all(score < 0 for score in scores)
    assert "1 of 2 scored texts are longer than the model's context" in caplog.text
    # A continuation that alone overflows the context keeps its last tokens.
    (long_continuation,) = tiny_backend.loglik(["Say:"], [HUGE])
    assert long_continuation < 0


def test_huge_texts_embed_and_train_within_the_context(tiny_backend):
    assert tiny_backend.hidden_states([HUGE, "short"]).shape[0] == 2
    result = tiny_backend.train(
        [TrainExample(prompt=HUGE, response="ok"), TrainExample(prompt="Hi", response="Hello")],
        config=TrainingConfig(batch_size=2, epochs=1, max_length=8192), seed=0,  # > context
    )
    assert len(result.step_losses) == 1


def test_a_generation_budget_beyond_the_context_is_one_line(tiny_backend):
    config = GenerationConfig(max_new_tokens=tiny_backend.context_length, temperature=0.0)
    with pytest.raises(ConfigError, match=r"generation\.max_new_tokens = 2048 leaves no room"):
        tiny_backend.generate(["Hi"], config=config)
