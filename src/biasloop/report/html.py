"""``report.html``: one self-contained page for a run or a sweep, plus its PNG figures.

This module renders and writes; :func:`biasloop.report.page.build_page` decides what
the page shows (a :class:`~biasloop.report.view.ReportPage`).

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
import functools
from dataclasses import fields
from pathlib import Path

import jinja2

from biasloop.report.collect import collect
from biasloop.report.page import build_page
from biasloop.report.view import ReportPage
from biasloop.report.wording import CLIPPED_MARK
from biasloop.store import staging_dir, write_bytes, write_text

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
TEMPLATES = Path(__file__).resolve().parent / "templates"


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
    page = build_page(collect(directory), samples_per_group=samples_per_group, status=status)
    html = render(page)
    with staging_dir(directory / FIGURES_DIR) as folder:
        for figure in page.figures:
            write_bytes(folder / f"{figure.name}.png", figure.png)
    path = report_path(directory)
    write_text(path, html)
    return path


def render(page: ReportPage) -> str:
    """The page as one HTML document (Jinja2, autoescaped; figures as ``data:`` URIs)."""
    context = {field.name: getattr(page, field.name) for field in fields(page)}
    return (
        _environment().get_template("report.html.j2").render(**context, clipped_mark=CLIPPED_MARK)
    )


def data_uri(png: bytes) -> str:
    """A PNG embedded in the page: nothing is loaded from anywhere."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(data_uri=data_uri)
    return environment
