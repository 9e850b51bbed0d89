"""Fit the response map to a run's early generations and predict its later ones.

A run's ``metrics.parquet`` gives, per generation ``t`` and group ``g`` (the mean over
its seeds), the observed trajectories ``p_t(g)`` (``group_share``), ``a_t(g)``
(``attribute_share``, when the task has an attribute) and ``q_t(g)`` (``quality``).
The simulator starts from the observed ``p_0`` and ``a_0``, runs with the run's own
feedback rule, mitigation, λ, data policy and loop type (its manifest's config), and
``θ = (ρ, q_min, q_max, κ)`` is chosen by least squares (``scipy.optimize.least_squares``)
on the generations ``0 … F−1``::

    θ̂ = argmin_θ Σ_{t<F} Σ_{metric, g} (simulated_θ − observed)²

(group and attribute shares from ``t = 1``: at ``t = 0`` they are the inputs). To keep
``q_min ≤ q_max`` the search runs over ``q_max = q_min + s·(1 − q_min)``, ``s ∈ [0, 1]``.
The generations ``F … T`` are held out: the simulator, run on with ``θ̂``, predicts them,
and the report gives each metric's root-mean-square error there, beside that of the
persistence forecast (every value stays at its generation-``F−1`` observation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biasloop.errors import ConfigError, RunStoreError
from biasloop.io import read_table
from biasloop.loop.feedback import PopulationState
from biasloop.simulate.dynamics import SimulationSettings, SimulationState, normalised, simulate
from biasloop.simulate.response import ResponseParams

#: The trajectories the fit matches, per group.
FIT_METRICS = ("group_share", "attribute_share", "quality")
#: Metrics that are the state at generation 0 (inputs, not fitted there).
STATE_METRICS = ("group_share", "attribute_share")
#: Bounds of the search over (ρ, q_min, s, κ), ``q_max = q_min + s·(1 − q_min)``.
LOWER = np.array([0.0, 0.0, 0.0, 0.05])
UPPER = np.array([1.0, 1.0, 1.0, 20.0])


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """A fitted condition: parameters, observed and predicted trajectories, errors."""

    condition: str
    params: ResponseParams
    fit_generations: int  # generations 0 … F−1 were fitted
    last_generation: int  # T, the run's last evaluated generation
    observed: pd.DataFrame  # generation, group, metric, value
    predicted: pd.DataFrame  # generation, group, metric, value (0 … T)
    errors: pd.DataFrame  # metric, window, rmse, persistence_rmse, n
    fit_rmse: float
    message: str
    seed: int = 0  # the simulation's seed (its rewards and curation draws)

    def held_out_rmse(self) -> float:
        """RMSE over every held-out value of every fitted metric."""
        row = self.errors[(self.errors["metric"] == "all") & (self.errors["window"] == "held-out")]
        return float(row["rmse"].iloc[0]) if len(row) else math.nan

    def summary(self) -> dict[str, Any]:
        """Plain data for ``fit.json`` (NaN, an undefined error, as null)."""
        def plain(value: Any) -> Any:
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "condition": self.condition,
            "params": dict(zip(ResponseParams.NAMES, self.params.as_tuple())),
            "fit_generations": list(range(self.fit_generations)),
            "held_out_generations": list(range(self.fit_generations, self.last_generation + 1)),
            "fit_rmse": plain(self.fit_rmse),
            "held_out_rmse": plain(self.held_out_rmse()),
            "errors": [{k: plain(v) for k, v in row.items()}
                       for row in self.errors.to_dict(orient="records")],
            "message": self.message,
        }


def observed_trajectory(metrics: pd.DataFrame, condition: str) -> pd.DataFrame:
    """The fitted metrics of ``condition`` per generation and group, averaged over seeds."""
    rows = metrics[(metrics["condition"] == condition) & metrics["metric"].isin(FIT_METRICS)
                   & (metrics["group"] != "")]
    return (rows.groupby(["generation", "group", "metric"], as_index=False)["value"].mean()
            .sort_values(["metric", "group", "generation"]).reset_index(drop=True))


def trajectory_frame(history: Sequence[Any], settings: SimulationSettings) -> pd.DataFrame:
    """A simulation's fitted metrics as ``generation, group, metric, value`` rows."""
    rows = []
    for generation in history:
        t = generation.state.generation
        shares = generation.state.population.shares
        for g in settings.groups:
            rows += [(t, g, "group_share", shares[g]),
                     (t, g, "attribute_share", generation.state.attributes[g]),
                     (t, g, "quality", generation.quality[g])]
    return pd.DataFrame(rows, columns=["generation", "group", "metric", "value"])


