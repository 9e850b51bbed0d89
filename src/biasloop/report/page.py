"""Build the view model of ``report.html`` from what :func:`~biasloop.report.collect.collect` read.

:func:`build_page` splits the metric table into measurements, the study's own tests and
fallback counts, summarizes and compares the arms (:class:`~biasloop.report.arms.Arms`),
draws the figures (:mod:`biasloop.report.figures`), and words the cards and tables here.
Nothing here writes files or knows HTML.

    >>> from biasloop.report.collect import collect
    >>> page = build_page(collect("runs/demo-20260101-120000"))  # doctest: +SKIP
    >>> [card.metric for card in page.headline]  # doctest: +SKIP
    ['preference bias', 'disparate bias', 'quality']
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pandas as pd
import yaml

from biasloop.metrics.stats import adjust_p_values
from biasloop.report import compare
from biasloop.report.arms import Arms
from biasloop.report.collect import ReportInput, read_samples
from biasloop.report.describe import describe
from biasloop.report.figures import (
    analysis_figures,
    comparison_figure,
    curve_sections,
    group_sections,
    ratio_sections,
)
from biasloop.report.view import (
    CardLine,
    ComparisonRow,
    ComparisonTable,
    ConditionRow,
    FallbackNote,
    HeadlineCard,
    ManifestView,
    ReportPage,
    SampleBlock,
    SampleRow,
    Table,
)
from biasloop.report.wording import (
    FALLBACK_NOTES,
    METRIC_NOTES,
    MISSING,
    breakable,
    fmt,
    fmt_ci,
    fmt_delta,
    fmt_p,
    metric_title,
    significant,
)
from biasloop.store import now

MAX_TABLE_ROWS = 500  # rows of a table in the page; the full table is metrics.parquet
MAX_CARD_LINES = 6  # compared arms on a headline card
MAX_FALLBACK_PLACES = 8  # places listed per fallback


def build_page(
    data: ReportInput, *, samples_per_group: int = 2, status: str | None = None
) -> ReportPage:
    """The whole page of a run or a sweep; ``status`` shows instead of the manifests'."""
    config = data.config
    confidence = float((config.get("metrics") or {}).get("confidence", 0.95))
    measurements, tests = compare.split_tests(data.metrics)
    measurements, fallbacks = compare.split_fallbacks(measurements)
    arms = Arms.of(data, measurements, confidence=confidence)
    headline = headline_cards(arms)
    numbers = itertools.count(1)  # figures are numbered in page order
    comparison = comparison_figure(arms, numbers)
    curves = curve_sections(arms, numbers)
    ratio = ratio_sections(arms, numbers)
    groups = group_sections(arms, numbers)
    manifests = manifest_views(data, status=status)
    statuses = {m.status for m in manifests}
    return ReportPage(
        title=f"sweep {data.root.name}" if data.is_sweep else config.get("name", data.root.name),
        study=config.get("study", ""),
        root=str(data.root),
        status=statuses.pop() if len(statuses) == 1 else "mixed",
        written=now(),
        sentence=describe(data, control=arms.control),
        empty=arms.summary.empty,
        fallbacks=fallback_notes(fallbacks),
        headline=headline,
        confidence=f"{confidence:.0%}",
        clipped=bool(arms.summary.get("ci_clipped", pd.Series(dtype=bool)).any()),
        compared=not arms.comparisons.empty,
        control=arms.control,
        control_text=control_text(arms),
        comparison=comparison,
        curves=curves,
        ratio=ratio,
        groups=groups,
        analysis=analysis_figures(data),
        comparisons=comparison_table(arms),
        tests=study_tests_table(tests),
        samples=sample_blocks(data, arms, per_group=samples_per_group),
        samples_per_group=samples_per_group,
        is_sweep=data.is_sweep,
        sweep_axes=sweep_axes(data),
        conditions=condition_rows(config, control=arms.control),
        manifests=manifests,
        config_yaml=yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        final=final_table(arms),
        version=str((data.runs[0].manifest.get("versions") or {}).get("biasloop", "")),
    )


def _capped(rows: Sequence[tuple[str, ...]], header: Sequence[str], limit: int) -> Table:
    return Table(header=tuple(header), rows=tuple(rows[:limit]), total=len(rows))


def control_text(arms: Arms) -> str:
    """What Δ is the difference from, in words."""
    if compare.BIAS_RATIO in arms.dims:
        return "the same arm at γ = 0"
    if arms.control:
        return f"the control, {arms.control}"
    if arms.control_names:
        return f"each run's control ({', '.join(arms.control_names)})"
    return "the control"


# ---------------------------------------------------------------- summary
def _value_ci(row: Any) -> str:
    """``[low, high]`` of a summary or comparison row, marked if clipped."""
    return fmt_ci(row.ci_low, row.ci_high, row.ci_clipped)


