"""``biasloop analyze RUN_DIR``: why bias is inherited, and what each mitigation changed.

Reads a finished (or partly finished) bias inheritance run and writes, into
``RUN_DIR/analysis/``:

==============================  ==========================================================
``values.parquet``              per model × reference item × option: model and reference
                                shares, the item's Jensen–Shannon distance
``group_data.parquet``          per model × axis × group: groups detected in neutral-prompt
                                generations against target shares (+ the chi-square test in
                                ``group_data_tests.parquet``)
``augmented_groups.parquet``    per fine-tune: groups detected in its augmented data (as
                                trained, i.e. after a ``mask``) against the targeted group
``distribution.parquet``        per fine-tune: MMD² and its p-value, classifier AUC and its
                                p-value, original against augmented data (as trained)
``mitigations.parquet``         each condition against the baseline condition, per seed,
                                fine-tune, evaluation, metric and group, with paired p-values
``figures/*.png``, ``summary.md``  the plots, and the headline numbers as tables
==============================  ==========================================================

A *model* is ``M_0`` or a fine-tune; models with identical training inputs in
several conditions (e.g. every condition's ``γ = 0`` model) are analysed once.
Model results are cached in ``analysis/models/`` so an interrupted analysis
resumes; everything is seeded from the run's seeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biasloop.analysis import distribution, group_data, values
from biasloop.analysis.plots import (
    plot_distribution,
    plot_group_shares,
    plot_value_misalignment,
)
from biasloop.config.load import condition_names, resolved_condition, validate_config
from biasloop.config.schema import ExperimentConfig, GenerationConfig
from biasloop.errors import BiasloopError
from biasloop.resources.cues import LexiconSources, load_lexicons
from biasloop.io import read_json, read_jsonl, write_json, write_table, write_text
from biasloop.store import RunStore
from biasloop.tracking import Track, no_progress
from biasloop.seeding import derive_seed, rng

log = logging.getLogger("biasloop.analysis")



@dataclass(frozen=True, kw_only=True)
class AnalysisSettings:
    """What ``analyze`` computes and how hard it tries."""

    reference: str = values.BUILTIN_REFERENCE
    neutral_texts: int = 48
    permutations: int = 1000
    classifier_permutations: int = 100
    baseline: str = "none"
    models: bool = True  # the model-based parts: values and neutral-prompt generations


@dataclass(frozen=True, kw_only=True)
class ModelUnit:
    """One model of the run: ``M_0`` or a fine-tune, where it lives and its cache key."""

    condition: str
    seed: int
    label: str  # "base" or "ratio=0.5,type=...,round=1"
    folder: Path | None  # the fine-tune's folder (train.json, model/); None for M_0
    key: str

    @property
    def model_dir(self) -> Path | None:
        return None if self.folder is None else self.folder / "model"


def run_config(store: RunStore) -> ExperimentConfig:
    config = validate_config(store.manifest()["config"], source=str(store.manifest_path))
    if config.study != "inheritance":
        raise BiasloopError(
            f"{store.root}: analyze reads bias inheritance runs; this run's study is "
            f"{config.study!r}"
        )
    return config


def discover_units(store: RunStore, config: ExperimentConfig) -> list[ModelUnit]:
    """``M_0`` of each seed and every finished fine-tune of every condition × seed."""
    from biasloop.inherit.units import parse_label

    units = []
    for seed in config.seeds or [config.seed]:
        for condition in condition_names(config):
            folder = store.path("conditions", condition, f"seed-{seed}")
            if not folder.is_dir():
                continue
            units.append(ModelUnit(condition=condition, seed=seed, label="base", folder=None,
                                   key=f"base-seed-{seed}"))
            for trained in sorted(folder.glob("round-*/ratio-*/*/train.json")):
                unit_dir = trained.parent
                label = (
                    f"ratio={unit_dir.parent.name.removeprefix('ratio-')},"
                    f"type={unit_dir.name},round={unit_dir.parent.parent.name.removeprefix('round-')}"
                )
                if parse_label(label) is None:
                    continue
                key = read_json(trained).get("key") or hashlib.sha256(
                    str(unit_dir).encode()).hexdigest()[:16]
                units.append(ModelUnit(condition=condition, seed=seed, label=label,
                                       folder=unit_dir, key=key))
    if not units:
        raise BiasloopError(f"{store.root}: no condition has started; nothing to analyse")
    return units


# --------------------------------------------------------------------------- model analyses


def neutral_prompts(config: ExperimentConfig, seed: int, count: int) -> list[str]:
    """``count`` neutral augmentation prompts (no group asked for), the same for every model."""
    from biasloop.inherit.study import composer_for, name_tables

    augment_names, _ = name_tables(config)
    composer = composer_for(config, "neutral", augment_names)
    return [composer.compose(i, rng(seed, "analysis-neutral", i)).prompt for i in range(count)]


def analyse_models(
    store: RunStore,
    config: ExperimentConfig,
    units: Sequence[ModelUnit],
    settings: AnalysisSettings,
    reference: values.ValueReference,
    track: Track,
) -> dict[str, dict[str, Any]]:
    """Per distinct model key: its option distributions and neutral-prompt texts (cached)."""
    cache = store.path("analysis", "models")
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for unit in {u.key: u for u in units}.values():
        path = cache / f"{unit.key}.json"
        if path.exists():
            cached = read_json(path)
            if cached.get("reference") == reference.name and len(
                cached.get("neutral_texts", [])
            ) == settings.neutral_texts:
                results[unit.key] = cached
                continue
        todo.append(unit)
    if not todo:
        return results
    from biasloop.runner.studies import Components

    # A condition may name its own model; loaded once each, one in memory at a time.
    components = Components()
    todo.sort(key=lambda u: resolved_condition(config, u.condition).model.model_dump_json())
    augmentation = config.inheritance.augmentation
    generation = GenerationConfig(
        max_new_tokens=augmentation.max_new_tokens,
        temperature=augmentation.temperature,
        top_p=augmentation.top_p,
        batch_size=config.generation.batch_size,
    )
    for unit in track("analyse models", todo):
        backend = components.backend(resolved_condition(config, unit.condition).model)
        backend.reset_to_base()
        if unit.model_dir is not None:
            backend.load_trained(unit.model_dir)
        distributions = values.model_distributions(
            backend, reference, batch_size=config.inheritance.evaluation_batch_size
        )
        texts = (
            [
                samples[0]
                for samples in backend.generate(
                    neutral_prompts(config, unit.seed, settings.neutral_texts),
                    config=generation,
                    seed=derive_seed(unit.seed, "analysis-neutral"),
                )
            ]
            if settings.neutral_texts
            else []
        )
        result = {
            "reference": reference.name,
            "distributions": [d.tolist() for d in distributions],
            "neutral_texts": texts,
        }
        write_json(cache / f"{unit.key}.json", result)
        results[unit.key] = result
    return results


def _unit_columns(unit: ModelUnit) -> dict[str, Any]:
    return {"condition": unit.condition, "seed": unit.seed, "model": unit.label,
            "model_key": unit.key}


def one_row_per_model(frame: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """Rows of models shared by several conditions kept once, ``condition`` listing them."""
    if frame.empty or "model_key" not in frame:
        return frame
    shared = frame.groupby("model_key")["condition"].agg(
        lambda names: "all" if set(names) >= set(conditions) and len(conditions) > 1
        else "+".join(dict.fromkeys(names))
    )
    first = frame.drop_duplicates([c for c in frame.columns if c != "condition"])
    return first.assign(condition=first["model_key"].map(shared)).drop(columns="model_key")


def across_seeds(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per condition × fine-tune × metric × group: mean difference over seeds, Fisher's combined p.

    Fisher's method: ``X = −2 Σ_s ln p_s`` is χ² with ``2S`` degrees of freedom under
    the null hypothesis in every seed (``scipy.stats.combine_pvalues``).
    """
    from scipy.stats import combine_pvalues

    if comparison.empty:
        return comparison
    keys = ["condition", "baseline", "model", "task", "metric", "group"]

    def combine(part: pd.DataFrame) -> pd.Series:
        p_values = part["p_value"].dropna().clip(lower=1e-12)
        return pd.Series({
            "seeds": len(part), "value": part["value"].mean(),
            "baseline_value": part["baseline_value"].mean(),
            "difference": part["difference"].mean(),
            "min_p_value": p_values.min() if len(p_values) else np.nan,
            "fisher_p_value": (combine_pvalues(p_values, method="fisher").pvalue
                               if len(p_values) else np.nan),
        })

    return comparison.groupby(keys, sort=False).apply(combine, include_groups=False).reset_index()


