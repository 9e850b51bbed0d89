"""Read what a report shows: one run directory, or a folder of runs (a sweep).

Nothing here writes. A single run gives its manifest, its metric table and its
evaluation responses. A sweep is any folder holding run directories at any
depth; its runs are told apart by the config keys whose values differ between
them (seed aside), and those differences become the condition names of one
combined metric table, so runs that differ only in seed pool as seeds.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from biasloop.errors import RunStoreError
from biasloop.store import MANIFEST, METRIC_COLUMNS, RunStore, read_jsonl

# Config keys that never tell runs of a sweep apart.
_NOT_AN_AXIS = {"name", "seed", "seeds"}
_STAGE = re.compile(r"gen-(\d+)$")
_SEED = re.compile(r"seed-(\d+)$")
# Folders of model responses to evaluation prompts: the loop's eval/, other studies' outputs/.
RESPONSE_FOLDERS = ("eval", "outputs")


@dataclass(frozen=True)
class Run:
    """One run directory as the report sees it."""

    root: Path
    manifest: dict[str, Any]
    metrics: pd.DataFrame
    label: str = ""  # how a sweep names this run ("" for a lone run)

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @functools.cached_property
    def conditions(self) -> list[str]:
        """Condition names in config order (measured yet or not), then any others in the table."""
        names = list(self.config.get("conditions") or {}) or ["main"]
        found = (
            [c for c in pd.unique(self.metrics["condition"].astype(str))]
            if len(self.metrics)
            else []
        )
        if found and not set(names) & set(found):
            return found  # the study names its own conditions (e.g. one per bias ratio)
        return names + [c for c in found if c not in names]

    def condition_label(self, condition: str) -> str:
        """The condition's name in a combined table: ``label · condition`` inside a sweep."""
        if not self.label:
            return condition
        return (
            self.label
            if condition == "main" and self.conditions == ["main"]
            else f"{self.label} · {condition}"
        )


@dataclass(frozen=True)
class Sample:
    """One evaluation response, shown as text in the report."""

    condition: str
    seed: int
    stage: str  # "generation 3", or the folder name for other layouts
    order: tuple[int, str]
    group: str
    prompt: str
    response: str
    reward: float | None


@dataclass(frozen=True)
class ReportInput:
    """Everything a report is made of, read from disk."""

    root: Path
    runs: list[Run]
    metrics: pd.DataFrame
    conditions: list[str]
    axes: dict[str, list[str]] = field(default_factory=dict)  # sweep axis -> values in run order
    analysis: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG)

    @property
    def is_sweep(self) -> bool:
        return len(self.runs) > 1 or self.root != self.runs[0].root

    @property
    def config(self) -> dict[str, Any]:
        """The first run's config: for a sweep, the base that its axes vary."""
        return self.runs[0].config


def find_runs(directory: Path) -> list[Path]:
    """``directory`` itself if it is a run, else every run directory below it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunStoreError(f"{str(directory)!r} is not a folder")
    if (directory / MANIFEST).is_file():
        return [directory]
    roots: list[Path] = []
    for manifest in sorted(directory.rglob(MANIFEST)):
        root = manifest.parent
        relative = root.relative_to(directory).parts
        if any(part.startswith(".") for part in relative):
            continue  # staging folders of atomic writes
        if any(root.is_relative_to(other) for other in roots):
            continue
        roots.append(root)
    if not roots:
        raise RunStoreError(
            f"{str(directory)!r} is not a run directory (no {MANIFEST}) and holds no runs below it"
        )
    return roots


def read_metrics(root: Path) -> pd.DataFrame:
    """The run's metric table; for an unfinished run, its per-generation tables (read only)."""
    path = root / "metrics.parquet"
    if path.is_file():
        frames = [pd.read_parquet(path)]
    else:
        frames = [
            pd.read_parquet(p) for p in sorted((root / "conditions").glob("**/metrics.parquet"))
        ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    missing = [c for c in METRIC_COLUMNS if c not in frame.columns]
    if missing:
        raise RunStoreError(f"{str(path)!r} lacks the columns {missing}; expected {METRIC_COLUMNS}")
    frame["condition"] = frame["condition"].astype(str)
    frame["group"] = frame["group"].fillna("").astype(str)
    return frame


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        flat: dict[str, str] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(data, sort_keys=True)}