def _card_line(arm: str, row: Any, *, control: bool = False, versus: str = "") -> CardLine:
    """One line of a headline card; ``row`` is a summary row, or a comparison row (Δ and p)."""
    compared = hasattr(row, "difference")
    return CardLine(
        arm=breakable(arm),
        value=fmt(row.value),
        ci=_value_ci(row),
        control=control,
        compared=compared,
        delta=fmt_delta(row.difference) if compared else "",
        p=fmt_p(row.p_value) if compared else "",
        significant=compared and significant(row.p_value),
        versus=versus,
    )


def headline_cards(arms: Arms) -> tuple[HeadlineCard, ...]:
    """Per headline metric: the control's value, then each arm's with Δ and p."""
    cards = []
    for metric, group, rows in arms.headline_rows():
        comparisons = arms.comparisons[
            (arms.comparisons["metric"] == metric) & (arms.comparisons["group"] == group)
        ]
        if compare.BIAS_RATIO in arms.dims and len(comparisons):
            top = comparisons[compare.BIAS_RATIO].max()
            comparisons = comparisons[comparisons[compare.BIAS_RATIO] == top]
        controls = list(dict.fromkeys(comparisons["control"]))
        lines = []
        for control in controls:
            match = rows[rows["arm"] == control]
            if len(match):
                lines.append(_card_line(control, match.iloc[0], control=True))
        for row in comparisons.head(MAX_CARD_LINES).itertuples():
            lines.append(_card_line(row.arm, row, versus=row.control if len(controls) > 1 else ""))
        if not lines:  # nothing to compare: just the values
            lines += [_card_line(row.arm, row) for row in rows.head(MAX_CARD_LINES).itertuples()]
        generations = sorted(set(rows["generation"]))
        cards.append(
            HeadlineCard(
                metric=metric_title(metric, group),
                note=METRIC_NOTES.get(metric, ""),
                when=f"generation {generations[0]}"
                if len(generations) == 1
                else "each arm's final generation",
                lines=tuple(lines),
                more=max(0, len(comparisons) - MAX_CARD_LINES),
            )
        )
    return tuple(cards)


def fallback_notes(fallbacks: pd.DataFrame) -> tuple[FallbackNote, ...]:
    """Each fallback that happened: how often, and in which arms, seeds and generations."""
    happened = fallbacks[fallbacks["value"].fillna(0) > 0]
    notes = []
    for metric, frame in happened.groupby("metric", sort=True):
        where = [
            f"{row.condition} seed {row.seed} gen {row.generation}"
            + (f" ({row.group})" if row.group else "")
            for row in frame.itertuples()
        ]
        more = len(where) - MAX_FALLBACK_PLACES
        notes.append(
            FallbackNote(
                metric=str(metric),
                note=FALLBACK_NOTES.get(str(metric), ""),
                count=int(frame["value"].sum()),
                where=", ".join(where[:MAX_FALLBACK_PLACES])
                + (f" and {more} more" if more > 0 else ""),
            )
        )
    return tuple(notes)


# ---------------------------------------------------------------- significance
def _adjusted(p_values: Sequence[float]) -> tuple[list[float], list[float]]:
    """(Holm, Benjamini–Hochberg) adjustments of one family of p-values."""
    p_values = list(p_values)
    return (
        adjust_p_values(p_values, method="holm"),
        adjust_p_values(p_values, method="fdr_bh"),
    )


def comparison_table(arms: Arms) -> ComparisonTable:
    """Every arm against its control: headline metrics first, then in metric order.

    The family of each adjusted p-value is every comparison in the report.
    """
    order = {m: i for i, m in enumerate(arms.metrics_in_order())}
    first = {pair: i for i, pair in enumerate(arms.headline())}
    comparisons = arms.comparisons
    holm, bh = _adjusted(comparisons["p_value"].tolist())
    frame = comparisons.assign(
        _headline=[
            first.get(pair, len(first)) for pair in zip(comparisons["metric"], comparisons["group"])
        ],
        _order=comparisons["metric"].map(order),
        p_holm=holm,
        p_bh=bh,
    )
    rows = [
        ComparisonRow(
            metric=row.metric,
            group=row.group or "all",
            arm=row.arm,
            generation=row.generation,
            value=fmt(row.value),
            ci=_value_ci(row),
            control=row.control,
            control_value=fmt(row.control_value),
            control_ci=fmt_ci(row.control_ci_low, row.control_ci_high, row.control_ci_clipped),
            delta=fmt_delta(row.difference),
            p=fmt_p(row.p_value),
            p_holm=fmt_p(row.p_holm),
            p_bh=fmt_p(row.p_bh),
            test=row.test,
            significant=significant(row.p_holm),
        )
        for row in frame.sort_values(["_headline", "_order", "group"], kind="stable").itertuples()
    ]
    return ComparisonTable(rows=tuple(rows[:MAX_TABLE_ROWS]), total=len(rows))