def value_table(
    units: Sequence[ModelUnit], results: dict[str, dict[str, Any]], reference: values.ValueReference
) -> pd.DataFrame:
    frames = []
    for unit in units:
        distributions = [np.asarray(d) for d in results[unit.key]["distributions"]]
        frame = values.value_misalignment(distributions, reference)
        frames.append(frame.assign(**_unit_columns(unit), reference=reference.name))
    return pd.concat(frames, ignore_index=True)


def axis_targets(config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Uniform target shares over the groups of gender and culture (the axes names signal)."""
    from biasloop.inherit.templates import load_attributes

    attributes = load_attributes(config.inheritance.attributes)
    return {
        axis: {group: 1.0 / len(attributes[axis]) for group in attributes[axis]}
        for axis in ("gender", "culture")
        if axis in attributes
    }


def group_tables(
    units: Sequence[ModelUnit],
    results: dict[str, dict[str, Any]],
    config: ExperimentConfig,
    lexicons: Sequence[Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    shares, tests = [], []
    for unit in units:
        texts = results[unit.key]["neutral_texts"]
        for axis, targets in axis_targets(config).items():
            counts = group_data.about_counts(texts, lexicons, axis)
            table, summary = group_data.proportion_test(counts, targets)
            shares.append(table.assign(**_unit_columns(unit), axis=axis))
            tests.append({**_unit_columns(unit), "axis": axis, "texts": len(texts), **summary})
    return pd.concat(shares, ignore_index=True), pd.DataFrame(tests)


# --------------------------------------------------------------------------- data analyses


def split_training_data(unit: ModelUnit) -> tuple[list[dict], list[dict]]:
    """(original, augmented) records the fine-tune was trained on, as trained."""
    records = read_jsonl(unit.folder / "train.jsonl")
    return (
        [r for r in records if r["source"] != "synthetic"],
        [r for r in records if r["source"] == "synthetic"],
    )


def data_tables(
    units: Sequence[ModelUnit],
    config: ExperimentConfig,
    settings: AnalysisSettings,
    lexicons: Sequence[Any],
    track: Track,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple, tuple[np.ndarray, np.ndarray]]]:
    """Distribution tests and augmented-data groups per fine-tune with augmented data."""
    attribute = config.inheritance.attribute
    distribution_rows, group_rows = [], []
    projections: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    done: dict[str, dict[str, float]] = {}  # by texts: conditions sharing data share results
    projected: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    trained = [u for u in units if u.folder is not None]
    for unit in track("analyse training data", trained):
        original, augmented = split_training_data(unit)
        if not augmented:
            continue
        original_texts = [r["response"] for r in original]
        augmented_texts = [r["response"] for r in augmented]
        digest = hashlib.sha256(
            json.dumps([original_texts, augmented_texts]).encode()
        ).hexdigest()
        if digest not in done:
            x, y = distribution.embed(original_texts), distribution.embed(augmented_texts)
            seed = derive_seed(unit.seed, "analysis-distribution")
            mmd2, mmd_p = distribution.mmd_test(x, y, permutations=settings.permutations, seed=seed)
            auc, auc_p = distribution.classifier_test(
                x, y, permutations=settings.classifier_permutations, seed=seed
            )
            done[digest] = {"mmd2": mmd2, "mmd_p_value": mmd_p, "classifier_auc": auc,
                            "classifier_p_value": auc_p}
            projected[digest] = (
                distribution.projection(x, y), np.r_[np.zeros(len(x)), np.ones(len(y))]
            )
        projections[(unit.seed, unit.label, unit.condition)] = projected[digest]
        distribution_rows.append({**_unit_columns(unit), "original_texts": len(original_texts),
                                  "augmented_texts": len(augmented_texts), **done[digest]})
        counts = group_data.about_counts(augmented_texts, lexicons, attribute)
        targeted = [r.get("meta", {}).get("target_group") for r in augmented]
        on_target = sum(
            group_data.about_counts([text], lexicons, attribute).get(target, 0)
            for text, target in zip(augmented_texts, targeted)
        )
        group_rows.append(
            {
                **_unit_columns(unit),
                "axis": attribute,
                "texts": len(augmented_texts),
                "about_targeted_group": on_target / len(augmented_texts),
                **{f"about_{group}": n / len(augmented_texts) for group, n in sorted(counts.items())},
            }
        )
    return pd.DataFrame(distribution_rows), pd.DataFrame(group_rows), projections


# --------------------------------------------------------------------------- mitigations


def mitigation_table(
    store: RunStore, config: ExperimentConfig, units: Sequence[ModelUnit], baseline: str
) -> pd.DataFrame:
    """Each condition's fine-tunes against the baseline condition's, paired by item.

    Rows: ``value`` (the condition's statistic), ``baseline_value`` and
    ``p_value`` of the paired test (``inheritance.significance.method``) on the
    same evaluation items; for gaps (group = the grouping) the test is on the gap.
    """
    from biasloop.inherit.measure import MeasureSettings, measure
    from biasloop.inherit.study import build_evaluations, name_tables

    names = condition_names(config)
    if baseline not in names or len(names) < 2:
        return pd.DataFrame()
    _, eval_names = name_tables(config)
    evaluations = build_evaluations(config, eval_names)
    settings = MeasureSettings(
        bootstrap_samples=0,
        confidence=config.metrics.confidence,
        significance_method=config.inheritance.significance.method,
        resamples=config.inheritance.significance.resamples,
    )
    by_place = {(u.condition, u.seed, u.label): u for u in units if u.folder is not None}
    rows = []
    for (condition, seed, label), unit in sorted(by_place.items()):
        reference = by_place.get((baseline, seed, label))
        if condition == baseline or reference is None or label.startswith("ratio=0,"):
            continue
        for evaluation in evaluations:
            mine = unit.folder / "outputs" / f"{evaluation.name}.jsonl"
            theirs = reference.folder / "outputs" / f"{evaluation.name}.jsonl"
            if not (mine.exists() and theirs.exists()):
                continue
            base_records = read_jsonl(theirs)
            seed_of = derive_seed(seed, "analysis-mitigation", label, evaluation.name)
            compared = measure(evaluation, read_jsonl(mine), reference=base_records,
                               settings=settings, seed=seed_of)
            baseline_rows = measure(evaluation, base_records, reference=None, settings=settings,
                                    seed=seed_of)
            baseline_value = {(r["metric"], r["group"]): r["value"] for r in baseline_rows}
            p_values = {
                (r["metric"].removesuffix("_vs_ratio0_p_value"), r["group"]): r["value"]
                for r in compared
                if r["metric"].endswith("_vs_ratio0_p_value")
            }
            for row in compared:
                key = (row["metric"], row["group"])
                if row["metric"].endswith("_p_value") or key not in p_values:
                    continue
                rows.append({
                    "condition": condition, "baseline": baseline, "seed": seed, "model": label,
                    "task": evaluation.name, "metric": row["metric"], "group": row["group"],
                    "value": row["value"], "baseline_value": baseline_value.get(key, np.nan),
                    "difference": row["value"] - baseline_value.get(key, np.nan),
                    "p_value": p_values[key],
                })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the whole analysis


def analyze_run(
    run_dir: Path, *, settings: AnalysisSettings | None = None, track: Track | None = None
) -> Path:
    """Analyse ``run_dir`` (see the module docstring); returns ``RUN_DIR/analysis``."""
    settings = settings or AnalysisSettings()
    track = track or no_progress
    store = RunStore(run_dir)
    if not store.exists():
        raise BiasloopError(f"{str(run_dir)!r} is not a run directory (no manifest.json)")
    config = run_config(store)
    reference = values.load_reference(settings.reference)
    units = discover_units(store, config)
    lexicons = load_lexicons(
        ["gender_terms", "names", "culture_terms"],
        sources=LexiconSources(names_file=config.inheritance.names.file),
    )
    out = store.path("analysis")
    figures = out / "figures"
    tables: dict[str, pd.DataFrame] = {}
    if settings.models:
        results = analyse_models(store, config, units, settings, reference, track)
        tables["values"] = value_table(units, results, reference)
        if settings.neutral_texts:
            tables["group_data"], tables["group_data_tests"] = group_tables(
                units, results, config, lexicons
            )
    tables["distribution"], tables["augmented_groups"], projections = data_tables(
        units, config, settings, lexicons, track
    )
    tables["mitigations"] = mitigation_table(store, config, units, settings.baseline)
    tables["mitigations_across_seeds"] = across_seeds(tables["mitigations"])
    for name, frame in tables.items():
        if not frame.empty:
            write_table(out / f"{name}.parquet", frame)
    conditions = condition_names(config)
    if "values" in tables:
        plot_value_misalignment(one_row_per_model(tables["values"], conditions), figures)
    if not tables.get("group_data", pd.DataFrame()).empty:
        plot_group_shares(one_row_per_model(tables["group_data"], conditions), figures)
    plot_distribution(projections, tables["distribution"], figures)
    write_text(out / "summary.md", summary_markdown(tables, settings, config))
    return out


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3g") if not frame.empty else "(none)"


def summary_markdown(
    tables: dict[str, pd.DataFrame], settings: AnalysisSettings, config: ExperimentConfig
) -> str:
    """The headline numbers of every table, as Markdown."""
    conditions = condition_names(config)
    parts = [f"# Misalignment analysis of `{config.name}`", "",
             "A model shared by several conditions (same training inputs) is listed once; "
             "`all` means every condition.", ""]
    if "values" in tables:
        per_model = one_row_per_model(
            tables["values"].drop_duplicates(["condition", "seed", "model", "item"])
            .groupby(["condition", "seed", "model", "model_key"], as_index=False)["js_distance"]
            .mean().rename(columns={"js_distance": "mean_js_distance"}),
            conditions,
        )
        parts += [f"## Value misalignment (reference `{settings.reference}`)", "",
                  "Mean Jensen–Shannon distance between the model's and the reference "
                  "population's answer shares (0 = identical, 1 = disjoint).", "",
                  _markdown(per_model), ""]
    if "group_data_tests" in tables:
        parts += ["## Group-data misalignment (neutral prompts)", "",
                  f"{settings.neutral_texts} generations per model for prompts naming no group; "
                  "chi-square test of the detected groups against uniform target shares.", "",
                  _markdown(one_row_per_model(tables["group_data_tests"], conditions)), ""]
    parts += ["## Groups in the augmented data (as trained)", "",
              "Share of augmented texts whose cues point to the targeted group only "
              "(`about_none`: no cue left, e.g. after masking).", "",
              _markdown(one_row_per_model(tables["augmented_groups"], conditions)), "",
              "## Distribution misalignment (original vs augmented, as trained)", "",
              f"MMD² with {settings.permutations} permutations; logistic-regression AUC with "
              f"{settings.classifier_permutations} permutations.", "",
              _markdown(one_row_per_model(tables["distribution"], conditions)), ""]
    comparison = tables["mitigations"]
    if not comparison.empty:
        counts = (
            comparison.assign(significant=comparison["p_value"] < 0.05)
            .groupby(["condition", "model"], as_index=False)
            .agg(tests=("p_value", "size"), below_0_05=("significant", "sum"))
        )
        combined = tables["mitigations_across_seeds"]
        significant = combined[combined["fisher_p_value"] < 0.05].sort_values("fisher_p_value")
        parts += [f"## Mitigations against `{settings.baseline}`", "",
                  "Paired tests on the same evaluation items, per seed "
                  "(`mitigations.parquet`); below 0.05 is expected in about 5 % of tests by "
                  "chance alone.", "", _markdown(counts), "",
                  "Across seeds (mean difference, Fisher's combined p), combined p < 0.05:", "",
                  _markdown(significant.head(40)), ""]
    return "\n".join(parts) + "\n"
