"""Markdown tables of a finished bias inheritance run (per group, per model, with p-values).

    python -m biasloop.inherit.tables RUN_DIR [EVALUATION ...]

prints, for each evaluation, one table per statistic: rows are groups, columns
the models (base, ``γ = 0``, then each bias type at each ratio), cells
``value [ci_low, ci_high]`` averaged over seeds, with the paired p-value against
``γ = 0`` after a ``p=``. Gap rows (``max − min`` over a grouping's groups) carry
the between-group permutation p-value as ``p_groups=`` and the paired p-value of
the gap against ``γ = 0`` as ``p=``. Nothing is written to disk.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from biasloop.inherit.units import parse_label
from biasloop.io import read_table


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _cell(row: pd.Series | None, p_value: float | None, p_name: str = "p") -> str:
    if row is None:
        return ""
    text = f"{_fmt(row['value'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
    if p_value is not None and not math.isnan(p_value):
        text += f" {p_name}={p_value:.3f}"
    return text


def model_order(metrics: pd.DataFrame) -> list[str]:
    """Condition labels: base, γ = 0, then by round, bias type and ratio."""

    def key(label: str) -> tuple:
        parsed = parse_label(label) or {"round": 99, "bias_type": label, "bias_ratio": 0}
        ratio = parsed["bias_ratio"]
        return (
            parsed["round"],
            parsed["bias_type"] != "none",
            parsed["bias_type"],
            -1 if ratio is None else ratio,
        )

    return sorted(metrics["condition"].unique(), key=key)


def ordered(groups: list[str], evaluation: str) -> list[str]:
    """``all`` first, then the evaluation's preferred group order, then the rest."""
    from biasloop.inherit.evaluations import EVALUATIONS

    preferred = list(EVALUATIONS.get(evaluation).group_order) if evaluation in EVALUATIONS else []
    rank = {g: i for i, g in enumerate(["", *preferred])}
    return sorted(groups, key=lambda g: (rank.get(g, len(rank)), g))


def short_label(label: str, *, rounds: int) -> str:
    """``γ=0.2 contextual_explicit`` (plus ``r2`` when there are several rounds)."""
    parsed = parse_label(label)
    if parsed is None or parsed["bias_ratio"] is None:
        return label
    text = f"γ={parsed['bias_ratio']:g}" + (
        "" if parsed["bias_type"] == "none" else f" {parsed['bias_type']}"
    )
    return text + (f" r{parsed['round']}" if rounds > 1 else "")


def statistic_table(metrics: pd.DataFrame, metric: str, groups: list[str] | None = None) -> str:
    """One markdown table of ``metric``: groups (and gaps) × models.

    ``groups`` keeps only those group rows and those groupings' gap rows (``""`` is all items).
    """
    mean = (
        metrics.groupby(["condition", "group", "metric"], dropna=False)[
            ["value", "ci_low", "ci_high"]
        ]
        .mean()
        .reset_index()
    )
    rows = mean[mean["metric"] == metric]
    if rows.empty:
        return ""
    models = [m for m in model_order(metrics) if m in set(rows["condition"])]
    lookup = {
        (r["condition"], r["group"], r["metric"]): r
        for _, r in mean.iterrows()
        if r["metric"].startswith(metric)
    }
    wanted = None if groups is None else set(groups)
    groups = ordered(
        [g for g in dict.fromkeys(rows["group"]) if wanted is None or g in wanted],
        metric.split(".", 1)[0],
    )
    gaps = [
        g
        for g in dict.fromkeys(mean.loc[mean["metric"] == f"{metric}_gap", "group"])
        if wanted is None or g in wanted
    ]
    rounds = int(metrics["round"].max()) if "round" in metrics else 1
    header = (
        "| group | "
        + " | ".join(short_label(m, rounds=rounds) for m in models)
        + " |\n|---|"
        + "---|" * len(models)
        + "\n"
    )
    lines = []
    for group in groups:
        cells = []
        for model in models:
            p = lookup.get((model, group, f"{metric}_vs_ratio0_p_value"))
            cells.append(
                _cell(lookup.get((model, group, metric)), None if p is None else p["value"])
            )
        lines.append(f"| {group or 'all'} | " + " | ".join(cells) + " |")
    for grouping in gaps:
        cells = []
        for model in models:
            between = lookup.get((model, grouping, f"{metric}_gap_p_value"))
            versus = lookup.get((model, grouping, f"{metric}_gap_vs_ratio0_p_value"))
            text = _cell(
                lookup.get((model, grouping, f"{metric}_gap")),
                None if between is None else between["value"],
                "p_groups",
            )
            if versus is not None and not math.isnan(versus["value"]):
                text += f" p={versus['value']:.3f}"
            cells.append(text)
        lines.append(f"| gap by {grouping} | " + " | ".join(cells) + " |")
    return f"**{metric}**\n\n" + header + "\n".join(lines) + "\n"


def run_tables(
    run_dir: str | Path, evaluations: list[str] | None = None, groups: list[str] | None = None
) -> str:
    """Every statistic table of the run (optionally only some evaluations and groups)."""
    metrics = read_table(Path(run_dir) / "metrics.parquet")
    statistics = [
        m
        for m in dict.fromkeys(metrics["metric"])
        if "." in m
        and not m.endswith(("p_value", "_gap", "_ratio"))
        and not m.startswith(("data.", "train."))
    ]
    if evaluations:
        statistics = [m for m in statistics if m.split(".", 1)[0] in evaluations]
    return "\n".join(statistic_table(metrics, m, groups) for m in statistics)


if __name__ == "__main__":  # pragma: no cover - a convenience for writing reports
    print(run_tables(sys.argv[1], sys.argv[2:] or None))
