"""PNG plots of metrics over generations, one line per condition, with CI bands."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from biasloop.runner.store import write_bytes  # noqa: E402

# (metric, per-group?) panels of the loop's figure, in reading order.
LOOP_PANELS = [
    ("preference_bias", False),
    ("disparate_bias", False),
    ("quality", True),
    ("group_share", True),
    ("distinct_2", False),
    ("perplexity", False),
    ("mean_length", True),
    ("acceptance_rate", True),
]


def _panel(axis: plt.Axes, summary: pd.DataFrame, metric: str, per_group: bool) -> bool:
    frame = summary[summary["metric"] == metric]
    if not per_group:
        frame = frame[frame["group"] == ""]
    else:
        frame = frame[frame["group"] != ""]
    if frame.empty:
        return False
    for (condition, group), lines in frame.groupby(["condition", "group"], sort=False):
        lines = lines.sort_values("generation")
        label = f"{condition} · {group}" if group else str(condition)
        axis.plot(lines["generation"], lines["value"], marker="o", label=label)
        axis.fill_between(lines["generation"], lines["ci_low"], lines["ci_high"], alpha=0.2)
    axis.set_title(metric.replace("_", " "))
    axis.set_xlabel("generation")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return True


def plot_metric(summary: pd.DataFrame, metric: str, path: Path, *, per_group: bool = False) -> bool:
    """One metric over generations (per condition, or per condition × group); False if absent."""
    figure, axis = plt.subplots(figsize=(5, 3.5))
    drawn = _panel(axis, summary, metric, per_group)
    if drawn:
        _save(figure, path)
    plt.close(figure)
    return drawn


def plot_loop(summary: pd.DataFrame, folder: Path) -> list[Path]:
    """Write one PNG per loop metric present in ``summary`` into ``folder``; returns the paths."""
    written = []
    for metric, per_group in LOOP_PANELS:
        path = folder / f"{metric}.png"
        if plot_metric(summary, metric, path, per_group=per_group):
            written.append(path)
    return written


def _save(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    write_bytes(path, buffer.getvalue())
