"""The ``inheritance`` study: bias inheritance in LLM data augmentation (:mod:`biasloop.inherit`)."""

from pathlib import Path

import pandas as pd

from biasloop.inherit.plots import plot_bias_ratio_curves
from biasloop.inherit.study import check_inheritance, run_inheritance
from biasloop.studies.base import STUDIES, Study


def plot_inheritance(summary: pd.DataFrame, folder: Path) -> list[Path]:
    """Each evaluation's metrics against the bias ratio γ (``plots/EVAL.png``)."""
    return plot_bias_ratio_curves(summary, folder)


STUDIES.register("inheritance")(
    Study(
        run=run_inheritance,
        check=check_inheritance,
        plot=plot_inheritance,
        summary="Bias inheritance: biased augmented data mixed in at ratio γ, evaluated per group.",
    )
)
