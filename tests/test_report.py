"""The report: one self-contained page per run or sweep, checked in real headless Chromium."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from biasloop.cli import app
from biasloop.config import ExperimentConfig
from biasloop.metrics.stats import adjust_p_values
from biasloop.report import compare
from biasloop.report import page as page_module
from biasloop.report.arms import Arms
from biasloop.report.collect import collect
from biasloop.report.html import FIGURES_DIR, render, write_report
from biasloop.report.page import build_page, comparison_table, study_tests_table
from biasloop.report.wording import fmt_ci, fmt_p
from biasloop.store import RunStore, write_jsonl, write_table

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SCRIPT = "<script>alert(1)</script>"
IMAGE = '<img src=x onerror="window.__pwned = 1; alert(2)">'


# ---------------------------------------------------------------- run directories made by hand
def make_run(
    root: Path,
    *,
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    responses: dict[tuple[str, int, int], list[dict[str, Any]]] | None = None,
) -> Path:
    """A run directory as `biasloop run` leaves it: manifest, metrics.parquet, eval responses."""
    cfg = ExperimentConfig.model_validate(config)
    store = RunStore(root)
    store.create(config=cfg.model_dump(mode="json"), config_hash="0123456789abcdef", seed=cfg.seed)
    store.update_manifest(status="completed", ended_at="2026-01-01T00:10:00+00:00")
    write_table(root / "metrics.parquet", pd.DataFrame(rows))
    for (condition, seed, generation), records in (responses or {}).items():
        write_jsonl(
            root
            / "conditions"
            / condition
            / f"seed-{seed}"
            / f"gen-{generation:03d}"
            / "eval"
            / "00000.jsonl",
            records,
        )
    return root


def scpl_rows(
    conditions: dict[str, float], seeds: list[int], generations: int = 4, salt: str = ""
) -> list[dict[str, Any]]:
    """Loop metrics whose bias grows with ``conditions[name]`` per generation, plus seed noise."""
    rows = []

    def add(**row: Any) -> None:
        spread = 0.02
        rows.append({**row, "ci_low": row["value"] - spread, "ci_high": row["value"] + spread})

    for condition, slope in conditions.items():
        for seed in seeds:
            rng = np.random.default_rng([seed, zlib.crc32(f"{condition}{salt}".encode())])
            for t in range(generations):
                common = {"generation": t, "condition": condition, "seed": seed}
                noise = float(rng.normal(0, 0.01))
                add(**common, group="", metric="preference_bias", value=0.1 + slope * t + noise)
                add(**common, group="", metric="disparate_bias", value=0.3 - slope * t / 2 + noise)
                add(**common, group="", metric="quality", value=0.6 + noise)
                add(**common, group="", metric="perplexity", value=40.0 + t + noise)
                for group, sign in (("concise", 1), ("detailed", -1)):
                    add(
                        **common,
                        group=group,
                        metric="quality",
                        value=0.6 + sign * (0.15 + slope * t),
                    )
                    add(**common, group=group, metric="group_share", value=0.5 + sign * slope * t)
    return rows


def eval_records(
    prompt: str = "Tell me about buckle.", response: str = "A buckle fastens."
) -> list[dict[str, Any]]:
    return [
        {
            "query_id": f"{group}:{i}",
            "group": group,
            "prompt": prompt,
            "responses": [response],
            "rewards": [0.5],
        }
        for group in ("concise", "detailed")
        for i in range(3)
    ]


SCPL_CONFIG = {
    "name": "loop-report",
    "study": "scpl",
    "seeds": [0, 1],
    "model": {"name": "tiny-random"},
    "task": {"name": "preference"},
    "loop": {"generations": 3},
    "conditions": {
        "performative": {"feedback.rule": "retention"},
        "static": {"feedback.rule": "static"},
        "reward": {"feedback.rule": "retention", "mitigation.name": "reward_rejection"},
    },
}


@pytest.fixture(scope="module")
def scpl_report(tmp_path_factory) -> Path:
    """A two-seed, three-condition loop run whose sample generations carry HTML and script."""
    root = tmp_path_factory.mktemp("scpl") / "run"
    responses = {
        (c, s, t): eval_records()
        for c in SCPL_CONFIG["conditions"]
        for s in (0, 1)
        for t in range(4)
    }
    responses[("performative", 0, 1)] = eval_records(
        prompt=f"Describe <b>this</b> {IMAGE}", response=SCRIPT
    )
    make_run(
        root,
        config=SCPL_CONFIG,
        rows=scpl_rows({"performative": 0.05, "static": 0.0, "reward": 0.02}, seeds=[0, 1]),
        responses=responses,
    )
    return write_report(root)


@pytest.fixture(scope="module")
def inheritance_report(tmp_path_factory) -> Path:
    """An inheritance-shaped run: metrics by bias_ratio × bias_type, study p-values, analysis."""
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("inheritance") / "run"
    rows = []
    for ratio in (0.0, 0.1, 0.5):
        for bias_type in ("contextual_explicit", "contrastive_implicit"):
            for seed in (0, 1):
                common = {
                    "generation": 0,
                    "condition": "main",
                    "seed": seed,
                    "bias_ratio": ratio,
                    "bias_type": bias_type,
                    "task": "occupation",
                }
                gap = (
                    0.02
                    + ratio * (0.4 if bias_type.startswith("contextual") else 0.2)
                    + seed * 0.01 * (1 + 3 * ratio)
                )
                for group, value in (("female", 0.8 - gap), ("male", 0.8)):
                    rows.append(
                        {
                            **common,
                            "group": group,
                            "metric": "accuracy",
                            "value": value,
                            "ci_low": value - 0.03,
                            "ci_high": value + 0.03,
                        }
                    )
                rows.append(
                    {
                        **common,
                        "group": "",
                        "metric": "accuracy_gap",
                        "value": gap,
                        "ci_low": gap - 0.02,
                        "ci_high": gap + 0.02,
                    }
                )
                if ratio > 0:
                    p = 0.2 / (1 + 40 * ratio)
                    rows.append(
                        {
                            **common,
                            "group": "",
                            "metric": "accuracy_gap_p_value",
                            "value": p,
                            "ci_low": p,
                            "ci_high": p,
                        }
                    )
    config = {
        "name": "inherit-report",
        "study": "inheritance",
        "seeds": [0, 1],
        "model": {"name": "tiny-random"},
        "inheritance": {"bias_ratios": [0.0, 0.1, 0.5]},
    }
    make_run(root, config=config, rows=rows)
    figure, axis = plt.subplots(figsize=(4, 3))
    axis.scatter([0, 1, 2], [1, 0, 1])
    axis.set_title("projection of D_o and D_a")
    (root / "analysis").mkdir()
    figure.savefig(root / "analysis" / "embedding_projection.png")
    plt.close(figure)
    return write_report(root)


def _images(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)


# ---------------------------------------------------------------- Chromium via DevTools protocol
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Chromium:
    """Headless Chromium over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out, NUL-framed JSON)."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
        self.log = workdir / "chromium.log"
        commands_read, self._commands = os.pipe()
        self._replies_read, replies_write = os.pipe()

        def child_fds() -> None:  # runs in the child between fork and exec
            high_in = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={self.profile}",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                preexec_fn=child_fds,
                close_fds=False,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        os.close(commands_read)
        os.close(replies_write)
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._next_id = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._replies_read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                while b"\0" in buffer:
                    raw, buffer = buffer.split(b"\0", 1)
                    message = json.loads(raw)
                    with self._changed:
                        if "id" in message:
                            self._replies[message["id"]] = message
                        else:
                            self.events.append(message)
                        self._changed.notify_all()

    def _wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(
                        f"Chromium gave no {what} within {timeout:.0f} s "
                        f"(exit code {self.process.poll()}); log: {self.log.read_text()[-2000:]}"
                    )
                self._changed.wait(min(left, 0.5))

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        self._next_id += 1
        number = self._next_id
        message = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        self._wait(lambda: number in self._replies, f"reply to {method}", timeout)
        reply = self._replies.pop(number)
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def open(self, path: Path, *, width: int = 1280, height: int = 1000) -> str:
        """Load a file in a fresh tab and wait for its load event; returns the session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        self.events.clear()
        self.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        self._wait(
            lambda: any(e["method"] == "Page.loadEventFired" for e in self.events), "load event", 60
        )
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str, path: Path, *, full_page: bool) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
        data = self.send("Page.captureScreenshot", params, session=session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls, error log entries (CSP, network...)."""
        errors = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                errors.append(json.dumps(params.get("exceptionDetails"))[:500])
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                errors.append(json.dumps(params.get("args"))[:500])
            elif (
                event["method"] == "Log.entryAdded"
                and params.get("entry", {}).get("level") == "error"
            ):
                errors.append(params["entry"].get("text", "")[:500])
        return errors

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]

    def dialogs(self) -> list[str]:
        return [
            e["params"].get("message", "")
            for e in self.events
            if e["method"] == "Page.javascriptDialogOpening"
        ]

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.send("Browser.close", timeout=10)
            self.process.wait(timeout=10)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            os.close(self._commands)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    executable = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if executable is None:
        pytest.fail(
            "Debian's chromium is not installed, so the report cannot be checked in a browser; "
            "`make setup` installs it (or: apt-get install -y chromium)",
            pytrace=False,
        )
    browser = Chromium(executable, tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()


CHECK_IMAGES = """
document.querySelectorAll('details').forEach(d => d.open = true);
Promise.all([...document.images].map(img => img.decode().then(() => true, () => false)))
  .then(decoded => [...document.images].map((img, i) => ({
      alt: img.alt, width: img.naturalWidth, height: img.naturalHeight, decoded: decoded[i],
      shown: img.getBoundingClientRect().width,
      data: img.src.startsWith('data:image/png;base64,')})))
"""


# ---------------------------------------------------------------- in the browser
def test_report_loads_in_chromium_without_console_errors_and_every_figure_renders(
    scpl_report, chromium
):
    session = chromium.open(scpl_report)
    images = chromium.evaluate(session, CHECK_IMAGES)
    chromium.screenshot(session, ARTIFACTS / "report-top.png", full_page=False)
    chromium.screenshot(session, ARTIFACTS / "report.png", full_page=True)

    assert chromium.console_errors() == []
    assert len(images) >= 8, images  # conditions, curves, per-group bars
    broken = [
        image
        for image in images
        if not (image["decoded"] and image["width"] > 0 and image["height"] > 0 and image["data"])
    ]
    assert broken == [], broken
    assert len(images) == len(list((scpl_report.parent / FIGURES_DIR).glob("*.png")))
    # Nothing but the page itself and its embedded images is requested.
    assert [url for url in chromium.requests() if not url.startswith(("data:", "file:"))] == []
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_model_text_with_html_or_script_shows_as_text_and_never_runs(
    scpl_report, chromium, tmp_path
):
    html = scpl_report.read_text(encoding="utf-8")
    assert SCRIPT not in html and "<img src=x" not in html and "<b>this</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Escaping alone must be enough: check again with the page's Content-Security-Policy removed.
    unprotected = tmp_path / "report-without-csp.html"
    unprotected.write_text(
        re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", html), encoding="utf-8"
    )
    assert "Content-Security-Policy" not in unprotected.read_text(encoding="utf-8")
    for page in (scpl_report, unprotected):
        session = chromium.open(page)
        state = chromium.evaluate(
            session,
            """document.querySelectorAll('details').forEach(d => d.open = true);
            ({
            scripts: document.querySelectorAll('script').length,
            injectedImages: document.querySelectorAll('img:not([src^="data:"])').length,
            bold: document.querySelectorAll('td b').length,
            pwned: window.__pwned === undefined ? null : window.__pwned,
            text: document.body.innerText})""",
        )
        assert chromium.dialogs() == []
        assert state["scripts"] == 0 and state["injectedImages"] == 0 and state["bold"] == 0
        assert state["pwned"] is None
        assert SCRIPT in state["text"]
        assert IMAGE in state["text"]
        assert chromium.console_errors() == []


# ---------------------------------------------------------------- what the page holds
def test_report_is_self_contained_with_no_scripts_and_figures_written_as_png(scpl_report):
    html = scpl_report.read_text(encoding="utf-8")
    sources = _images(html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "default-src 'none'" in html
    figures = sorted((scpl_report.parent / FIGURES_DIR).glob("*.png"))
    assert len(figures) == len(sources)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
    assert {f.read_bytes() for f in figures} == embedded
    assert not list(scpl_report.parent.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_summary_states_the_experiment_and_compares_each_condition_with_the_control(scpl_report):
    html = scpl_report.read_text(encoding="utf-8")
    summary = html[html.index('id="summary"') : html.index('id="conditions"')]
    assert (
        "A self-consuming performative loop on the preference task (groups concise and detailed)"
        in summary
    )
    assert "static (the control: feedback.rule=static)" in summary
    assert "over 2 seeds" in summary
    for metric in ("preference bias", "disparate bias", "quality"):
        assert f"<h3>{metric}</h3>" in summary
    assert summary.count("Δ ") >= 6  # two arms against the control in three cards
    assert "paired t, 2 seeds" in html


def test_curves_cover_generations_with_bands_and_groups_get_their_own_panels(scpl_report):
    names = [p.name for p in sorted((scpl_report.parent / FIGURES_DIR).glob("*.png"))]
    for metric in ("preference_bias", "disparate_bias", "quality", "group_share", "perplexity"):
        assert any(f"curve-{metric}" in n for n in names), (metric, names)
    assert any("groups-quality" in n for n in names)
    assert any("conditions" in n for n in names)


def test_bias_ratio_column_gives_plots_against_gamma_compared_with_gamma_zero(inheritance_report):
    html = inheritance_report.read_text(encoding="utf-8")
    names = [p.name for p in sorted((inheritance_report.parent / FIGURES_DIR).glob("*.png"))]
    assert any("ratio-accuracy_gap" in n for n in names) and any(
        "ratio-accuracy." in n for n in names
    )
    assert not any("curve-" in n for n in names)  # one generation: no curves over generations
    assert "Bias inheritance with tiny-random" in html and "γ ∈ {0, 0.1, 0.5}" in html
    assert "γ=0 · contextual_explicit" in html  # each arm's control is the same bias type at γ = 0
    assert "Tests computed by the study" in html and "accuracy_gap_p_value" in html
    assert "Misalignment analysis" in html and "embedding projection" in html
    assert len(_images(html)) == len(names) + 1  # the analysis plot is embedded too


def test_conditions_that_name_their_bias_ratio_are_compared_with_the_gamma_zero_one(tmp_path):
    # The layout a study may choose: one condition per (γ, type, round), metric names carrying
    # the task, gaps per grouping, responses in outputs/<evaluation>.jsonl.
    arms = [
        ("base", None, "none", 0),
        ("ratio=0,type=none,round=1", 0.0, "none", 1),
        ("ratio=0.5,type=contextual,round=1", 0.5, "contextual", 1),
        ("ratio=0.5,type=contextual,round=2", 0.5, "contextual", 2),
    ]
    rows = []
    for condition, ratio, bias_type, round_ in arms:
        for seed in (0, 1):
            gap = 0.05 + (ratio or 0) * 0.3 * round_ + 0.02 * seed * (1 + round_)
            common = {
                "generation": round_,
                "condition": condition,
                "seed": seed,
                "bias_ratio": np.nan if ratio is None else ratio,
                "bias_type": bias_type,
                "round": round_,
            }
            for metric, group, value, task in (
                ("occupation.accuracy", "female", 0.7 - gap, "occupation"),
                ("occupation.accuracy", "male", 0.7, "occupation"),
                ("occupation.accuracy_gap", "gender", gap, "occupation"),
                ("occupation.accuracy_gap_p_value", "gender", 0.5, "occupation"),
                ("data.train_size", "", 16.0, "data"),
            ):
                rows.append(
                    {
                        **common,
                        "group": group,
                        "metric": metric,
                        "value": value,
                        "ci_low": value - 0.01,
                        "ci_high": value + 0.01,
                        "task": task,
                    }
                )
    root = make_run(
        tmp_path / "run",
        config={"name": "own-conditions", "study": "inheritance", "model": {"name": "tiny-random"}},
        rows=rows,
    )
    write_jsonl(
        root / "conditions/main/seed-0/round-1/ratio-0.5/contextual/outputs/story.jsonl",
        [
            {
                "id": "s1",
                "groups": {"gender": "female"},
                "prompt": "Write about Asma.",
                "answer": f"Asma {SCRIPT}",
            }
        ],
    )
    html = write_report(root).read_text(encoding="utf-8")
    summary = html[html.index('id="summary"') : html.index('id="conditions"')]
    assert "occupation.accuracy gap (gender)" in summary
    assert "ratio=0,\u200btype=none,\u200bround=1" in summary  # the γ = 0 arm is the control
    assert "paired t, 2 seeds" in html
    names = [p.name for p in (root / FIGURES_DIR).glob("*.png")]
    assert not any("curve-" in n for n in names)  # each arm has one generation: no curves
    assert any("ratio-occupation.accuracy_gap" in n for n in names)
    samples = html[html.index('id="samples"') : html.index('id="config"')]
    assert "round-1 / ratio-0.5 / contextual / story" in samples
    assert "Asma &lt;script&gt;alert(1)&lt;/script&gt;" in samples


def test_sweep_folder_combines_runs_named_by_the_settings_that_differ(tmp_path):
    sweep = tmp_path / "sweep"
    for rule, seed in (("static", 0), ("static", 1), ("retention", 0), ("retention", 1)):
        config = {
            "name": "point",
            "seed": seed,
            "model": {"name": "tiny-random"},
            "feedback": {"rule": rule},
        }
        rows = scpl_rows(
            {"main": 0.05 if rule == "retention" else 0.0}, seeds=[seed], generations=3, salt=rule
        )
        make_run(
            sweep / f"{rule}-{seed}",
            config=config,
            rows=rows,
            responses={("main", seed, 0): eval_records()},
        )
    path = write_report(sweep)
    html = path.read_text(encoding="utf-8")
    assert path == sweep / "report.html"
    assert "A sweep of 4 runs over feedback.rule (retention, static)" in html
    assert "feedback.rule=static (control)" in html  # in the sample generations
    assert "paired t, 2 seeds" in html  # seeds pooled across runs
    assert "Sweep axes" in html


def test_unfinished_run_is_reported_from_its_generation_tables_with_a_warning(tmp_path):
    root = make_run(
        tmp_path / "run",
        config={"name": "partial", "model": {"name": "tiny-random"}},
        rows=scpl_rows({"main": 0.01}, seeds=[0], generations=2),
    )
    frame = pd.read_parquet(root / "metrics.parquet")
    (root / "metrics.parquet").unlink()
    for t, part in frame.groupby("generation"):
        write_table(root / "conditions/main/seed-0" / f"gen-{t:03d}" / "metrics.parquet", part)
    RunStore(root).update_manifest(status="running", ended_at=None)
    html = write_report(root).read_text(encoding="utf-8")
    assert "This run is <strong>running</strong>" in html
    assert "preference bias" in html
    assert not (root / "metrics.parquet").exists()  # the report only reads


# ---------------------------------------------------------------- comparisons
def test_control_is_static_or_none_else_the_first_condition():
    assert compare.control_condition(["retention", "static"]) == "static"
    assert compare.control_condition(["reward", "none"]) == "none"
    assert compare.control_condition(["b", "a"]) == "b"
    assert (
        compare.control_condition(
            [
                "feedback.rule=retention, mitigation.name=none",
                "feedback.rule=static, mitigation.name=none",
            ]
        )
        == "feedback.rule=static, mitigation.name=none"
    )


def test_difference_test_is_paired_over_shared_seeds_and_a_z_test_for_one_seed():
    arm = pd.DataFrame({"seed": [0, 1, 2], "value": [1.0, 2.0, 3.5], "ci_low": 0.0, "ci_high": 0.0})
    control = pd.DataFrame(
        {"seed": [0, 1, 2], "value": [0.5, 1.0, 2.0], "ci_low": 0.0, "ci_high": 0.0}
    )
    p_value, test = compare.difference_test(arm, control, confidence=0.95)
    assert test == "paired t, 3 seeds"
    from scipy import stats

    assert p_value == pytest.approx(stats.ttest_rel([1.0, 2.0, 3.5], [0.5, 1.0, 2.0]).pvalue)

    one = pd.DataFrame({"seed": [0], "value": [0.6], "ci_low": [0.5], "ci_high": [0.7]})
    base = pd.DataFrame({"seed": [0], "value": [0.4], "ci_low": [0.3], "ci_high": [0.5]})
    p_value, test = compare.difference_test(one, base, confidence=0.95)
    se = 0.2 / (2 * stats.norm.ppf(0.975))
    assert test == "z from bootstrap CIs"
    assert p_value == pytest.approx(2 * stats.norm.sf(0.2 / np.hypot(se, se)))
    point = one.assign(ci_low=0.6, ci_high=0.6)
    assert np.isnan(compare.difference_test(point, point, confidence=0.95)[0])


# ---------------------------------------------------------------- command line and runner
def test_report_command_writes_the_report_and_prints_its_path(tmp_path):
    root = make_run(
        tmp_path / "run",
        config={"name": "cli", "model": {"name": "tiny-random"}},
        rows=scpl_rows({"main": 0.01}, seeds=[0], generations=2),
    )
    result = CliRunner().invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    assert f"report: {root / 'report.html'}" in result.output.replace("\n", "")
    assert (root / "report.html").is_file()


def test_report_command_on_a_folder_without_runs_fails_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no runs below it" in result.output
    assert "Traceback" not in result.output


def test_run_ends_by_writing_the_report_and_printing_its_path(tmp_path, chromium):
    out = tmp_path / "run"
    overrides = [
        "name=report-e2e",
        "model.name=tiny-random",
        "task.eval_queries_per_group=4",
        "generation.max_new_tokens=6",
        "generation.batch_size=4",
        "training.batch_size=4",
        "loop.generations=1",
        "loop.queries_per_generation=8",
        "metrics.bootstrap_samples=20",
        "metrics.perplexity_texts=2",
        "run.progress=false",
    ]
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    result = CliRunner().invoke(app, ["run", str(config), *overrides, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output.replace("\n", "")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<span class="badge completed">completed</span>' in html
    assert "Sample generations" in html and "generation 1" in html
    # The real run's page, with the tiny model's text, renders as cleanly as the made-up ones.
    session = chromium.open(out / "report.html")
    images = chromium.evaluate(session, CHECK_IMAGES)
    chromium.screenshot(session, ARTIFACTS / "report-tiny-run.png", full_page=True)
    assert chromium.console_errors() == []
    assert images and all(image["decoded"] and image["width"] > 0 for image in images), images


def test_intervals_clipped_to_their_metric_range_carry_the_mark_the_note_explains(scpl_report):
    # reward's preference bias is near 0 in one seed: its across-seed interval is clipped at 0.
    html = scpl_report.read_text(encoding="utf-8")
    summary = html[html.index('id="summary"') : html.index('id="conditions"')]
    assert "† marks an interval clipped to its metric" in summary
    assert '<td class="ci">[0.000, 0.288]†</td>' in summary  # on its headline card
    tests = html[html.index('id="tests"') : html.index('id="samples"')]
    assert '<td class="num">[0.000, 0.288]†</td>' in tests
    final = html[html.index('id="metrics"') :]
    assert '<td class="num">0.144 [0.000, 0.288]†</td>' in final
    # A flag read from a frame is NumPy's boolean; a missing flag (NaN) marks nothing.
    assert fmt_ci(0.0, 0.5, np.True_) == "[0.000, 0.500]†"
    assert fmt_ci(0.0, 0.5, float("nan")) == fmt_ci(0.0, 0.5, np.False_) == "[0.000, 0.500]"


def _arms_and_tests(directory: Path) -> tuple[Arms, pd.DataFrame]:
    """The report's arms and the study's own tests, as build_page splits the metric table."""
    data = collect(directory)
    measurements, tests = compare.split_tests(data.metrics)
    measurements, _ = compare.split_fallbacks(measurements)
    return Arms.of(data, measurements, confidence=0.95), tests


def test_significance_tables_give_every_p_value_adjusted_for_its_family(
    scpl_report, inheritance_report
):
    arms, _ = _arms_and_tests(scpl_report.parent)
    frame = arms.comparisons
    holm = adjust_p_values(frame["p_value"].tolist(), method="holm")
    bh = adjust_p_values(frame["p_value"].tolist(), method="fdr_bh")
    expected = {
        (m, g or "all", a, fmt_p(h), fmt_p(b))
        for m, g, a, h, b in zip(frame["metric"], frame["group"], frame["arm"], holm, bh)
    }
    table = comparison_table(arms)
    shown = {(r.metric, r.group, r.arm, r.p_holm, r.p_bh) for r in table.rows}
    assert shown == expected and len(shown) > 1
    # Red marks a Holm-adjusted p below 0.05, never a raw one alone.
    assert all(
        r.significant == (r.p_holm == "< 0.001" or float(r.p_holm) < 0.05)
        for r in table.rows
        if r.p_holm != "n/a"
    )

    _, tests = _arms_and_tests(inheritance_report.parent)
    table = study_tests_table(tests)
    assert table.header[-3:] == ("p-value", "p (Holm)", "p (BH)")
    raw = tests["value"].tolist()
    assert [r[-2] for r in table.rows] == [fmt_p(p) for p in adjust_p_values(raw, method="holm")]
    assert [r[-1] for r in table.rows] == [fmt_p(p) for p in adjust_p_values(raw, method="fdr_bh")]


def test_page_is_a_plain_view_model_that_renders_to_the_written_report(
    scpl_report, tmp_path, monkeypatch
):
    # The same clock for both pages: the page says when it was written.
    monkeypatch.setattr(page_module, "now", lambda: "2026-01-01T00:00:00+00:00")
    root = shutil.copytree(scpl_report.parent, tmp_path / "run")
    page = build_page(collect(root))
    assert [card.metric for card in page.headline] == [
        "preference bias",
        "disparate bias",
        "quality",
    ]
    # Figures are numbered in page order: the comparison, then curves, then groups.
    names = [figure.name for figure in page.figures]
    assert names[0] == "01-conditions"
    assert [name[:3] for name in names] == [f"{i:02d}-" for i in range(1, len(names) + 1)]
    assert names.index(page.groups[0].figures[0].name) > names.index(
        page.curves[-1].figures[-1].name
    )
    # Everything shown is already worded: no number waits for the template to format it.
    assert all(isinstance(line.value, str) for card in page.headline for line in card.lines)
    assert all(isinstance(sample.reward, str) for b in page.samples for sample in b.samples)
    assert render(page) == write_report(root).read_text(encoding="utf-8")
    assert sorted(p.stem for p in (root / FIGURES_DIR).glob("*.png")) == sorted(names)
