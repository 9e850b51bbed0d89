"""Trajectory figures of the simulator: a run's trajectories, and a fit against its run."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from biasloop.store import write_bytes  # noqa: E402

#: (metric, per group?) panels of ``trajectories.png``.
TRAJECTORY_PANELS = (("group_share", True), ("attribute_share", True), ("quality", True),
                     ("preference_bias", False), ("disparate_bias", False),
                     ("acceptance_rate", True))


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_bytes(path, buffer.getvalue())


def plot_trajectories(summary: pd.DataFrame, path: Path) -> bool:
    """Every condition's trajectories over generations (lines, with the across-seed band)."""
    panels = [(m, per_group) for m, per_group in TRAJECTORY_PANELS
              if (summary["metric"] == m).any()]
    if not panels:
        return False
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (metric, per_group) in zip(axes.flat, panels):
        axis.set_prop_cycle(color=plt.cm.tab20.colors)  # many condition × group lines
        frame = summary[(summary["metric"] == metric)
                        & ((summary["group"] != "") if per_group else (summary["group"] == ""))]
        for (condition, group), line in frame.groupby(["condition", "group"], sort=False):
            line = line.sort_values("generation")
            axis.plot(line["generation"], line["value"], label=f"{condition} · {group}"
                      if group else str(condition))
            if {"ci_low", "ci_high"} <= set(line.columns):
                axis.fill_between(line["generation"], line["ci_low"], line["ci_high"], alpha=0.2)
        axis.set_title(metric)
        axis.set_xlabel("generation")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    _save(figure, path)
    return True


def plot_fit(results: Sequence[object], path: Path) -> None:
    """Observed (dots) and simulated (lines) trajectories of each fitted condition.

    The dashed line separates the fitted generations from the held-out ones.
    """
    metrics = ("group_share", "attribute_share", "quality")
    figure, axes = plt.subplots(len(results), len(metrics), squeeze=False,
                                figsize=(4.2 * len(metrics), 3.0 * len(results)))
    for row, result in enumerate(results):
        for column, metric in enumerate(metrics):
            axis = axes[row][column]
            observed = result.observed[result.observed["metric"] == metric]
            predicted = result.predicted[result.predicted["metric"] == metric]
            for index, (group, line) in enumerate(predicted.groupby("group", sort=False)):
                colour = f"C{index}"
                axis.plot(line["generation"], line["value"], color=colour, label=f"{group} simulated")
                dots = observed[observed["group"] == group]
                axis.plot(dots["generation"], dots["value"], "o", color=colour, ms=4,
                          label=f"{group} observed")
            axis.axvline(result.fit_generations - 0.5, color="grey", linestyle="--", lw=1)
            axis.set_title(f"{result.condition}: {metric}")
            axis.set_xlabel("generation")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=6)
    _save(figure, path)