def _state_at_zero(observed: pd.DataFrame, metric: str, settings: SimulationSettings,
                   fallback: dict[str, float]) -> dict[str, float]:
    values = observed[(observed["generation"] == 0) & (observed["metric"] == metric)]
    found = dict(zip(values["group"], values["value"]))
    if set(found) != set(settings.groups) or not all(np.isfinite(list(found.values()))) \
            or sum(found.values()) <= 0:
        return dict(fallback)
    return normalised({g: float(found[g]) for g in settings.groups})


def _params(x: np.ndarray) -> ResponseParams:
    rate, quality_min, spread, exponent = (float(v) for v in x)
    return ResponseParams(rate=rate, quality_min=quality_min,
                          quality_max=quality_min + spread * (1 - quality_min), exponent=exponent)


def _search_point(params: ResponseParams) -> np.ndarray:
    spread = ((params.quality_max - params.quality_min) / (1 - params.quality_min)
              if params.quality_min < 1 else 0.0)
    return np.clip([params.rate, params.quality_min, spread, params.exponent], LOWER, UPPER)


def _errors(observed: pd.DataFrame, predicted: pd.DataFrame, fit_generations: int) -> pd.DataFrame:
    """RMSE per metric (and over all) in the fit window and on the held-out generations."""
    joined = observed.merge(predicted, on=["generation", "group", "metric"],
                            suffixes=("_observed", "_predicted")).dropna()
    last_fitted = observed[observed["generation"] == fit_generations - 1]
    persistence = dict(zip(zip(last_fitted["group"], last_fitted["metric"]), last_fitted["value"]))
    joined["persistence"] = [persistence.get((g, m), math.nan)
                             for g, m in zip(joined["group"], joined["metric"])]
    fitted_state = (joined["generation"] == 0) & joined["metric"].isin(STATE_METRICS)
    rows = []
    for window, part in (("fit", joined[(joined["generation"] < fit_generations) & ~fitted_state]),
                         ("held-out", joined[joined["generation"] >= fit_generations])):
        for metric in [*FIT_METRICS, "all"]:
            chosen = part if metric == "all" else part[part["metric"] == metric]
            if chosen.empty:
                continue
            error = chosen["value_predicted"] - chosen["value_observed"]
            naive = (chosen["persistence"] - chosen["value_observed"]).dropna()
            rows.append({
                "metric": metric, "window": window, "rmse": float(np.sqrt(np.mean(error ** 2))),
                "persistence_rmse": (float(np.sqrt(np.mean(naive ** 2)))
                                     if window == "held-out" and len(naive) else math.nan),
                "n": int(len(chosen)),
            })
    return pd.DataFrame(rows, columns=["metric", "window", "rmse", "persistence_rmse", "n"])


def fit_trajectory(observed: pd.DataFrame, settings: SimulationSettings, *, fit_generations: int,
                   condition: str = "main", starts: Sequence[float] = (0.1, 0.5, 0.9)) -> FitResult:
    """Fit ``θ`` to ``observed`` generations ``0 … F−1`` and predict the rest (module doc).

    ``settings`` carries the run's loop (feedback, mitigation, λ, policy, type, groups);
    its response parameters are only the starting point of the search, which is
    restarted from each rate in ``starts`` (the best fit is kept).
    """
    from scipy.optimize import least_squares

    last = int(observed["generation"].max())
    if not 2 <= fit_generations <= last:
        raise ConfigError(
            f"--fit-generations = {fit_generations}: condition {condition!r} has generations "
            f"0..{last}; valid: 2 to {last} (at least two fitted, at least one held out)"
        )
    shares = _state_at_zero(observed, "group_share", settings, settings.initial_shares)
    attributes = _state_at_zero(observed, "attribute_share", settings,
                                settings.initial_attributes)
    settings = settings.replace(initial_attributes=attributes, generations=last)
    start = SimulationState(
        generation=0, attributes=attributes,
        population=PopulationState.from_shares(shares, total=settings.initial_population),
    )
    window = observed[(observed["generation"] < fit_generations)
                      & ~((observed["generation"] == 0) & observed["metric"].isin(STATE_METRICS))]
    window = window.dropna(subset=["value"])
    keys = list(zip(window["generation"], window["group"], window["metric"]))
    target = window["value"].to_numpy(dtype=float)
    if not len(target):
        raise RunStoreError(f"condition {condition!r}: no {', '.join(FIT_METRICS)} rows to fit")
    fit_settings = settings.replace(generations=fit_generations - 1)

    def residuals(x: np.ndarray) -> np.ndarray:
        history = simulate(fit_settings.replace(response=_params(x)), start=start)
        frame = trajectory_frame(history, fit_settings)
        simulated = dict(zip(zip(frame["generation"], frame["group"], frame["metric"]),
                             frame["value"]))
        return np.array([simulated[k] for k in keys]) - target

    quality = window[window["metric"] == "quality"]["value"]
    guess = ResponseParams(
        rate=0.5,
        quality_min=float(quality.min()) if len(quality) else settings.response.quality_min,
        quality_max=float(quality.max()) if len(quality) else settings.response.quality_max,
        exponent=1.0,
    )
    best = None
    for rate in starts:
        x0 = _search_point(ResponseParams(rate=rate, quality_min=guess.quality_min,
                                          quality_max=guess.quality_max, exponent=1.0))
        x0 = np.clip(x0, LOWER + 1e-6, UPPER - 1e-6)
        solution = least_squares(residuals, x0, bounds=(LOWER, UPPER), diff_step=1e-4,
                                 x_scale=[0.2, 0.2, 0.2, 1.0])
        if best is None or solution.cost < best.cost:
            best = solution
    params = _params(best.x)
    history = simulate(settings.replace(response=params), start=start)
    predicted = trajectory_frame(history, settings)
    errors = _errors(observed, predicted, fit_generations)
    fit_row = errors[(errors["metric"] == "all") & (errors["window"] == "fit")]
    return FitResult(
        condition=condition, params=params, fit_generations=fit_generations, last_generation=last,
        observed=observed, predicted=predicted, errors=errors,
        fit_rmse=float(fit_row["rmse"].iloc[0]) if len(fit_row) else math.nan,
        message=str(best.message), seed=settings.seed,
    )


