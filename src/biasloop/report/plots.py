"""PNG plots: metrics over generations (or any x) with CI bands, and grouped bars with CIs.

``plot_loop`` draws the SCPL study's quick plots at the end of a run; ``plot_lines``
and ``plot_bars`` draw the report's figures from tidy frames and return PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from biasloop.report.wording import metric_title  # noqa: E402
from biasloop.store import write_bytes  # noqa: E402

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
    axis.set_title(metric_title(metric))
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
    figure.tight_layout()
    write_bytes(path, figure_png(figure))


def figure_png(figure: plt.Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (the caller lays it out and closes it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# ---------------------------------------------------------------- report figures
CONTROL_COLOUR = "#3b3b3b"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b",
           "#e377c2", "#bcbd22", "#7f7f7f"]


def series_colours(series: Sequence[str], *, control: str | None = None) -> dict[str, str]:
    """A stable colour per series: dark grey for the control, the palette for the rest."""
    colours = {}
    others = [s for s in series if s != control]
    for index, name in enumerate(others):
        colours[name] = PALETTE[index % len(PALETTE)]
    if control is not None:
        colours[control] = CONTROL_COLOUR
    return colours


def _grid(panels: int, *, width: float, height: float, share_y: bool,
          extra_height: float = 0.5) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(panels, 3)
    rows = math.ceil(panels / columns)
    size = (width * columns, height * rows + extra_height)
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, sharey=share_y)
    flat = list(axes.flat)
    for axis in flat[panels:]:
        axis.set_visible(False)
    return figure, flat[:panels]


def _finish(figure: plt.Figure, title: str, handles: Mapping[str, object]) -> bytes:
    figure.suptitle(title, fontsize=11, fontweight="bold", x=0.01, ha="left")
    longest = max((len(name) for name in handles), default=1)
    fit = int(figure.get_figwidth() / (0.06 * longest + 0.5))  # legend entries that fit in a row
    columns = max(1, min(len(handles), 4, fit))
    rows = math.ceil(len(handles) / columns)
    bottom = min(0.45, (0.12 + 0.2 * rows) / figure.get_figheight()) if handles else 0
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=columns,
                      fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, bottom, 1, 0.97))
    png = figure_png(figure)
    plt.close(figure)
    return png


def plot_lines(frame: pd.DataFrame, *, title: str, xlabel: str, colours: Mapping[str, str],
               ylabel: str = "") -> bytes | None:
    """Lines with CI bands; ``frame`` has ``panel, series, x, value, ci_low, ci_high``.

    One panel per distinct ``panel`` (in order of appearance), one line per series (a
    legend when there are several); a series with a single point is drawn as a point
    with an error bar.
    """
    frame = frame.dropna(subset=["value"])
    if frame.empty:
        return None
    panels = list(dict.fromkeys(frame["panel"]))
    figure, axes = _grid(len(panels), width=4.4, height=3.0, share_y=True)
    handles: dict[str, object] = {}
    for axis, panel in zip(axes, panels):
        part = frame[frame["panel"] == panel]
        for series, line in part.groupby("series", sort=False):
            line = line.sort_values("x")
            colour = colours.get(series, "#555555")
            if len(line) == 1:
                low = (line["value"] - line["ci_low"]).clip(lower=0)
                high = (line["ci_high"] - line["value"]).clip(lower=0)
                handle = axis.errorbar(line["x"], line["value"], yerr=[low, high], fmt="o",
                                       color=colour, capsize=3)
            else:
                (handle,) = axis.plot(line["x"], line["value"], marker="o", markersize=3.5,
                                      color=colour, linewidth=1.6)
                axis.fill_between(line["x"], line["ci_low"], line["ci_high"], color=colour,
                                  alpha=0.15, linewidth=0)
            handles.setdefault(str(series), handle)
        if len(panels) > 1:
            axis.set_title(str(panel), fontsize=9)
        axis.set_xlabel(xlabel, fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if xlabel == "generation":
            axis.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel(ylabel, fontsize=8)
    return _finish(figure, title, handles if len(handles) > 1 else {})


def plot_bars(frame: pd.DataFrame, *, title: str, colours: Mapping[str, str],
              reference: Mapping[str, float] | None = None, share_y: bool = True) -> bytes | None:
    """Grouped bars with CI error bars.

    ``frame`` has ``panel, category, series, value, ci_low, ci_high``.

    ``reference`` maps a panel to a value drawn as a dashed line (the control's). When every
    category is its own series (one bar each), the bars are named on the axis, not in a legend.
    """
    frame = frame.dropna(subset=["value"])
    if frame.empty:
        return None
    panels = list(dict.fromkeys(frame["panel"]))
    bars = int(frame.groupby("panel").size().max())
    # No legend when each bar is named on the axis, or when there is one series only.
    labelled = bool((frame["category"] == frame["series"]).all()) or frame["series"].nunique() == 1
    legend_rows = 0 if labelled else frame["series"].nunique() / 2
    figure, axes = _grid(len(panels), width=max(4.4, 1.2 + 0.3 * bars), height=3.0, share_y=share_y,
                         extra_height=0.5 + 0.2 * legend_rows)
    handles: dict[str, object] = {}
    for axis, panel in zip(axes, panels):
        part = frame[frame["panel"] == panel]
        categories = list(dict.fromkeys(part["category"]))
        series = list(dict.fromkeys(part["series"]))
        one_each = all(part[part["category"] == c]["series"].nunique() == 1 for c in categories)
        width = 0.7 if one_each else 0.8 / len(series)
        for index, name in enumerate(series):
            bars = part[part["series"] == name]
            offset = 0 if one_each else (index - (len(series) - 1) / 2) * width
            positions = [categories.index(c) + offset for c in bars["category"]]
            low = (bars["value"] - bars["ci_low"]).clip(lower=0)
            high = (bars["ci_high"] - bars["value"]).clip(lower=0)
            handle = axis.bar(positions, bars["value"], width=width, yerr=[low, high], capsize=2,
                              color=colours.get(name, "#555555"), alpha=0.85,
                              error_kw={"elinewidth": 1, "ecolor": "#222222"})
            handles.setdefault(str(name), handle)
        if reference and panel in reference:
            axis.axhline(reference[panel], color=CONTROL_COLOUR, linestyle="--", linewidth=1)
        axis.set_xticks(range(len(categories)))
        long = max((len(str(c)) for c in categories), default=0) > 10
        axis.set_xticklabels([str(c) for c in categories], rotation=25 if long else 0,
                             ha="right" if long else "center", fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
        if len(panels) > 1:
            axis.set_title(str(panel), fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    if labelled:
        handles = {}
    return _finish(figure, title, handles)
