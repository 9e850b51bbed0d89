"""``report.html``: one self-contained page for a run or a sweep, plus its PNG figures.

The page shows what the metric table holds, whatever the study:

- a summary: the experiment in one sentence, headline metrics at the final generation
  with their intervals, and each condition against the control (Δ and p-value);
- curves over generations with CI bands, when an arm was measured at several generations;
- metrics against the bias ratio γ, when the table has a ``bias_ratio`` column;
- per-group metrics, condition comparisons, tables with p-values (the report's own
  comparisons and any ``*p_value`` rows a study wrote), misalignment plots from
  ``RUN_DIR/analysis/*.png``, sample generations, the resolved config and the manifest.

Figures are embedded as base64 PNG and also written to ``figures/``. The page loads
nothing from anywhere (a Content-Security-Policy forbids it, and scripts too); model
text is escaped by Jinja2's autoescape, never inserted as HTML. Every file goes
through the run store's atomic writes.

    >>> from biasloop.report.html import write_report
    >>> write_report("runs/demo-20260101-120000")  # doctest: +SKIP
    PosixPath('runs/demo-20260101-120000/report.html')
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from biasloop.metrics.stats import adjust_p_values
from biasloop.report import compare
from biasloop.report.collect import ReportInput, collect, read_samples
from biasloop.report.describe import describe
from biasloop.report.plots import plot_bars, plot_lines, series_colours
from biasloop.store import now, staging_dir, write_bytes, write_text

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
TEMPLATES = Path(__file__).resolve().parent / "templates"

# What each known metric is, in a few words (formulas in docs/concepts.md).
METRIC_NOTES = {
    "preference_bias": "total variation between the model's and the real references' attribute "
    "distributions on group-neutral prompts (0 = no lean)",
    "disparate_bias": "max − min group quality",
    "disparate_ratio": "min / max group quality (1 = equal service)",
    "quality": "mean service quality q; overall = mean over groups",
    "majority_lean": "P_model(a = majority) − P_ref(a = majority)",
    "attribute_share": "share of responses whose attribute is the group",
    "group_share": "group shares p_t(g) of served queries",
    "acceptance_rate": "accepted / served queries",
    "distinct_2": "unique / total word bigrams of responses",
    "perplexity": "perplexity on held-out real references",
    "mean_length": "mean words per response",
}
# Sections of the loop's metrics, in reading order; others go by family or "Other metrics".
CURVE_SECTIONS = {
    "Bias": [
        "preference_bias",
        "disparate_bias",
        "disparate_ratio",
        "majority_lean",
        "attribute_share",
    ],
    "Quality and group shares": ["quality", "group_share", "acceptance_rate"],
    "Collapse indicators": ["distinct_2", "perplexity", "mean_length"],
}
# What each fallback means (rows ``fallback_*``, counted by the loop).
FALLBACK_NOTES = {
    "fallback_uniform_shares": "every group had left (N = 0); the generation served uniform shares",
    "fallback_uniform_model_attributes": "no model response had an attribute; the model's "
    "attribute distribution was taken as uniform",
    "fallback_uniform_reference_attributes": "no reference response had an attribute; the "
    "reference distribution was taken as uniform",
    "fallback_group_dropped": "balanced rejection accepted nothing from this group, so its "
    "target share went to the other groups",
}
MAX_BAR_SERIES = 10  # arms in one bar chart
MAX_BAR_GROUPS = 12  # groups in one bar chart
MAX_PANELS = 6  # panels (overall + groups) in one line figure
MAX_TABLE_ROWS = 500  # rows of a table in the page; the full table is metrics.parquet


@dataclass(frozen=True)
class Figure:
    """One PNG of the report."""

    name: str
    title: str
    png: bytes
    caption: str = ""
    wide: bool = False

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def report_path(directory: str | Path) -> Path:
    return Path(directory) / REPORT_FILE


def write_report(
    directory: str | Path, *, samples_per_group: int = 2, status: str | None = None
) -> Path:
    """Write ``DIR/report.html`` and ``DIR/figures/*.png`` for a run or a folder of runs.

    ``status`` shows instead of the manifest's (the runner writes the report just before
    it marks the run completed). Returns the path of the page.
    """
    directory = Path(directory)
    data = collect(directory)
    page = _Page(data, samples_per_group=samples_per_group, status=status)
    html = page.render()
    with staging_dir(directory / FIGURES_DIR) as folder:
        for figure in page.figures:
            write_bytes(folder / f"{figure.name}.png", figure.png)
    path = report_path(directory)
    write_text(path, html)
    return path


# ---------------------------------------------------------------- formatting
def fmt(value: Any) -> str:
    """A number as people read it: 3 decimals, fewer for large values, '—' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if not isinstance(value, (int, float)):
        return str(value)
    magnitude = abs(value)
    if magnitude < 0.0005:
        value = 0.0  # no "-0.000"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}"


CLIPPED_MARK = "†"  # an across-seed interval clipped to its metric's range


def fmt_ci(low: Any, high: Any, clipped: Any = False) -> str:
    return f"[{fmt(low)}, {fmt(high)}]" + (CLIPPED_MARK if clipped is True else "")


def fmt_p(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def fmt_delta(value: Any) -> str:
    text = fmt(value)
    return text if text == "—" or text.startswith("-") else f"+{text}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "figure"


def _title(metric: str) -> str:
    return metric.replace("_", " ")


def _significant(p_value: float) -> bool:
    return not math.isnan(p_value) and p_value < 0.05


def _breakable(label: str) -> str:
    """A label that may wrap after its commas (a zero-width space, still plain text)."""
    return label.replace(",", ",\u200b")


def _line(arm: str, row: Any, *, control: bool = False, versus: str = "") -> dict[str, Any]:
    """One row of a headline card; ``row`` is a summary row, or a comparison row (Δ and p)."""
    compared = hasattr(row, "difference")
    return {
        "arm": _breakable(arm),
        "value": fmt(row.value),
        "ci": fmt_ci(row.ci_low, row.ci_high, getattr(row, "ci_clipped", False)),
        "control": control,
        "compared": compared,
        "delta": fmt_delta(row.difference) if compared else "",
        "p": fmt_p(row.p_value) if compared else "",
        "significant": compared and _significant(row.p_value),
        "versus": versus,
    }


# ---------------------------------------------------------------- the page
class _Page:
    """Builds the figures and the template context of one report."""

    def __init__(self, data: ReportInput, *, samples_per_group: int, status: str | None) -> None:
        self.data = data
        self.status = status
        self.samples_per_group = samples_per_group
        self.figures: list[Figure] = []
        config = data.config
        self.confidence = float((config.get("metrics") or {}).get("confidence", 0.95))
        self.measurements, self.tests = compare.split_tests(data.metrics)
        self.measurements, self.fallbacks = compare.split_fallbacks(self.measurements)
        self.dims = compare.dimensions(self.measurements)
        self.controls = compare.control_conditions(
            [[run.condition_label(c) for c in run.conditions] for run in data.runs]
        )
        self.control_names = list(dict.fromkeys(c for c in self.controls.values() if c))
        self.control = self.control_names[0] if len(self.control_names) == 1 else None
        self.hidden = compare.named_by_condition(self.measurements, self.dims)
        self.summary = compare.summarize(self.measurements, self.dims, confidence=self.confidence)
        if len(self.summary):
            self.summary = self.summary.assign(
                arm=[
                    compare.arm_label(arm, conditions=data.conditions, hidden=self.hidden)
                    for arm in self.summary[["condition", *self.dims]].to_dict("records")
                ]
            )
        else:
            self.summary = self.summary.assign(arm=pd.Series(dtype=str))
        self.comparisons = compare.compare_with_control(
            self.measurements,
            self.summary,
            self.dims,
            controls=self.controls,
            conditions=data.conditions,
            confidence=self.confidence,
            hidden=self.hidden,
        )
        if compare.BIAS_RATIO in self.dims:  # the controls are the γ = 0 arms
            self.control_names = list(dict.fromkeys(self.comparisons["control_condition"]))
            self.control = self.control_names[0] if len(self.control_names) == 1 else None
        self.colours = self._colours()

    # ------------------------------------------------------------ colours and order
    def _arm_order(self) -> list[str]:
        """Arm labels ordered by the config's conditions, then by the study columns."""
        if self.summary.empty:
            return []
        rank = {c: i for i, c in enumerate(self.data.conditions)}
        arms = self.summary[["arm", "condition", *self.dims]].drop_duplicates("arm")
        arms = arms.assign(_rank=arms["condition"].map(rank).fillna(len(rank)))
        arms.loc[arms["condition"].isin(self.control_names), "_rank"] -= (
            len(rank) + 1
        )  # controls lead
        return arms.sort_values(["_rank", *self.dims], kind="stable")["arm"].tolist()

    def _control_arm(self) -> str | None:
        """The one arm all others are compared with; None if there are several (γ = 0 per type)."""
        controls = list(dict.fromkeys(self.comparisons["control"]))
        if len(controls) == 1:
            return controls[0]
        if not controls and self.control is not None and compare.BIAS_RATIO not in self.dims:
            return self.control if self.control in set(self.summary["arm"]) else None
        return None

    def _colours(self) -> dict[str, str]:
        labels = self._arm_order()
        colours = series_colours(labels, control=self._control_arm())
        if compare.BIAS_RATIO in self.dims:
            # Plots against γ draw one series per arm without γ; those get their own colours.
            names = self._series_for(self.summary)
            series = list(dict.fromkeys(names))
            control = next(
                (n for n, c in zip(names, self.summary["condition"]) if c in self.control_names),
                None,
            )
            several = self.summary["condition"].nunique() > 1
            colours.update(series_colours(series, control=control if several else None))
        return colours

    def _control_text(self) -> str:
        if compare.BIAS_RATIO in self.dims:
            return "the same arm at γ = 0"
        if self.control:
            return f"the control, {self.control}"
        return (
            f"each run's control ({', '.join(self.control_names)})"
            if self.control_names
            else "the control"
        )

    def _ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows in arm order (control first), so legends and bars read the same everywhere."""
        rank = {arm: i for i, arm in enumerate(self._arm_order())}
        conditions = {
            c: i - (len(self.data.conditions) + 1) * (c in self.control_names)
            for i, c in enumerate(self.data.conditions)
        }
        keys = pd.DataFrame(
            {
                "arm": frame["arm"].map(rank).fillna(len(rank)),
                "condition": frame["condition"].map(conditions).fillna(len(conditions)),
            },
            index=frame.index,
        )
        return frame.loc[keys.sort_values(["condition", "arm"], kind="stable").index]

    def _add(
        self, name: str, title: str, png: bytes | None, *, caption: str = "", wide: bool = False
    ) -> Figure | None:
        if png is None:
            return None
        figure = Figure(
            name=f"{len(self.figures) + 1:02d}-{_slug(name)}",
            title=title,
            png=png,
            caption=caption,
            wide=wide,
        )
        self.figures.append(figure)
        return figure

    def _metrics_in_order(self) -> list[str]:
        present = list(dict.fromkeys(self.summary["metric"].astype(str)))
        known = [m for names in CURVE_SECTIONS.values() for m in names if m in present]
        return known + sorted(m for m in present if m not in known)

    def _panel_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Panels: 'all groups' for overall rows, then one per group."""
        return frame.assign(panel=frame["group"].where(frame["group"] != "", "all groups"))

    # ------------------------------------------------------------ sections
    def _section(self, metric: str) -> str:
        """Where a metric's figures go: a loop section, its family (``task.`` prefix), or other."""
        for title, names in CURVE_SECTIONS.items():
            if metric in names:
                return title
        return metric.split(".")[0] if "." in metric else "Other metrics"

    def _sections(self, figures: list[tuple[str, Figure]]) -> list[dict[str, Any]]:
        sections: dict[str, list[Figure]] = {}
        for metric, figure in figures:
            sections.setdefault(self._section(metric), []).append(figure)
        families = [t for t in sections if t not in CURVE_SECTIONS and t != "Other metrics"]
        order = [*CURVE_SECTIONS, *families, "Other metrics"]
        return [{"title": t, "figures": sections[t]} for t in order if t in sections]

    def _capped_panels(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        """At most MAX_PANELS panels (overall first); the caption says what was left out."""
        panels = list(dict.fromkeys(frame["panel"]))
        if len(panels) <= MAX_PANELS:
            return frame, ""
        kept = panels[:MAX_PANELS]
        return frame[frame["panel"].isin(kept)], f" (first {len(kept)} of {len(panels)} panels)"

    def curve_sections(self) -> list[dict[str, Any]]:
        """Metrics over generations, when some arm was measured at two generations or more."""
        if self.summary.empty or self.summary.groupby("arm")["generation"].nunique().max() < 2:
            return []
        figures = []
        for metric in self._metrics_in_order():
            frame = self._panel_frame(self.summary[self.summary["metric"] == metric])
            frame = self._ordered(frame.assign(series=frame["arm"], x=frame["generation"]))
            frame, note = self._capped_panels(frame)
            png = plot_lines(frame, title=_title(metric), xlabel="generation", colours=self.colours)
            figure = self._add(
                f"curve-{metric}",
                _title(metric),
                png,
                caption=METRIC_NOTES.get(metric, "") + note,
                wide=frame["panel"].nunique() > 1,
            )
            if figure:
                figures.append((metric, figure))
        return self._sections(figures)

    def ratio_sections(self) -> list[dict[str, Any]]:
        """Each metric against γ at the final generation, one line per arm without its γ.

        A line with no point at γ = 0 starts from its control's value there.
        """
        if compare.BIAS_RATIO not in self.dims or self.summary.empty:
            return []
        final = compare.final_rows(self.summary, self.dims)
        final = final[final[compare.BIAS_RATIO].notna()]
        final = final.assign(
            series=self._series_for(final), x=final[compare.BIAS_RATIO].astype(float)
        )
        control_of = dict(zip(self.comparisons["arm"], self.comparisons["control"]))
        figures = []
        for metric in self._metrics_in_order():
            frame = final[final["metric"] == metric]
            starts = []
            for series, part in frame.groupby("series", sort=False):
                controls = {control_of.get(arm) for arm in part["arm"]} - {None}
                if (part["x"] == 0).any() or len(controls) != 1:
                    continue
                start = frame[frame["arm"] == controls.pop()]
                starts.append(start.assign(series=series))
            frame = pd.concat([frame, *starts], ignore_index=True) if starts else frame
            frame = self._ordered(self._panel_frame(frame))
            frame, note = self._capped_panels(frame)
            png = plot_lines(
                frame,
                title=f"{_title(metric)} vs bias ratio γ",
                xlabel="bias ratio γ",
                colours=self.colours,
            )
            figure = self._add(
                f"ratio-{metric}",
                f"{_title(metric)} vs γ",
                png,
                caption=METRIC_NOTES.get(metric, "") + note,
                wide=frame["panel"].nunique() > 1,
            )
            if figure:
                figures.append((metric, figure))
        return self._sections(figures)

    def _series_for(self, frame: pd.DataFrame) -> list[str]:
        """Arm labels without γ; with the condition only if several and it does not fix γ."""
        others = [d for d in self.dims if d != compare.BIAS_RATIO]
        with_condition = len(self.data.conditions) > 1 and compare.BIAS_RATIO not in self.hidden
        conditions = self.data.conditions if with_condition else []
        return [
            compare.arm_label(arm, conditions=conditions)
            for arm in frame[["condition", *others]].to_dict("records")
        ]

    def group_sections(self) -> list[dict[str, Any]]:
        """Per-group values at the final generation, as grouped bars."""
        final = compare.final_rows(self.summary, self.dims)
        final = final[final["group"] != ""]
        if final.empty:
            return []
        order = self._arm_order()
        kept = order[:MAX_BAR_SERIES]
        figures = []
        for metric in self._metrics_in_order():
            frame = final[(final["metric"] == metric) & final["arm"].isin(kept)]
            if frame.empty:
                continue
            frame = self._ordered(
                frame.assign(panel="", category=frame["group"], series=frame["arm"])
            )
            groups = list(dict.fromkeys(frame["group"]))
            frame = frame[frame["group"].isin(groups[:MAX_BAR_GROUPS])]
            generations = sorted(set(frame["generation"]))
            when = f"generation {generations[0]}" if len(generations) == 1 else "final generations"
            png = plot_bars(
                frame,
                title=f"{_title(metric)} by group ({when})",
                colours=self.colours,
            )
            caption = METRIC_NOTES.get(metric, "")
            if len(order) > len(kept):
                caption += f" (first {len(kept)} of {len(order)} arms)"
            if len(groups) > MAX_BAR_GROUPS:
                caption += f" (first {MAX_BAR_GROUPS} of {len(groups)} groups)"
            figure = self._add(
                f"groups-{metric}", f"{_title(metric)} by group", png, caption=caption
            )
            if figure:
                figures.append((metric, figure))
        return self._sections(figures)

    def _headline_rows(self, final: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
        """(metric, group, final rows) of each headline metric."""
        pairs = compare.headline_metrics(self.summary) if len(self.summary) else []
        return [
            (metric, group, final[(final["metric"] == metric) & (final["group"] == group)])
            for metric, group in pairs
        ]

    def comparison_figure(self) -> Figure | None:
        """Headline metrics of every arm side by side, the control's value dashed."""
        final = compare.final_rows(self.summary, self.dims)
        order = self._arm_order()
        kept = set(order[: MAX_BAR_SERIES * 2])
        frames = []
        for index, (metric, group, rows) in enumerate(self._headline_rows(final)):
            panel = _title(metric) + (f" ({group})" if group else "")
            frames.append(rows[rows["arm"].isin(kept)].assign(panel=panel, _headline=index))
        frame = pd.concat(frames, ignore_index=True) if frames else final.iloc[:0]
        if frame.empty or frame["arm"].nunique() < 2:
            return None
        frame = frame.assign(category=frame["arm"], series=frame["arm"])
        frame = self._ordered(frame).sort_values("_headline", kind="stable")
        control = self._control_arm()
        reference = {}
        if control is not None:
            for row in frame[frame["arm"] == control].itertuples():
                reference[row.panel] = row.value
        png = plot_bars(
            frame,
            title="Final generation" + (" (dashed: control)" if reference else ""),
            colours=self.colours,
            reference=reference,
            share_y=False,
        )
        wide = frame["panel"].nunique() > 1 or frame.groupby("panel").size().max() > 6
        return self._add("conditions", "Conditions compared", png, wide=wide)

    def headline_cards(self) -> list[dict[str, Any]]:
        """Per headline metric: the control's value, then each arm's with Δ and p."""
        final = compare.final_rows(self.summary, self.dims)
        cards = []
        for metric, group, rows in self._headline_rows(final):
            comparisons = self.comparisons[
                (self.comparisons["metric"] == metric) & (self.comparisons["group"] == group)
            ]
            if compare.BIAS_RATIO in self.dims and len(comparisons):
                top = comparisons[compare.BIAS_RATIO].max()
                comparisons = comparisons[comparisons[compare.BIAS_RATIO] == top]
            controls = list(dict.fromkeys(comparisons["control"]))
            lines = []
            for control in controls:
                match = rows[rows["arm"] == control]
                if len(match):
                    lines.append(_line(control, match.iloc[0], control=True))
            for row in comparisons.head(6).itertuples():
                lines.append(_line(row.arm, row, versus=row.control if len(controls) > 1 else ""))
            if not lines:  # nothing to compare: just the values
                lines += [_line(row.arm, row) for row in rows.head(6).itertuples()]
            generations = sorted(set(rows["generation"]))
            cards.append(
                {
                    "metric": _title(metric) + (f" ({group})" if group else ""),
                    "note": METRIC_NOTES.get(metric, ""),
                    "when": f"generation {generations[0]}"
                    if len(generations) == 1
                    else "each arm's final generation",
                    "lines": lines,
                    "more": max(0, len(comparisons) - 6),
                }
            )
        return cards

    def comparison_table(self) -> list[dict[str, Any]]:
        """Every arm against its control: headline metrics first, then in metric order."""
        order = {m: i for i, m in enumerate(self._metrics_in_order())}
        headline = compare.headline_metrics(self.summary) if len(self.summary) else []
        first = {pair: i for i, pair in enumerate(headline)}
        frame = self.comparisons.assign(
            _headline=[first.get(pair, len(first)) for pair in
                       zip(self.comparisons["metric"], self.comparisons["group"])],
            _order=self.comparisons["metric"].map(order),
        )
        # The family is every comparison in the report: each p-value adjusted for it.
        frame = frame.assign(
            p_holm=adjust_p_values(frame["p_value"].tolist(), method="holm"),
            p_bh=adjust_p_values(frame["p_value"].tolist(), method="fdr_bh"),
        )
        rows = []
        for row in frame.sort_values(["_headline", "_order", "group"], kind="stable").itertuples():
            rows.append(
                {
                    "metric": row.metric,
                    "group": row.group or "all",
                    "arm": row.arm,
                    "generation": row.generation,
                    "value": fmt(row.value),
                    "ci": fmt_ci(row.ci_low, row.ci_high),
                    "control": row.control,
                    "control_value": fmt(row.control_value),
                    "control_ci": fmt_ci(row.control_ci_low, row.control_ci_high),
                    "delta": fmt_delta(row.difference),
                    "p": fmt_p(row.p_value),
                    "p_holm": fmt_p(row.p_holm),
                    "p_bh": fmt_p(row.p_bh),
                    "test": row.test,
                    "significant": _significant(row.p_holm),
                }
            )
        return rows

    def test_table(self) -> tuple[list[str], list[list[str]]]:
        """The study's own tests: metric, condition, the columns that vary, and the p-value."""
        if self.tests.empty:
            return [], []
        fixed = ("metric", "condition", "value", "ci_low", "ci_high")
        varying = [
            c
            for c in self.tests.columns
            if c not in fixed and (c == "group" or self.tests[c].nunique(dropna=False) > 1)
        ]
        columns = ["metric", "condition", *varying, "p-value", "p (Holm)", "p (BH)"]
        # The family is every test the study computed, across arms and seeds.
        holm = adjust_p_values(self.tests["value"].tolist(), method="holm")
        bh = adjust_p_values(self.tests["value"].tolist(), method="fdr_bh")
        body = []
        for record, p_holm, p_bh in zip(self.tests.to_dict("records"), holm, bh):
            cells = [str(record["metric"]), str(record["condition"])]
            cells += [
                fmt(record[c]) if isinstance(record[c], float) else str(record[c]) for c in varying
            ]
            cells += [fmt_p(record["value"]), fmt_p(p_holm), fmt_p(p_bh)]
            body.append(cells)
        return columns, body

    def final_table(self) -> tuple[list[str], list[list[str]]]:
        final = compare.final_rows(self.summary, self.dims)
        if final.empty:
            return [], []
        arms = self._arm_order()
        header = ["metric", "group", *arms]
        body = []
        for metric in self._metrics_in_order():
            part = final[final["metric"] == metric]
            for group in dict.fromkeys(part["group"]):
                cells = [_title(metric), group or "all"]
                for arm in arms:
                    match = part[(part["group"] == group) & (part["arm"] == arm)]
                    if match.empty:
                        cells.append("")
                    else:
                        row = match.iloc[0]
                        cells.append(
                            f"{fmt(row.value)} "
                            f"{fmt_ci(row.ci_low, row.ci_high, getattr(row, 'ci_clipped', False))}"
                        )
                body.append(cells)
        return header, body

    def samples(self) -> list[dict[str, Any]]:
        blocks: dict[str, list[Any]] = {}
        for run in self.data.runs:
            for sample in read_samples(run, per_group=self.samples_per_group):
                blocks.setdefault(sample.condition, []).append(sample)
        order = {
            c: i - (len(self.data.conditions) + 1) * (c in self.control_names)
            for i, c in enumerate(self.data.conditions)
        }
        return [
            {"condition": c, "samples": blocks[c], "control": c in self.control_names}
            for c in sorted(blocks, key=lambda c: order.get(c, len(order)))
        ]

    def fallback_rows(self) -> list[dict[str, Any]]:
        """Each fallback that happened: how often, and in which arms, seeds and generations."""
        happened = self.fallbacks[self.fallbacks["value"].fillna(0) > 0]
        rows = []
        for metric, frame in happened.groupby("metric", sort=True):
            where = [
                f"{row.condition} seed {row.seed} gen {row.generation}"
                + (f" ({row.group})" if row.group else "")
                for row in frame.itertuples()
            ]
            rows.append(
                {
                    "metric": metric,
                    "note": FALLBACK_NOTES.get(str(metric), ""),
                    "count": int(frame["value"].sum()),
                    "where": ", ".join(where[:8])
                    + (f" and {len(where) - 8} more" if len(where) > 8 else ""),
                }
            )
        return rows

    def manifest_rows(self) -> list[dict[str, Any]]:
        rows = []
        for run in self.data.runs:
            manifest = dict(run.manifest)
            status = self.status or manifest.get("status")
            ended = manifest.get("ended_at") or (now() if self.status else None)
            versions = manifest.get("versions") or {}
            rows.append(
                {
                    "label": run.label or run.root.name,
                    "path": str(run.root),
                    "status": status,
                    "fields": [
                        ("status", status),
                        ("config hash", manifest.get("config_hash")),
                        ("seed", manifest.get("seed")),
                        ("started", manifest.get("started_at")),
                        ("ended", ended),
                        ("resumes", manifest.get("resumes")),
                        ("git revision", manifest.get("git_revision")),
                        ("host", manifest.get("host")),
                        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
                        *([("error", manifest["error"])] if manifest.get("error") else []),
                    ],
                }
            )
        return rows

    # ------------------------------------------------------------ render
    def render(self) -> str:
        data = self.data
        config = data.config
        headline = self.headline_cards()
        comparison = self.comparison_figure()
        curves = self.curve_sections()
        ratio = self.ratio_sections()
        groups = self.group_sections()
        analysis = [
            Figure(name=_slug(caption), title=caption, png=path.read_bytes(), wide=False)
            for caption, path in data.analysis
        ]
        test_header, test_rows = self.test_table()
        comparisons = self.comparison_table()
        final_header, final_rows = self.final_table()
        manifests = self.manifest_rows()
        statuses = {m["status"] for m in manifests}
        context = {
            "title": config.get("name", data.root.name)
            if not data.is_sweep
            else f"sweep {data.root.name}",
            "study": config.get("study", ""),
            "sentence": describe(data, control=self.control),
            "root": str(data.root),
            "status": statuses.pop() if len(statuses) == 1 else "mixed",
            "control": self.control,
            "control_text": self._control_text(),
            "compared": not self.comparisons.empty,
            "confidence": f"{self.confidence:.0%}",
            "headline": headline,
            "fallbacks": self.fallback_rows(),
            "clipped": bool(self.summary.get("ci_clipped", pd.Series(dtype=bool)).any()),
            "clipped_mark": CLIPPED_MARK,
            "comparison": comparison,
            "curves": curves,
            "ratio": ratio,
            "groups": groups,
            "analysis": analysis,
            "comparisons": comparisons[:MAX_TABLE_ROWS],
            "comparisons_total": len(comparisons),
            "test_header": test_header,
            "test_rows": test_rows[:MAX_TABLE_ROWS],
            "tests_total": len(test_rows),
            "max_rows": MAX_TABLE_ROWS,
            "final_header": final_header,
            "final_rows": final_rows[: MAX_TABLE_ROWS * 2],
            "final_total": len(final_rows),
            "samples": self.samples(),
            "samples_per_group": self.samples_per_group,
            "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
            "conditions": config.get("conditions") or {},
            "axes": data.axes,
            "axis_rows": [
                (
                    str(run.root.relative_to(data.root)) if data.is_sweep else run.root.name,
                    [values[i] for values in data.axes.values()],
                )
                for i, run in enumerate(data.runs)
            ],
            "manifests": manifests,
            "is_sweep": data.is_sweep,
            "empty": self.summary.empty,
            "written": now(),
            "version": (data.runs[0].manifest.get("versions") or {}).get("biasloop", ""),
        }
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        environment.filters.update(num=fmt, pvalue=fmt_p)
        return environment.get_template("report.html.j2").render(**context)