def default_fit_generations(last_generation: int) -> int:
    """The first half of generations ``0 … T`` (at least 2), leaving at least one held out."""
    return min(max(2, math.ceil((last_generation + 1) / 2)), last_generation)


def fit_run(run_dir: Path, *, fit_generations: int | None = None,
            conditions: Sequence[str] | None = None) -> list[FitResult]:
    """Fit every condition (or those named) of the run in ``run_dir``; see :func:`fit_trajectory`.

    The loop settings come from the run's manifest, so a neural run and a simulated
    one are read alike.
    """
    from biasloop.config.load import resolved_condition, validate_config
    from biasloop.plugins import load_plugins
    from biasloop.store import RunStore

    store = RunStore(run_dir)
    manifest = store.manifest()
    config = validate_config(manifest["config"], source=str(store.manifest_path))
    load_plugins(config.plugins)
    path = store.root / "metrics.parquet"
    if not path.exists():
        raise RunStoreError(f"{str(path)!r} does not exist; valid: a run directory whose run "
                            "has finished at least one condition")
    metrics = read_table(path)
    present = list(dict.fromkeys(metrics["condition"]))
    chosen = list(conditions) if conditions else present
    for name in chosen:
        if name not in present:
            raise ConfigError(f"--condition = {name!r}: not in {str(path)!r}; valid: "
                              f"{', '.join(present)}")
    results = []
    for name in chosen:
        observed = observed_trajectory(metrics, name)
        if observed.empty:
            raise RunStoreError(f"condition {name!r} of {str(path)!r} has no "
                                f"{', '.join(FIT_METRICS)} rows per group to fit")
        condition_config = resolved_condition(config, name) if config.conditions else config
        groups = _groups(condition_config, observed)
        settings = SimulationSettings.from_config(condition_config, groups, condition=name)
        last = int(observed["generation"].max())
        results.append(fit_trajectory(
            observed, settings, condition=name,
            fit_generations=default_fit_generations(last) if fit_generations is None
            else fit_generations,
        ))
    return results


def _groups(config: Any, observed: pd.DataFrame) -> list[str]:
    """The run's groups: in ``loop.initial_shares`` order when given, else sorted."""
    found = sorted(set(observed["group"]))
    initial = config.loop.initial_shares
    if initial and set(initial) == set(found):
        return list(initial)
    return found


def write_fit(results: Sequence[FitResult], folder: Path, *, run_dir: Path) -> list[Path]:
    """``fit.json`` (parameters, errors), ``prediction.parquet`` (metric rows) and ``fit.png``.

    ``prediction.parquet`` holds the simulated trajectories of generations ``0 … T`` in
    the columns of a run's ``metrics.parquet``, so the tools that read one read both.
    """
    from biasloop.simulate.plots import plot_fit
    from biasloop.store import write_json, write_table

    folder = Path(folder)
    write_json(folder / "fit.json",
               {"run": str(run_dir), "conditions": [r.summary() for r in results]})
    rows = pd.concat([r.predicted.assign(condition=r.condition, seed=r.seed) for r in results],
                     ignore_index=True)
    rows = rows.assign(ci_low=rows["value"], ci_high=rows["value"], n=math.nan)
    write_table(folder / "prediction.parquet",
                rows[["generation", "condition", "seed", "group", "metric", "value", "ci_low",
                      "ci_high", "n"]])
    plot_fit(results, folder / "fit.png")
    return [folder / "fit.json", folder / "prediction.parquet", folder / "fit.png"]
