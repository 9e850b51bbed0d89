"""The bias inheritance study (SPEC section 3), one condition and seed at a time.

For each seed the study

1. draws the original data ``D_o`` (fixed from here on) and builds every
   evaluation's items, dropping any item that shares text with ``D_o`` or the
   augmentation prompts;
2. evaluates the base model ``M_0`` (round 0, condition ``base``);
3. fine-tunes ``M_0`` on ``D_o`` alone (``γ = 0``, the reference of every test);
4. for each round ``r = 1..R`` and bias type ``t``: gets the augmented pool
   (round 1: written once by ``M_0`` and shared by every ratio; round ``r > 1``:
   written by the round ``r − 1`` model of the same ratio and type), and for each
   ``γ > 0`` fine-tunes ``M_0`` on ``D_o`` plus the pool's first ``n_a(γ)`` texts
   and evaluates it.

Every condition of a seed draws the same random numbers (augmentation prompts
and sampling, training order and dropout, evaluation sampling), so two conditions
differ only by what their configs change: a paired comparison. Work whose inputs
are identical in another condition of the seed (the round-1 pool; a fine-tune on
the same data, e.g. every condition's ``γ = 0`` model under a data mitigation) is
copied from it rather than recomputed (:meth:`biasloop.store.RunStore.shared`, with
the inputs of :mod:`biasloop.inherit.keys`). ``mitigation.name`` applies to every
fine-tune (``token``/``mask`` rewrite the augmented records; ``loss`` adds its term).

Every unit's output goes through the run store (:func:`biasloop.store.cached` or
``RunStore.shared``): read back if it exists, else computed and written last, so a
killed run resumes where it stopped. Layout below ``conditions/<condition>/seed-<seed>/``::

    original.jsonl                      D_o
    eval/items/<evaluation>.jsonl       fixed evaluation items
    eval/items.json                     item counts; items dropped for overlap, skipped, unassigned
    base/                               M_0: outputs/<evaluation>.jsonl, metrics.parquet
    round-1/augment/<type>/chunk-*.jsonl, pool.json     round-1 augmented pool per type
    round-<r>/ratio-<γ>/<type>/         train.jsonl, model/, train.json, outputs/, metrics.parquet
                                        (round > 1 also augment/: its pool)

Rows of ``metrics.parquet`` carry ``generation`` = round, ``condition`` =
``ratio=<γ>,type=<t>,round=<r>`` (or ``base``; prefixed ``<condition>/`` for named
config conditions), and the extra columns ``bias_ratio``, ``bias_type``,
``round``, ``task`` and ``study_condition`` (:mod:`biasloop.inherit.unit_metrics`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from biasloop.config.schema import ExperimentConfig
from biasloop.finetune import fine_tune
from biasloop.inherit.components import (
    augmentation_prompts,
    build_evaluations,
    name_tables,
    pool_size,
)
from biasloop.inherit.evaluations import EvalItem, Evaluation
from biasloop.inherit.items import fixed_items
from biasloop.inherit.keys import pool_inputs, training_inputs
from biasloop.inherit.measure import MeasureSettings
from biasloop.inherit.mixing import augmented_count, mix, realized_ratio
from biasloop.inherit.original import draw_original
from biasloop.inherit.overlap import OverlapIndex
from biasloop.inherit.pools import read_pool, write_pool
from biasloop.inherit.unit_metrics import unit_metrics
from biasloop.inherit.units import Unit
from biasloop.mitigate import (
    TrainingContext,
    mitigation_params,
    prepare_training_records,
    training_loss_term,
)
from biasloop.models.base import ExtraLoss, ModelBackend
from biasloop.seeding import derive_seed
from biasloop.store import (
    RunStore,
    cached,
    content_key,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from biasloop.tracking import Track, no_progress

log = logging.getLogger("biasloop.inherit")

Outputs = dict[str, list[dict[str, Any]]]



class InheritanceRun:
    """The study for one condition × seed, resumable from its run-store folder."""

    def __init__(
        self,
        *,
        config: ExperimentConfig,
        condition: str,
        seed: int,
        store: RunStore,
        backend: Callable[[], ModelBackend],
        augmenter: Callable[[], ModelBackend] | None = None,
        track: Track = no_progress,
    ) -> None:
        self.config = config
        self.settings = config.inheritance
        self.condition = condition
        self.seed = seed
        self.store = store
        self._get_backend = backend
        self._get_augmenter = augmenter
        self._current: ModelBackend | None = None
        self.track = track
        self.folder = store.path("conditions", condition, f"seed-{seed}")
        self.loaded: Path | None | str = "unknown"  # which model the backend holds
        self.augment_names, self.eval_names = name_tables(config)
        self.evaluations = build_evaluations(config, self.eval_names)
        self.measure_settings = MeasureSettings(
            bootstrap_samples=config.metrics.bootstrap_samples,
            confidence=config.metrics.confidence,
            significance_method=self.settings.significance.method,
            resamples=self.settings.significance.resamples,
        )

    # ------------------------------------------------------------------ model state

    def backend(self) -> ModelBackend:
        backend = self._get_backend()
        if backend is not self._current:  # a fresh load holds M_0
            self._current, self.loaded = backend, None
        return backend

    def augmenter(self) -> ModelBackend:
        """The model writing round-1 augmented texts: ``augmentation.model`` or ``M_0``."""
        if self._get_augmenter is None:
            return self.use_model(None)
        return self._get_augmenter()

    def use_model(self, model_dir: Path | None) -> ModelBackend:
        """The backend holding ``M_0`` (``None``) or the fine-tune saved in ``model_dir``."""
        backend = self.backend()
        if self.loaded != model_dir:
            backend.reset_to_base()
            if model_dir is not None:
                backend.load_trained(model_dir)
            self.loaded = model_dir
        return backend

    def unit_dir(self, unit: Unit) -> Path:
        return self.folder.joinpath(*unit.parts())

    def model_dir(self, unit: Unit) -> Path | None:
        return None if unit.is_base else self.unit_dir(unit) / "model"

    # ------------------------------------------------------------------ the study

    def run(self) -> None:
        original = self.original()
        items = self.evaluation_items(original)
        if self.settings.evaluate_base:
            self.evaluate(Unit(round=0), items, reference=None)
        reference = Unit(round=1, bias_ratio=0.0)
        self.train(reference, mix(original, [], 0.0))
        reference_outputs = self.evaluate(reference, items, reference=None)
        ratios = [r for r in self.settings.bias_ratios if r > 0]
        for round_index in range(1, self.settings.rounds + 1):
            for bias_type in self.settings.bias_types:
                shared_pool = self.first_round_pool(bias_type, items) if round_index == 1 else None
                for ratio in ratios:
                    unit = Unit(round=round_index, bias_ratio=ratio, bias_type=bias_type)
                    pool = (
                        shared_pool
                        if shared_pool is not None
                        else self.later_round_pool(unit, items)
                    )
                    self.train(unit, mix(original, pool, ratio))
                    self.evaluate(unit, items, reference=reference_outputs)

    # ------------------------------------------------------------------ data

    def original(self) -> list[dict[str, Any]]:
        """``D_o``, drawn once per seed."""
        return cached(
            self.folder / "original.jsonl",
            lambda: draw_original(self.settings.original, seed=self.seed),
        )

    def augmentation_prompts(self) -> list[str]:
        """Every round-1 augmentation prompt (generation and training text) of every type."""
        return augmentation_prompts(self.config, seed=self.seed, names=self.augment_names)

    def evaluation_items(self, original: Sequence[dict[str, Any]]) -> dict[str, list[EvalItem]]:
        """Each evaluation's fixed items, minus those sharing text with training data."""
        folder = self.folder / "eval" / "items"
        counts: dict[str, dict[str, Any]] = {}

        @functools.cache  # built only when an evaluation's items are missing
        def training() -> OverlapIndex:
            return OverlapIndex(
                [
                    *(r["prompt"] for r in original),
                    *(r["response"] for r in original),
                    *self.augmentation_prompts(),
                ]
            )

        def build(evaluation: Evaluation) -> list[dict[str, Any]]:
            kept, counts[evaluation.name] = fixed_items(
                evaluation, seed=self.seed, training=training()
            )
            return [i.record() for i in kept]

        for evaluation in self.evaluations:
            cached(folder / f"{evaluation.name}.jsonl", functools.partial(build, evaluation))
        if counts:
            counts_path = self.folder / "eval" / "items.json"
            previous = read_json(counts_path) if counts_path.exists() else {}
            write_json(counts_path, {**previous, **counts})
        # Read back, so a fresh run uses exactly the items a resumed one reads.
        return {
            e.name: [EvalItem.from_record(r) for r in read_jsonl(folder / f"{e.name}.jsonl")]
            for e in self.evaluations
        }

    def first_round_pool(
        self, bias_type: str, items: dict[str, list[EvalItem]]
    ) -> list[dict[str, Any]]:
        """The round-1 pool of ``bias_type``, written by ``M_0``, sized for the largest ratio.

        Conditions that differ only in training (a mitigation, a training setting)
        then train on the very same augmented texts, and ``M_0`` writes them once.
        """
        folder = self.folder / "round-1" / "augment" / bias_type
        summary = self.store.shared(
            folder / "pool.json",
            lambda: self._write_pool(
                bias_type=bias_type, count=pool_size(self.config), folder=folder,
                round_index=1, writer=None, items=items,
            ),
            inputs=lambda: pool_inputs(
                self.config, seed=self.seed, bias_type=bias_type, round_index=1, writer=None
            ),
            outputs=["chunk-*.jsonl"],
        )
        return read_pool(folder, summary["used"])

    def later_round_pool(
        self, unit: Unit, items: dict[str, list[EvalItem]]
    ) -> list[dict[str, Any]]:
        """Round ``r > 1``: ``n_a(γ)`` texts by the round ``r − 1`` model of the same γ and type.

        Not shared: the writer is this condition's own fine-tune, which the pool's
        inputs name but do not describe.
        """
        writer = Unit(round=unit.round - 1, bias_ratio=unit.bias_ratio, bias_type=unit.bias_type)
        folder = self.unit_dir(unit) / "augment"
        summary = cached(
            folder / "pool.json",
            lambda: {
                **self._write_pool(
                    bias_type=unit.bias_type,
                    count=augmented_count(float(unit.bias_ratio), self.settings.original.size),
                    folder=folder,
                    round_index=unit.round,
                    writer=writer,
                    items=items,
                ),
                "key": content_key(
                    pool_inputs(
                        self.config, seed=self.seed, bias_type=unit.bias_type,
                        round_index=unit.round, writer=writer,
                    )
                ),
            },
        )
        return read_pool(folder, summary["used"])

    def _write_pool(
        self,
        *,
        bias_type: str,
        count: int,
        folder: Path,
        round_index: int,
        writer: Unit | None,
        items: dict[str, list[EvalItem]],
    ) -> dict[str, Any]:
        """Write a pool by ``writer`` (``None``: the augmenter); return its summary without the key."""
        writer_dir = None if writer is None else self.model_dir(writer)
        return write_pool(
            model=self.augmenter if writer is None else lambda: self.use_model(writer_dir),
            bias_type=bias_type,
            names=self.augment_names,
            count=count,
            config=self.config,
            seed=self.seed,
            folder=folder,
            round_index=round_index,
            writer=writer,
            items=items,
            track=self.track,
        )

    # ------------------------------------------------------------------ training

    def train(self, unit: Unit, records: Sequence[dict[str, Any]]) -> None:
        """Fine-tune ``M_0`` on ``records``; the adapter goes to ``<unit>/model``.

        A fine-tune with the same inputs in another condition of the seed (its
        model, the evaluation outputs it has, its data) is copied instead.
        """
        folder = self.unit_dir(unit)
        extra_loss = training_loss_term(self.config.mitigation)

        @functools.cache
        def prepared() -> list[dict[str, Any]]:
            return prepare_training_records(
                records,
                TrainingContext(
                    config=self.config.mitigation,
                    names_file=self.settings.names.file,
                    params=mitigation_params(self.config.mitigation),
                ),
            )

        self.store.shared(
            folder / "train.json",
            lambda: self._fine_tune(unit, prepared(), extra_loss),
            inputs=lambda: training_inputs(
                self.config, seed=self.seed, unit=unit, records=prepared(),
                with_loss_term=extra_loss is not None,
            ),
            outputs=["model", "outputs/*.jsonl", "train.jsonl"],
            requires=["model"],
        )

    def _fine_tune(
        self, unit: Unit, records: list[dict[str, Any]], extra_loss: ExtraLoss | None
    ) -> dict[str, Any]:
        """Train and save ``unit``'s model; return its ``train.json`` summary (without the key)."""
        folder = self.unit_dir(unit)
        log.info(
            "seed %d %s: training on %d examples",
            self.seed,
            unit.label(self.condition),
            len(records),
        )
        write_jsonl(folder / "train.jsonl", records)  # exactly what is trained on
        backend = self.backend()
        self.loaded = "changing"
        trained = fine_tune(
            backend,
            records,
            training=self.config.training,
            seed=derive_seed(self.seed, *unit.parts(), "train"),
            save_to=folder / "model",
            extra_loss=extra_loss,
        )
        self.loaded = folder / "model"
        augmented = sum(1 for r in records if r["source"] == "synthetic")
        return {
            "examples": len(records),
            "augmented": augmented,
            "realized_bias_ratio": realized_ratio(augmented, len(records) - augmented),
            **trained,
        }

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        unit: Unit,
        items: dict[str, list[EvalItem]],
        reference: Outputs | None,
    ) -> Outputs:
        """Every evaluation's per-item records for ``unit``'s model, then its metrics table."""
        folder = self.unit_dir(unit)
        outputs: Outputs = {}
        for evaluation in self.track(f"evaluate {unit.label()}", self.evaluations):
            outputs[evaluation.name] = cached(
                folder / "outputs" / f"{evaluation.name}.jsonl",
                functools.partial(self._respond, unit, evaluation, items[evaluation.name]),
            )
        cached(
            folder / "metrics.parquet",
            lambda: unit_metrics(
                unit=unit,
                condition=self.condition,
                seed=self.seed,
                evaluations=self.evaluations,
                outputs=outputs,
                reference=reference,
                trained=None if unit.is_base else read_json(folder / "train.json"),
                settings=self.measure_settings,
            ),
        )
        return outputs

    def _respond(
        self, unit: Unit, evaluation: Evaluation, rows: list[EvalItem]
    ) -> list[dict[str, Any]]:
        """``evaluation``'s per-item records: each item with the answer of ``unit``'s model."""
        backend = self.use_model(self.model_dir(unit))
        answers = evaluation.respond(
            backend, rows, seed=derive_seed(self.seed, "eval", evaluation.name)
        )
        return [{**item.record(), **answer} for item, answer in zip(rows, answers)]
