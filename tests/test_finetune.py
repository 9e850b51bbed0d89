"""One fine-tune for both studies: where it starts, what it trains on, what it records."""

from __future__ import annotations

import math
from pathlib import Path

from biasloop.config.schema import TrainingConfig
from biasloop.finetune import fine_tune, train_example
from biasloop.models.base import TrainResult


class RecordingBackend:
    """Records the calls ``fine_tune`` makes; trains nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def reset_to_base(self) -> None:
        self.calls.append(("reset_to_base",))

    def train(self, examples, *, config, seed, extra_loss=None):
        self.calls.append(("train", list(examples), seed, extra_loss))
        return TrainResult(step_losses=[1.0, 0.5], tokens_seen=12, seconds=0.25)

    def save(self, path: Path) -> None:
        self.calls.append(("save", path))


RECORDS = [
    {"prompt": "p1", "response": "r1", "source": "real", "meta": {}},
    {"prompt": "p2", "response": "r2", "source": "synthetic", "meta": {"weight": 2.0}},
]


def test_a_record_becomes_a_weighted_example_marked_augmented_if_synthetic():
    real, synthetic = (train_example(r) for r in RECORDS)
    assert (real.prompt, real.response, real.weight, real.is_augmented) == ("p1", "r1", 1.0, False)
    assert (synthetic.weight, synthetic.is_augmented) == (2.0, True)
    assert train_example({"prompt": "p", "response": "r", "source": "real"}).weight == 1.0


def test_from_base_resets_then_trains_then_saves_and_returns_the_losses(tmp_path):
    backend = RecordingBackend()
    summary = fine_tune(backend, RECORDS, training=TrainingConfig(), seed=7,
                        save_to=tmp_path / "model")
    assert [call[0] for call in backend.calls] == ["reset_to_base", "train", "save"]
    assert backend.calls[1][2] == 7 and backend.calls[2][1] == tmp_path / "model"
    assert summary == {"examples": 2, "step_losses": [1.0, 0.5], "mean_loss": 0.75,
                       "tokens": 12, "seconds": 0.25}


def test_continuing_trains_the_model_the_backend_holds(tmp_path):
    backend = RecordingBackend()
    fine_tune(backend, RECORDS, training=TrainingConfig(), seed=0, save_to=tmp_path,
              from_base=False)
    assert [call[0] for call in backend.calls] == ["train", "save"]


def test_the_extra_loss_term_reaches_the_backend(tmp_path):
    backend = RecordingBackend()

    def term(outputs, batch):
        return 0.0

    fine_tune(backend, RECORDS, training=TrainingConfig(), seed=0, save_to=tmp_path,
              extra_loss=term)
    assert backend.calls[1][3] is term


def test_no_records_saves_the_starting_model_untrained(tmp_path):
    backend = RecordingBackend()
    summary = fine_tune(backend, [], training=TrainingConfig(), seed=0, save_to=tmp_path)
    assert [call[0] for call in backend.calls] == ["reset_to_base", "save"]
    assert summary["examples"] == 0 and summary["step_losses"] == []
    assert math.isnan(summary["mean_loss"]) and summary["tokens"] == 0
