"""The experiment in one sentence, from its resolved config (and the groups its table names)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from biasloop.report.collect import ReportInput
from biasloop.report.compare import control_condition
from biasloop.report.wording import short_number


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _count(number: Any, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _seeds(metrics: pd.DataFrame, config: dict[str, Any]) -> str:
    seeds = (
        sorted(metrics["seed"].unique())
        if len(metrics)
        else (config.get("seeds") or [config.get("seed", 0)])
    )
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"{len(seeds)} seeds"


def _condition_phrase(
    config: dict[str, Any], conditions: Sequence[str], control: str | None
) -> str:
    overrides = config.get("conditions") or {}

    def one(name: str) -> str:
        settings = ", ".join(
            f"{k}={short_number(v)}" for k, v in (overrides.get(name) or {}).items()
        )
        if name == control:
            return f"{name} (the control{': ' + settings if settings else ''})"
        return f"{name} ({settings})" if settings else name

    if len(conditions) < 2:
        if config.get("study", "scpl") != "scpl":
            return ""
        feedback = (config.get("feedback") or {}).get("rule")
        mitigation = (config.get("mitigation") or {}).get("name")
        return f"with feedback rule {feedback} and mitigation {mitigation}" if feedback else ""
    others = [one(c) for c in conditions if c != control]
    return (
        f"comparing {one(control)} with {_join(others)}"
        if control
        else f"comparing {_join(others)}"
    )


def _scpl(config: dict[str, Any], groups: Sequence[str]) -> str:
    loop = config.get("loop") or {}
    task = (config.get("task") or {}).get("name", "?")
    model = (config.get("model") or {}).get("name", "?")
    kind = loop.get("type", "retrain")
    how = "fine-tuned from the previous one" if kind == "incremental" else "retrained from M_0"
    fraction = float(loop.get("synthetic_fraction", 1.0))
    group_text = f" (groups {_join(groups)})" if groups else ""
    return (
        f"A self-consuming performative loop on the {task} task{group_text} with {model}: "
        f"{_count(loop.get('generations', '?'), 'generation')} of "
        f"{loop.get('queries_per_generation', '?')} "
        f"served queries, {fraction:.0%} synthetic training data "
        f"({loop.get('data_policy', 'replace')}), "
        f"each model {how} ({kind})"
    )


def _inheritance(config: dict[str, Any], metrics: pd.DataFrame, groups: Sequence[str]) -> str:
    section = config.get("inheritance") or {}
    model = (config.get("model") or {}).get("name", "?")
    if "bias_ratio" in metrics.columns and metrics["bias_ratio"].notna().any():
        ratios = sorted(float(r) for r in metrics["bias_ratio"].dropna().unique())
    else:
        ratios = [float(r) for r in section.get("bias_ratios", [])]
    types = list(section.get("bias_types") or [])
    if not types and "bias_type" in metrics.columns:
        types = [str(t) for t in metrics["bias_type"].dropna().unique() if t != "none"]
    text = (
        f"Bias inheritance with {model}: "
        "models fine-tuned on original data mixed with augmented data"
    )
    if types:
        text += f" carrying {_join(types)} bias"
        attribute, targets = section.get("attribute"), section.get("target_groups")
        if attribute:
            text += f" about {attribute}" + (f" (against {_join(targets)})" if targets else "")
    text += f", at bias ratios γ ∈ {{{', '.join(short_number(r) for r in ratios)}}}"
    rounds = section.get("rounds")
    if isinstance(rounds, int) and rounds > 1:
        text += f" over {rounds} rounds of self-augmentation"
    text += ", evaluated group by group"
    tasks = list(section.get("evaluations") or [])
    if not tasks and "task" in metrics.columns:
        tasks = [str(t) for t in metrics["task"].dropna().unique()]
    if tasks:
        text += f" on {_join(tasks)}"
    return text


def describe(data: ReportInput, *, control: str | None) -> str:
    """One sentence: which study, on what, with which model, comparing what, over how many seeds."""
    config = data.config
    metrics = data.metrics
    groups = [g for g in pd.unique(metrics["group"].astype(str)) if g] if len(metrics) else []
    study = config.get("study", "scpl")
    if study == "scpl":
        core = _scpl(config, groups)
    elif study == "inheritance":
        core = _inheritance(config, metrics, groups)
    else:
        core = f"A {study} experiment with {(config.get('model') or {}).get('name', '?')}"
    if data.is_sweep:
        axes = " × ".join(
            f"{key} ({', '.join(dict.fromkeys(values))})" for key, values in data.axes.items()
        )
        prefix = f"A sweep of {len(data.runs)} runs" + (f" over {axes}" if axes else "")
        return f"{prefix} of: {core[0].lower()}{core[1:]}, over {_seeds(metrics, config)}."
    # The config's own conditions: a study may split them further (one per bias ratio...).
    names = list(config.get("conditions") or {}) or ["main"]
    if control not in names:
        control = control_condition(names) if len(names) > 1 else None
    comparison = _condition_phrase(config, names, control)
    return f"{core}{', ' + comparison if comparison else ''}, over {_seeds(metrics, config)}."
