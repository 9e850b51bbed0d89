"""User plug-ins load from a config's `plugins:` list and run like built-ins, with no package edit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from biasloop.errors import ConfigError

USER_PLUGIN = textwrap.dedent(
    '''
    """A user's own task, mitigation and loop metric, outside the biasloop package."""

    from pydantic import BaseModel, ConfigDict, Field

    from biasloop.metrics.loop import Estimate, register_loop_metric
    from biasloop.mitigate import register_curation
    from biasloop.mitigate.rejection import _accept
    from biasloop.tasks import TASKS, Query, Task, TaskParams


    class ShoutParams(TaskParams):
        prompts: int = Field(6, ge=2, description="Prompts per group and split.")


    @TASKS.register("shout")
    class ShoutTask(Task):
        """Groups who want answers in capitals or in lower case."""

        name = "shout"
        Params = ShoutParams

        @property
        def groups(self):
            return ("loud", "quiet")

        def queries(self, group, split):
            offset = 0 if split == "train" else 100
            ask = "ANSWER IN CAPITALS" if group == "loud" else "answer in lower case"
            return [
                Query(id=f"{group}-{split}-{i}", group=group,
                      prompt=f"{ask}: name a colour number {offset + i}.",
                      reference="RED" if group == "loud" else "red")
                for i in range(self.params.prompts)
            ]

        def quality(self, queries, responses):
            def share(text, upper):
                letters = [c for c in text if c.isalpha()]
                return sum(c.isupper() == upper for c in letters) / len(letters) if letters else 0.0
            return [share(r, q.group == "loud") for q, r in zip(queries, responses)]

        def attribute(self, responses):
            return ["loud" if sum(c.isupper() for c in r) > sum(c.islower() for c in r)
                    else "quiet" for r in responses]


    class LongestParams(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        min_words: int = Field(0, ge=0, description="Drop answers shorter than this.")


    @register_curation("longest_answer", Params=LongestParams)
    def longest_answer(served, context):
        """Keep each query's longest candidate, if it has at least `min_words` words."""
        kept = []
        for candidates in served:
            best = max(range(len(candidates.responses)),
                       key=lambda i: len(candidates.responses[i].split()))
            if len(candidates.responses[best].split()) >= context.params.min_words:
                kept.append(_accept(candidates, best))
        return kept


    @register_loop_metric("shouted_share")
    def shouted_share(context):
        """Share of evaluation responses with more capitals than lower-case letters."""
        loud = [sum(c.isupper() for c in r) > sum(c.islower() for c in r)
                for r in context.responses]
        return [Estimate(sum(loud) / len(loud), n=len(loud))]
    '''
)


def _write_user_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_plugins.py").write_text(USER_PLUGIN, encoding="utf-8")
    config = folder / "shout.yaml"
    config.write_text(
        textwrap.dedent(
            """
            name: shout
            plugins: [./my_plugins.py]
            model: {name: tiny-random}
            task: {name: shout, eval_queries_per_group: 3, params: {prompts: 6}}
            generation: {max_new_tokens: 6, batch_size: 6}
            training: {batch_size: 4}
            loop: {generations: 1, queries_per_generation: 6}
            mitigation: {name: longest_answer, candidates: 2, params: {longest_answer: {min_words: 0}}}
            metrics: {bootstrap_samples: 20, perplexity_texts: 2}
            run: {progress: false}
            """
        ),
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def user_config(tmp_path_factory) -> Path:
    """One user folder per module: a name registered by two different files is a conflict."""
    return _write_user_folder(tmp_path_factory.mktemp("plugins") / "user")


def _biasloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "biasloop.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_user_task_and_mitigation_run_through_biasloop_run(tmp_path, user_config):
    config = user_config
    elsewhere = tmp_path / "elsewhere"  # the plug-in path is relative to the YAML, not the cwd
    elsewhere.mkdir()
    result = _biasloop("run", str(config), "--out", str(tmp_path / "run"), cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    quality = metrics[(metrics["metric"] == "quality") & (metrics["group"] != "")]
    assert set(quality["group"]) == {"loud", "quiet"}
    assert set(metrics[metrics["metric"] == "attribute_share"]["group"]) == {"loud", "quiet"}
    shouted = metrics[metrics["metric"] == "shouted_share"]
    assert len(shouted) == 2 and shouted["value"].between(0, 1).all()  # generations 0 and 1
    assert (shouted["n"] == 6).all()  # 3 evaluation queries per group
    synthetic = (tmp_path / "run" / "conditions" / "main" / "seed-0" / "gen-000"
                 / "synthetic.jsonl").read_text().splitlines()
    assert len(synthetic) == 6  # min_words 0 keeps one answer per served query

    listed = _biasloop("list", "mitigation", "--plugin", str(config.parent / "my_plugins.py"),
                       cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert "longest_answer" in listed.stdout and "min_words" in listed.stdout


def test_a_plugins_own_params_are_validated_before_any_work(user_config):
    from biasloop.config import load_config
    from biasloop.runner.experiment import check_plugins

    config = user_config
    with pytest.raises(ConfigError, match=r"mitigation\.params\.longest_answer\.min_words"):
        check_plugins(load_config(config, ["mitigation.params.longest_answer.min_words=-1"]))
    with pytest.raises(ConfigError, match=r"task\.params\.prompts"):
        check_plugins(load_config(config, ["task.params.prompts=1"]))


def test_an_unknown_plugin_name_suggests_the_nearest_and_names_the_field(user_config):
    from biasloop.config import load_config
    from biasloop.runner.experiment import check_plugins

    config = user_config
    with pytest.raises(ConfigError, match=r"mitigation\.name: unknown mitigation 'longest_answr' "
                                          r"\(did you mean 'longest_answer'\?\); valid: .*none"):
        check_plugins(load_config(config, ["mitigation.name=longest_answr"]))
    with pytest.raises(ConfigError, match=r"study: unknown study 'scp' \(did you mean 'scpl'\?\)"):
        check_plugins(load_config(config, ["study=scp"]))
    with pytest.raises(ConfigError, match=r"metrics\.names\[1\]: unknown metric 'shouted_shar' "
                                          r"\(did you mean 'shouted_share'\?\)"):
        check_plugins(load_config(config, ["metrics.names=[quality,shouted_shar]"]))


def test_a_missing_or_broken_plugin_is_one_line_naming_it(tmp_path):
    from biasloop.plugins import load_plugins

    with pytest.raises(ConfigError, match=r"plugins\[0\]: .*nope\.py': no such plug-in file"):
        load_plugins([str(tmp_path / "nope.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half written')\n")
    with pytest.raises(ConfigError, match=r"plugins\[1\]: .*broken\.py' failed to load: "
                                          r"RuntimeError: half written"):
        load_plugins(["json", str(broken)])
    with pytest.raises(ConfigError, match=r"plugins\[0\]: cannot import plug-in module 'no_such_mod'"):
        load_plugins(["no_such_mod"])


def test_resampling_needs_a_mitigation_with_a_threshold():
    from biasloop.config import load_config
    from biasloop.runner.experiment import check_plugins

    # on_reject: resample only helps a mitigation with a threshold (a trait of the plug-in).
    with pytest.raises(ConfigError, match=r"mitigation\.on_reject: 'resample' needs a mitigation "
                                          r"with a reward threshold; 'none' has none"):
        check_plugins(load_config(None, ["mitigation.on_reject=resample", "model.name=tiny-random"]))
    check_plugins(load_config(None, ["mitigation.on_reject=resample", "model.name=tiny-random",
                                     "mitigation.name=reward_rejection"]))


def test_biasloop_list_shows_every_builtin_plugin_kind():
    from biasloop.plugins import registered

    by_kind: dict[str, set[str]] = {}
    for info in registered():
        by_kind.setdefault(info.kind, set()).add(info.name)
        assert info.summary, f"{info.kind} {info.name} has no one-line doc"
    assert {"scpl", "inheritance"} <= by_kind["study"]
    assert {"news", "math", "preference"} <= by_kind["task"]
    assert {"bbq", "crows_pairs", "winogender"} <= by_kind["evaluation"]
    assert {"none", "reward_rejection", "token", "mask", "loss"} <= by_kind["mitigation"]
    assert {"static", "retention", "exponential"} <= by_kind["feedback rule"]
    assert {"tiny-random", "smollm2-135m-instruct"} <= by_kind["model backend"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loop.initial_shares={a: 0.5, b: 0.5}"],
         r"loop\.initial_shares has groups \['a', 'b'\]; task 'preference' has groups"),
        (["task.params.domains=[x]", "feedback.min_share=0.4"], r"task\.params"),
        (["feedback.min_share=0.4", "task.name=news"], None),
        (["inheritance.bias_ratios=[0, 0.3]"],
         r"inheritance: set on a `study: scpl` run, which does not use it"),
        (["study=inheritance", "loop.generations=7"],
         r"loop: set on a `study: inheritance` run, which does not use it"),
    ],
)
def test_setup_checks_fail_before_any_run_folder_is_written(tmp_path, overrides, message):
    from biasloop.config import load_config
    from biasloop.runner.experiment import start_run

    config = load_config(None, ["model.name=tiny-random", "run.progress=false", *overrides])
    out = tmp_path / "run"
    if message is None:  # a floor two groups can hold is fine; the run is not started here
        from biasloop.runner.experiment import check_plugins

        check_plugins(config)
        return
    with pytest.raises(ConfigError, match=message):
        start_run(config, out=out)
    assert not out.exists()


def test_the_cli_error_for_an_unknown_name_names_the_file_and_the_field(user_config):
    from typer.testing import CliRunner

    from biasloop.cli import app

    result = CliRunner().invoke(app, ["config", "validate", str(user_config),
                                      "mitigation.name=longest_answr"])
    assert result.exit_code == 2
    line = " ".join(result.output.split())
    assert f"'{user_config}': mitigation.name: unknown mitigation 'longest_answr'" in line
    assert "did you mean 'longest_answer'?" in line and "Traceback" not in result.output
