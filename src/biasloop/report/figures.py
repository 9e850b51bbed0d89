"""The report's figures: which frames to plot, in which order, under which heading.

- the headline metrics of every arm side by side (the control's value dashed);
- each metric over generations, when some arm was measured at two generations or more;
- each metric against the bias ratio γ, when the arms differ in ``bias_ratio``;
- per-group values at the final generation, as grouped bars;
- the run's own ``analysis/*.png``, as they are.

:mod:`biasloop.report.plots` draws; this module chooses. Figures are numbered in page
order (``01-conditions``, ``02-curve-quality``...) by one counter that the page passes
to each function in turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd

from biasloop.report import compare
from biasloop.report.arms import METRIC_SECTIONS, Arms
from biasloop.report.collect import ReportInput
from biasloop.report.plots import plot_bars, plot_lines
from biasloop.report.view import Figure, FigureSection
from biasloop.report.wording import METRIC_NOTES, metric_title

MAX_BAR_SERIES = 10  # arms in one bar chart
MAX_BAR_GROUPS = 12  # groups in one bar chart
MAX_PANELS = 6  # panels (overall + groups) in one line figure
OTHER_METRICS = "Other metrics"


def slug(text: str) -> str:
    """``text`` as a file name: runs of other characters become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "figure"


def _figure(
    numbers: Iterator[int],
    name: str,
    title: str,
    png: bytes | None,
    *,
    caption: str = "",
    wide: bool = False,
) -> Figure | None:
    """The next numbered figure; None (and no number taken) when there was nothing to plot."""
    if png is None:
        return None
    return Figure(
        name=f"{next(numbers):02d}-{slug(name)}", title=title, png=png, caption=caption, wide=wide
    )


def _section(metric: str) -> str:
    """Where a metric's figures go: a loop section, its family (``task.`` prefix), or other."""
    for title, names in METRIC_SECTIONS.items():
        if metric in names:
            return title
    return metric.split(".")[0] if "." in metric else OTHER_METRICS


def _sections(figures: list[tuple[str, Figure]]) -> tuple[FigureSection, ...]:
    """(metric, figure) pairs under their headings: loop sections, families, then the rest."""
    sections: dict[str, list[Figure]] = {}
    for metric, figure in figures:
        sections.setdefault(_section(metric), []).append(figure)
    families = [t for t in sections if t not in METRIC_SECTIONS and t != OTHER_METRICS]
    order = [*METRIC_SECTIONS, *families, OTHER_METRICS]
    return tuple(FigureSection(title=t, figures=tuple(sections[t])) for t in order if t in sections)


def _panel_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Panels: 'all groups' for overall rows, then one per group."""
    return frame.assign(panel=frame["group"].where(frame["group"] != "", "all groups"))


def _capped_panels(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """At most MAX_PANELS panels (overall first); the caption says what was left out."""
    panels = list(dict.fromkeys(frame["panel"]))
    if len(panels) <= MAX_PANELS:
        return frame, ""
    kept = panels[:MAX_PANELS]
    return frame[frame["panel"].isin(kept)], f" (first {len(kept)} of {len(panels)} panels)"


def comparison_figure(arms: Arms, numbers: Iterator[int]) -> Figure | None:
    """Headline metrics of every arm side by side, the control's value dashed."""
    kept = set(arms.order[: MAX_BAR_SERIES * 2])
    frames = []
    for index, (metric, group, rows) in enumerate(arms.headline_rows()):
        panel = metric_title(metric, group)
        frames.append(rows[rows["arm"].isin(kept)].assign(panel=panel, _headline=index))
    frame = pd.concat(frames, ignore_index=True) if frames else arms.final.iloc[:0]
    if frame.empty or frame["arm"].nunique() < 2:
        return None
    frame = frame.assign(category=frame["arm"], series=frame["arm"])
    frame = arms.ordered(frame).sort_values("_headline", kind="stable")
    reference = {}
    if arms.control_arm is not None:
        for row in frame[frame["arm"] == arms.control_arm].itertuples():
            reference[row.panel] = row.value
    png = plot_bars(
        frame,
        title="Final generation" + (" (dashed: control)" if reference else ""),
        colours=arms.colours,
        reference=reference,
        share_y=False,
    )
    wide = frame["panel"].nunique() > 1 or frame.groupby("panel").size().max() > 6
    return _figure(numbers, "conditions", "Conditions compared", png, wide=wide)