def sweep_axes(configs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Config keys (dotted) whose values differ between runs, with each run's value."""
    flats = [_flatten(c) for c in configs]
    keys = sorted({k for flat in flats for k in flat})
    axes = {}
    for key in keys:
        if key.split(".")[0] in _NOT_AN_AXIS:
            continue
        values = [flat.get(key, "null") for flat in flats]
        if len(set(values)) > 1:
            axes[key] = [_plain(v) for v in values]
    return axes


def _plain(value: str) -> str:
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def _label_runs(
    roots: list[Path], manifests: list[dict[str, Any]], directory: Path
) -> tuple[list[str], dict[str, list[str]]]:
    axes = sweep_axes([m.get("config") or {} for m in manifests])
    labels = [", ".join(f"{k}={v[i]}" for k, v in axes.items()) for i in range(len(roots))]
    if not axes:
        labels = [str((m.get("config") or {}).get("name", "run")) for m in manifests]
    # Two runs with one label and one seed would merge into a fake seed pair: name them by folder.
    seen: dict[tuple[str, int], int] = {}
    for i, manifest in enumerate(manifests):
        for seed in (manifest.get("config") or {}).get("seeds") or [manifest.get("seed", 0)]:
            seen[(labels[i], seed)] = seen.get((labels[i], seed), 0) + 1
    if any(count > 1 for count in seen.values()):
        labels = [str(root.relative_to(directory)) for root in roots]
    return labels, axes


def read_samples(run: Run, *, per_group: int) -> list[Sample]:
    """The first ``per_group`` responses per condition × stage × group (first seed only).

    Responses are read from ``conditions/<c>/seed-<s>/<stage…>/eval/*.jsonl`` (chunks of
    one stage, as the loop writes them) and ``…/<stage…>/outputs/<evaluation>.jsonl``
    (one file per evaluation).
    """
    if per_group <= 0:
        return []
    files: dict[tuple[str, tuple[str, ...]], dict[int, list[Path]]] = {}
    for folder in RESPONSE_FOLDERS:
        for path in (run.root / "conditions").glob(f"*/seed-*/**/{folder}/*.jsonl"):
            parts = path.relative_to(run.root).parts
            seed = _SEED.match(parts[2])
            if not seed:
                continue
            stage = parts[3:-2] + ((path.stem,) if folder == "outputs" else ())
            by_seed = files.setdefault((parts[1], stage), {})
            by_seed.setdefault(int(seed.group(1)), []).append(path)
    samples = []
    for (condition, stage), by_seed in files.items():
        seed = min(by_seed)
        counts: dict[str, int] = {}
        for path in sorted(by_seed[seed]):
            for record in read_jsonl(path):
                group = _group(record)
                if counts.get(group, 0) >= per_group:
                    continue
                counts[group] = counts.get(group, 0) + 1
                samples.append(_sample(record, run.condition_label(condition), seed, stage, group))
    return sorted(samples, key=lambda s: (s.condition, s.order))


def _group(record: dict[str, Any]) -> str:
    """``group``, or the first of ``groups`` (e.g. gender of a gender × culture item)."""
    groups = record.get("groups")
    if "group" not in record and isinstance(groups, dict) and groups:
        return str(next(iter(groups.values())))
    return str(record.get("group", ""))


def _first(record: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = record.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return value
    return None


def _sample(
    record: dict[str, Any], condition: str, seed: int, stage: tuple[str, ...], group: str
) -> Sample:
    response = _first(record, "responses", "response", "answer", "output", "text")
    reward = _first(record, "rewards", "reward", "quality")
    match = _STAGE.match(stage[-1]) if len(stage) == 1 else None
    label = f"generation {int(match.group(1))}" if match else " / ".join(stage) or "evaluation"
    order = (int(match.group(1)) if match else 0, "/".join(stage))
    return Sample(
        condition=condition,
        seed=seed,
        stage=label,
        order=order,
        group=group,
        prompt=str(record.get("prompt", "")),
        response="" if response is None else str(response),
        reward=float(reward) if isinstance(reward, (int, float)) else None,
    )


def collect(directory: Path) -> ReportInput:
    """Read a run, or every run of a sweep, into one :class:`ReportInput`."""
    directory = Path(directory)
    roots = find_runs(directory)
    manifests = [RunStore(root).manifest() for root in roots]
    if len(roots) == 1 and roots[0] == directory:
        labels, axes = [""], {}
    else:
        labels, axes = _label_runs(roots, manifests, directory)
    runs = [
        Run(root=root, manifest=manifest, metrics=read_metrics(root), label=label)
        for root, manifest, label in zip(roots, manifests, labels)
    ]

    frames, conditions = [], []
    for run in runs:
        frame = run.metrics.copy()
        if run.label:
            names = {c: run.condition_label(c) for c in frame["condition"].unique()}
            frame["condition"] = frame["condition"].map(names)
        frames.append(frame)
        conditions += [
            run.condition_label(c)
            for c in run.conditions
            if run.condition_label(c) not in conditions
        ]
    frames = [f for f in frames if len(f)]
    metrics = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=METRIC_COLUMNS)
    )
    extra = [c for c in metrics.columns if c not in METRIC_COLUMNS]
    metrics = metrics[METRIC_COLUMNS + extra]

    analysis = []
    for run in runs:
        for png in sorted((run.root / "analysis").rglob("*.png")):  # `biasloop analyze` figures
            caption = png.stem.replace("_", " ").replace("-", " ")
            analysis.append((f"{run.label}: {caption}" if run.label else caption, png))
    return ReportInput(
        root=directory,
        runs=runs,
        metrics=metrics,
        conditions=conditions,
        axes=axes,
        analysis=analysis,
    )
