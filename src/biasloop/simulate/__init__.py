"""The mean-field simulator (``study: simulate``): the SCPL loop without a neural model.

The state is the user population (group shares ``p_t``), the model's attribute
distribution ``a_t`` and its per-group quality ``q_t``. Each generation uses the
same plug-ins as the neural loop: the feedback rule of ``FEEDBACK_RULES``, the
mitigation's curation of ``MITIGATIONS`` on simulated candidate sets, and the same
λ / replace / accumulate assembly; the model's response to its training mix is a
parametric map (:mod:`biasloop.simulate.response`). Hundreds of generations take
seconds, and :func:`fit_run` fits the map to a run's early generations to predict
its later ones. See ``docs/simulator.md``::

    >>> from biasloop.config import ExperimentConfig
    >>> config = ExperimentConfig(study="simulate", loop={"generations": 3},
    ...                           simulate={"candidate_sets": 20})
    >>> settings = SimulationSettings.from_config(config, ["concise", "detailed"])
    >>> [round(g.quality["concise"], 3) for g in simulate(settings)]
    [0.5, 0.5, 0.5, 0.5]
"""

from biasloop.simulate.assembly import real_size, synthetic_generations, training_mix
from biasloop.simulate.dynamics import (
    Generation,
    SimulationSettings,
    SimulationState,
    simulate,
    step,
)
from biasloop.simulate.fit import FitResult, fit_run, fit_trajectory
from biasloop.simulate.response import ResponseParams, quality_of, trained_attributes

__all__ = [
    "FitResult",
    "Generation",
    "ResponseParams",
    "SimulationSettings",
    "SimulationState",
    "fit_run",
    "fit_trajectory",
    "quality_of",
    "real_size",
    "simulate",
    "step",
    "synthetic_generations",
    "trained_attributes",
    "training_mix",
]
