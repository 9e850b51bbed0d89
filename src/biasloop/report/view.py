"""The view model of ``report.html``: what the page shows, as plain frozen dataclasses.

Everything here is ready to print: numbers are already worded (see
:mod:`biasloop.report.wording`), rows already chosen and ordered, figures already drawn.
:mod:`biasloop.report.page` builds a :class:`ReportPage` from a run directory's data;
:mod:`biasloop.report.html` renders it, and nothing else decides what the page says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One PNG of the report; ``name`` is its file name in ``figures/`` (without ``.png``)."""

    name: str
    title: str
    png: bytes
    caption: str = ""
    wide: bool = False  # spans the page's width


@dataclass(frozen=True)
class FigureSection:
    """Figures under one heading: a family of metrics (bias, quality, a downstream task...)."""

    title: str
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class CardLine:
    """One arm on a headline card: its value and interval, and, if compared, Δ and p."""

    arm: str
    value: str
    ci: str
    control: bool = False  # the control's own line
    compared: bool = False  # has Δ and p against a control
    delta: str = ""
    p: str = ""
    significant: bool = False
    versus: str = ""  # the control it is compared with, when a card has several


@dataclass(frozen=True)
class HeadlineCard:
    """One headline metric at the final generation."""

    metric: str
    note: str
    when: str
    lines: tuple[CardLine, ...]
    more: int  # comparisons left off the card


@dataclass(frozen=True)
class ComparisonRow:
    """One arm against its control for one metric and group, with adjusted p-values."""

    metric: str
    group: str
    arm: str
    generation: int
    value: str
    ci: str
    control: str
    control_value: str
    control_ci: str
    delta: str
    p: str
    p_holm: str
    p_bh: str
    test: str
    significant: bool  # Holm-adjusted p below 0.05


@dataclass(frozen=True)
class ComparisonTable:
    rows: tuple[ComparisonRow, ...]  # the rows shown
    total: int  # all rows, shown or not


@dataclass(frozen=True)
class Table:
    """Cells of text under a header."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]  # the rows shown
    total: int  # all rows, shown or not


@dataclass(frozen=True)
class FallbackNote:
    """A fallback that happened: how often, and where."""

    metric: str
    note: str
    count: int
    where: str


@dataclass(frozen=True)
class SampleRow:
    """One evaluation response, shown as plain text."""

    stage: str
    group: str
    prompt: str
    response: str
    reward: str


@dataclass(frozen=True)
class SampleBlock:
    """The sample responses of one condition."""

    condition: str
    control: bool
    samples: tuple[SampleRow, ...]


@dataclass(frozen=True)
class ConditionRow:
    """A condition of the config and its overrides (``key=value``)."""

    name: str
    control: bool
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class ManifestView:
    """One run's manifest: (field, value) pairs, ``—`` where unknown."""

    label: str
    path: str
    status: str | None
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ReportPage:
    """The whole page, top to bottom."""

    # header
    title: str
    study: str
    root: str
    status: str | None  # the runs' status, or "mixed"
    written: str
    # summary
    sentence: str
    empty: bool  # nothing measured yet
    fallbacks: tuple[FallbackNote, ...]
    headline: tuple[HeadlineCard, ...]
    confidence: str  # "95%"
    clipped: bool  # some interval shown is clipped to its metric's range
    compared: bool  # some arm is compared with a control
    control: str | None  # the one control condition, if there is one
    control_text: str  # what Δ is taken from, in words
    # figures
    comparison: Figure | None
    curves: tuple[FigureSection, ...]
    ratio: tuple[FigureSection, ...]
    groups: tuple[FigureSection, ...]
    analysis: tuple[Figure, ...]  # the run's own ``analysis/*.png``, not written to figures/
    # tables
    comparisons: ComparisonTable
    tests: Table
    samples: tuple[SampleBlock, ...]
    samples_per_group: int
    # config and manifest
    is_sweep: bool
    sweep_axes: Table | None
    conditions: tuple[ConditionRow, ...]
    manifests: tuple[ManifestView, ...]
    config_yaml: str
    final: Table
    version: str

    @property
    def figures(self) -> list[Figure]:
        """The figures drawn for this page, in page order (written to ``figures/``)."""
        sections = (*self.curves, *self.ratio, *self.groups)
        drawn = [figure for section in sections for figure in section.figures]
        return ([self.comparison] if self.comparison else []) + drawn