def curve_sections(arms: Arms, numbers: Iterator[int]) -> tuple[FigureSection, ...]:
    """Metrics over generations, when some arm was measured at two generations or more."""
    summary = arms.summary
    if summary.empty or summary.groupby("arm")["generation"].nunique().max() < 2:
        return ()
    figures = []
    for metric in arms.metrics_in_order():
        frame = _panel_frame(summary[summary["metric"] == metric])
        frame = arms.ordered(frame.assign(series=frame["arm"], x=frame["generation"]))
        frame, note = _capped_panels(frame)
        png = plot_lines(
            frame, title=metric_title(metric), xlabel="generation", colours=arms.colours
        )
        figure = _figure(
            numbers,
            f"curve-{metric}",
            metric_title(metric),
            png,
            caption=METRIC_NOTES.get(metric, "") + note,
            wide=frame["panel"].nunique() > 1,
        )
        if figure:
            figures.append((metric, figure))
    return _sections(figures)


def ratio_sections(arms: Arms, numbers: Iterator[int]) -> tuple[FigureSection, ...]:
    """Each metric against γ at the final generation, one line per arm without its γ.

    A line with no point at γ = 0 starts from its control's value there.
    """
    if compare.BIAS_RATIO not in arms.dims or arms.summary.empty:
        return ()
    final = arms.final[arms.final[compare.BIAS_RATIO].notna()]
    final = final.assign(series=arms.series_for(final), x=final[compare.BIAS_RATIO].astype(float))
    control_of = dict(zip(arms.comparisons["arm"], arms.comparisons["control"]))
    figures = []
    for metric in arms.metrics_in_order():
        frame = final[final["metric"] == metric]
        starts = []
        for series, part in frame.groupby("series", sort=False):
            controls = {control_of.get(arm) for arm in part["arm"]} - {None}
            if (part["x"] == 0).any() or len(controls) != 1:
                continue
            start = frame[frame["arm"] == controls.pop()]
            starts.append(start.assign(series=series))
        frame = pd.concat([frame, *starts], ignore_index=True) if starts else frame
        frame = arms.ordered(_panel_frame(frame))
        frame, note = _capped_panels(frame)
        png = plot_lines(
            frame,
            title=f"{metric_title(metric)} vs bias ratio γ",
            xlabel="bias ratio γ",
            colours=arms.colours,
        )
        figure = _figure(
            numbers,
            f"ratio-{metric}",
            f"{metric_title(metric)} vs γ",
            png,
            caption=METRIC_NOTES.get(metric, "") + note,
            wide=frame["panel"].nunique() > 1,
        )
        if figure:
            figures.append((metric, figure))
    return _sections(figures)


def group_sections(arms: Arms, numbers: Iterator[int]) -> tuple[FigureSection, ...]:
    """Per-group values at the final generation, as grouped bars."""
    final = arms.final[arms.final["group"] != ""]
    if final.empty:
        return ()
    kept = arms.order[:MAX_BAR_SERIES]
    figures = []
    for metric in arms.metrics_in_order():
        frame = final[(final["metric"] == metric) & final["arm"].isin(kept)]
        if frame.empty:
            continue
        frame = arms.ordered(frame.assign(panel="", category=frame["group"], series=frame["arm"]))
        groups = list(dict.fromkeys(frame["group"]))
        frame = frame[frame["group"].isin(groups[:MAX_BAR_GROUPS])]
        generations = sorted(set(frame["generation"]))
        when = f"generation {generations[0]}" if len(generations) == 1 else "final generations"
        png = plot_bars(
            frame, title=f"{metric_title(metric)} by group ({when})", colours=arms.colours
        )
        caption = METRIC_NOTES.get(metric, "")
        if len(arms.order) > len(kept):
            caption += f" (first {len(kept)} of {len(arms.order)} arms)"
        if len(groups) > MAX_BAR_GROUPS:
            caption += f" (first {MAX_BAR_GROUPS} of {len(groups)} groups)"
        figure = _figure(
            numbers, f"groups-{metric}", f"{metric_title(metric)} by group", png, caption=caption
        )
        if figure:
            figures.append((metric, figure))
    return _sections(figures)


def analysis_figures(data: ReportInput) -> tuple[Figure, ...]:
    """The PNGs ``biasloop analyze`` left in each run's ``analysis/``, captioned by file name."""
    return tuple(
        Figure(name=slug(caption), title=caption, png=path.read_bytes())
        for caption, path in data.analysis
    )
