"""The ``scpl`` study: the self-consuming performative loop (:mod:`biasloop.loop.engine`)."""

from biasloop.loop.engine import check_scpl, run_scpl
from biasloop.report.plots import plot_loop
from biasloop.studies.base import STUDIES, Study

STUDIES.register("scpl")(
    Study(
        run=run_scpl,
        check=check_scpl,
        plot=plot_loop,
        summary="Self-consuming performative loop: serve, curate, evaluate, feed back, retrain.",
    )
)
