"""The ``simulate`` study: the mean-field simulator of the SCPL loop (:mod:`biasloop.simulate`)."""

from pathlib import Path

import pandas as pd

from biasloop.report.plots import plot_loop
from biasloop.simulate.plots import plot_trajectories
from biasloop.simulate.run import check_simulation, run_simulation
from biasloop.studies.base import STUDIES, Study


def plot_simulation(summary: pd.DataFrame, folder: Path) -> list[Path]:
    """The loop's per-metric plots and every trajectory in one figure (``trajectories.png``)."""
    written = plot_loop(summary, folder)
    if plot_trajectories(summary, folder / "trajectories.png"):
        written.append(folder / "trajectories.png")
    return written


STUDIES.register("simulate")(
    Study(
        run=run_simulation,
        check=check_simulation,
        plot=plot_simulation,
        loads_model=False,
        summary="Mean-field SCPL simulator: the loop's plug-ins with a parametric model, "
        "hundreds of generations in seconds.",
    )
)