def study_tests_table(tests: pd.DataFrame) -> Table:
    """The study's own tests: metric, condition, the columns that vary, and the p-value.

    The family of each adjusted p-value is every test the study computed, across arms
    and seeds.
    """
    if tests.empty:
        return Table(header=(), rows=(), total=0)
    fixed = ("metric", "condition", "value", "ci_low", "ci_high")
    varying = [
        c
        for c in tests.columns
        if c not in fixed and (c == "group" or tests[c].nunique(dropna=False) > 1)
    ]
    header = ["metric", "condition", *varying, "p-value", "p (Holm)", "p (BH)"]
    holm, bh = _adjusted(tests["value"].tolist())
    rows = []
    for record, p_holm, p_bh in zip(tests.to_dict("records"), holm, bh):
        cells = [str(record["metric"]), str(record["condition"])]
        cells += [
            fmt(record[c]) if isinstance(record[c], float) else str(record[c]) for c in varying
        ]
        cells += [fmt_p(record["value"]), fmt_p(p_holm), fmt_p(p_bh)]
        rows.append(tuple(cells))
    return _capped(rows, header, MAX_TABLE_ROWS)


# ---------------------------------------------------------------- all metrics
def final_table(arms: Arms) -> Table:
    """Every metric × group at the final generation: ``value [CI]`` per arm."""
    final = arms.final
    if final.empty:
        return Table(header=(), rows=(), total=0)
    rows = []
    for metric in arms.metrics_in_order():
        part = final[final["metric"] == metric]
        for group in dict.fromkeys(part["group"]):
            cells = [metric_title(metric), group or "all"]
            for arm in arms.order:
                match = part[(part["group"] == group) & (part["arm"] == arm)]
                if match.empty:
                    cells.append("")
                else:
                    row = match.iloc[0]
                    cells.append(f"{fmt(row.value)} {_value_ci(row)}")
            rows.append(tuple(cells))
    return _capped(rows, ["metric", "group", *arms.order], MAX_TABLE_ROWS * 2)


# ---------------------------------------------------------------- samples, config, manifest
def sample_blocks(data: ReportInput, arms: Arms, *, per_group: int) -> tuple[SampleBlock, ...]:
    """The first responses of each condition, controls first."""
    blocks: dict[str, list[SampleRow]] = {}
    for run in data.runs:
        for sample in read_samples(run, per_group=per_group):
            blocks.setdefault(sample.condition, []).append(
                SampleRow(
                    stage=sample.stage,
                    group=sample.group,
                    prompt=sample.prompt,
                    response=sample.response,
                    reward=fmt(sample.reward),
                )
            )
    return tuple(
        SampleBlock(condition=c, control=c in arms.control_names, samples=tuple(blocks[c]))
        for c in sorted(blocks, key=arms.condition_rank)
    )


def sweep_axes(data: ReportInput) -> Table | None:
    """Each run of a sweep and its value on every axis; None for a lone run."""
    if not (data.is_sweep and data.axes):
        return None
    rows = [
        (
            str(run.root.relative_to(data.root)),
            *[values[i] for values in data.axes.values()],
        )
        for i, run in enumerate(data.runs)
    ]
    return Table(header=("run", *data.axes), rows=tuple(rows), total=len(rows))


def condition_rows(config: dict[str, Any], *, control: str | None) -> tuple[ConditionRow, ...]:
    """The config's conditions and their overrides."""
    return tuple(
        ConditionRow(
            name=name,
            control=name == control,
            overrides=tuple(f"{key}={value}" for key, value in (overrides or {}).items()),
        )
        for name, overrides in (config.get("conditions") or {}).items()
    )


def manifest_views(data: ReportInput, *, status: str | None) -> tuple[ManifestView, ...]:
    """Each run's manifest; ``status`` (and now as its end) replaces what the manifest says."""
    views = []
    for run in data.runs:
        manifest = dict(run.manifest)
        shown = status or manifest.get("status")
        ended = manifest.get("ended_at") or (now() if status else None)
        versions = manifest.get("versions") or {}
        rows = [
            ("status", shown),
            ("config hash", manifest.get("config_hash")),
            ("seed", manifest.get("seed")),
            ("started", manifest.get("started_at")),
            ("ended", ended),
            ("resumes", manifest.get("resumes")),
            ("git revision", manifest.get("git_revision")),
            ("host", manifest.get("host")),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
            *([("error", manifest["error"])] if manifest.get("error") else []),
        ]
        views.append(
            ManifestView(
                label=run.label or run.root.name,
                path=str(run.root),
                status=shown,
                fields=tuple(
                    (key, MISSING if value is None else str(value)) for key, value in rows
                ),
            )
        )
    return tuple(views)
