"""PNG plots of the bias inheritance study: per-group metrics against the bias ratio γ.

One figure per evaluation (and per round when there are several): one row per
statistic, one column per bias type, one line per group (``all`` for every
item) with its confidence band. The ``γ = 0`` model is shared by every bias
type, so it is the first point of every panel. Files go through the run
store's ``write_bytes``.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import pandas as pd

from biasloop.store import write_bytes

NO_TYPE = "none"


def with_condition_fields(summary: pd.DataFrame) -> pd.DataFrame:
    """The study's rows with ``prefix, bias_ratio, bias_type, round`` parsed from ``condition``."""
    from biasloop.inherit.units import parse_label

    parsed = summary["condition"].map(parse_label)
    keep = parsed.notna()
    frame = summary[keep].copy()
    fields = pd.DataFrame(list(parsed[keep]), index=frame.index)
    return pd.concat([frame, fields], axis=1)


def is_curve_metric(metric: str) -> bool:
    """Per-group statistics of an evaluation: not tests, gaps, ratios or training data."""
    name = metric.split(".", 1)[-1]
    return (
        "." in metric
        and not metric.startswith(("data.", "train."))
        and not name.endswith(("p_value", "_gap", "_ratio"))
    )


def _draw(axis: plt.Axes, panel: pd.DataFrame) -> None:
    for group, lines in panel.groupby("group", sort=False):
        lines = lines.sort_values("bias_ratio")
        axis.plot(
            lines["bias_ratio"], lines["value"], marker="o", markersize=3, label=group or "all"
        )
        axis.fill_between(lines["bias_ratio"], lines["ci_low"], lines["ci_high"], alpha=0.15)
    axis.grid(alpha=0.3)


def evaluation_figure(frame: pd.DataFrame, evaluation: str, round_index: int) -> plt.Figure | None:
    """Rows = statistics (joint groups such as ``female+arabic`` in a row of their own),
    columns = bias types; ``None`` when there is nothing to draw."""
    rows = frame[frame["metric"].str.startswith(evaluation + ".") & frame["bias_ratio"].notna()]
    reference = rows[(rows["bias_ratio"] == 0) & (rows["bias_type"] == NO_TYPE)]
    typed = rows[(rows["round"] == round_index) & (rows["bias_type"] != NO_TYPE)]
    types = list(dict.fromkeys(typed["bias_type"]))
    panels = []  # (metric, is_joint)
    for metric in dict.fromkeys(rows["metric"]):
        if is_curve_metric(metric):
            joint = rows.loc[rows["metric"] == metric, "group"].str.contains("+", regex=False)
            panels += [(metric, False)] + ([(metric, True)] if joint.any() else [])
    if not types or not panels:
        return None
    figure, axes = plt.subplots(
        len(panels),
        len(types),
        figsize=(3.4 * len(types) + 1.4, 2.4 * len(panels)),
        squeeze=False,
        sharex=True,
    )
    for row, (metric, joint) in enumerate(panels):
        for column, bias_type in enumerate(types):
            axis = axes[row][column]
            panel = pd.concat(
                [
                    reference[reference["metric"] == metric],
                    typed[(typed["metric"] == metric) & (typed["bias_type"] == bias_type)],
                ]
            )
            panel = panel[panel["group"].str.contains("+", regex=False) == joint]
            _draw(axis, panel)
            if row == 0:
                axis.set_title(bias_type.replace("_", " "), fontsize=9)
            if column == 0:
                axis.set_ylabel(metric.split(".", 1)[1].replace("_", " "), fontsize=8)
            if row == len(panels) - 1:
                axis.set_xlabel("bias ratio γ", fontsize=8)
            axis.tick_params(labelsize=7)
        axes[row][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    suffix = "" if round_index == 1 else f" (round {round_index})"
    figure.suptitle(f"{evaluation}{suffix}", fontsize=10)
    figure.tight_layout()
    return figure


def plot_bias_ratio_curves(summary: pd.DataFrame, folder: Path) -> list[Path]:
    """Write one PNG per evaluation (× round × named condition) into ``folder``; return paths."""
    if summary.empty:
        return []
    frame = with_condition_fields(summary)
    if frame.empty:
        return []
    evaluations = list(
        dict.fromkeys(m.split(".", 1)[0] for m in frame["metric"] if is_curve_metric(m))
    )
    rounds = sorted(int(r) for r in frame["round"].unique() if r >= 1)
    written = []
    for prefix in frame["prefix"].unique():
        subset = frame[frame["prefix"] == prefix]
        for evaluation in evaluations:
            for round_index in rounds:
                figure = evaluation_figure(subset, evaluation, round_index)
                if figure is None:
                    continue
                name = evaluation if len(rounds) == 1 else f"{evaluation}.round-{round_index}"
                path = folder / f"{prefix + '.' if prefix else ''}{name}.png"
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=90)
                plt.close(figure)
                write_bytes(path, buffer.getvalue())
                written.append(path)
    return written
