"""`biasloop run configs/simulate/*.yaml` and `biasloop simulate --fit RUN_DIR` end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from biasloop.cli import app

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "simulate"
runner = CliRunner()


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulated") / "run"
    started = time.perf_counter()
    result = runner.invoke(app, ["run", str(CONFIGS / "smoke.yaml"), "--out", str(out), "-q"])
    print(f"biasloop run smoke.yaml: {time.perf_counter() - started:.1f} s (imports, report "
          "and plots included)")
    assert result.exit_code == 0, result.output
    return out


def test_a_simulate_config_runs_end_to_end(simulated_run):
    metrics = pd.read_parquet(simulated_run / "metrics.parquet")
    assert list(metrics.columns[:9]) == ["generation", "condition", "seed", "group", "metric",
                                         "value", "ci_low", "ci_high", "n"]
    assert set(metrics["condition"]) == {"static", "retention", "retention-reward"}
    assert sorted(set(metrics["generation"])) == list(range(41))
    assert {"quality", "group_share", "attribute_share", "preference_bias",
            "disparate_bias", "acceptance_rate"} <= set(metrics["metric"])
    static = metrics[(metrics["condition"] == "static") & (metrics["metric"] == "group_share")]
    assert static["value"].round(12).eq(0.5).all()  # the control keeps p_t = p_0
    assert json.loads((simulated_run / "manifest.json").read_text())["status"] == "completed"
    assert (simulated_run / "plots" / "trajectories.png").exists()
    assert (simulated_run / "summary.parquet").exists()


def test_the_fit_command_prints_parameters_and_held_out_error(simulated_run):
    result = runner.invoke(app, ["simulate", "--fit", str(simulated_run), "--fit-generations",
                                 "10", "--condition", "retention"])
    assert result.exit_code == 0, result.output
    print(result.output)
    assert "ρ rate" in result.output and "held out" in result.output
    fit = json.loads((simulated_run / "simulate-fit" / "fit.json").read_text())
    (condition,) = fit["conditions"]
    # The run's own parameters (configs/simulate/smoke.yaml), from its own trajectories.
    assert condition["params"] == pytest.approx(
        {"rate": 0.3, "quality_min": 0.2, "quality_max": 0.9, "exponent": 1.5}, abs=1e-3)
    assert condition["held_out_generations"] == list(range(10, 41))
    assert condition["held_out_rmse"] < 1e-3
    prediction = pd.read_parquet(simulated_run / "simulate-fit" / "prediction.parquet")
    assert list(prediction.columns) == ["generation", "condition", "seed", "group", "metric",
                                        "value", "ci_low", "ci_high", "n"]
    assert (simulated_run / "simulate-fit" / "fit.png").exists()


def test_simulate_runs_any_config_as_the_simulate_study(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", str(CONFIGS / "smoke.yaml"), "loop.generations=5",
                                 "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["study"] == "simulate"
    assert pd.read_parquet(out / "metrics.parquet")["generation"].max() == 5


@pytest.mark.parametrize("args, fragment", [
    (["simulate"], "simulate: missing CONFIG"),
    (["simulate", "x.yaml", "--fit", "somewhere"], "give a config or --fit RUN_DIR, not both"),
    (["simulate", "--fit", "no-such-run"], "no-such-run"),
])
def test_simulate_usage_errors_are_one_line(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_an_unknown_condition_names_the_valid_ones(simulated_run):
    result = runner.invoke(app, ["simulate", "--fit", str(simulated_run), "--condition", "statc"])
    assert result.exit_code == 2
    assert "--condition = 'statc'" in result.output and "valid: " in result.output


@pytest.mark.parametrize("study", ["scpl", "inheritance"])
def test_a_simulate_section_on_another_study_is_refused(study):
    from biasloop.config import load_config
    from biasloop.errors import ConfigError
    from biasloop.runner.experiment import check_plugins

    config = load_config(None, [f"study={study}", "model.name=tiny-random", "simulate.rate=0.3"])
    with pytest.raises(ConfigError, match=rf"simulate: set on a `study: {study}` run"):
        check_plugins(config)


def test_the_simulator_does_not_resolve_a_model_name():
    from biasloop.config import load_config
    from biasloop.runner.experiment import check_plugins

    # No such model anywhere: the simulator never loads one, so this is no error.
    check_plugins(load_config(None, ["study=simulate", "model.name=./no-such-model"]))
