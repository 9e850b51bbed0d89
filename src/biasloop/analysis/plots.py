"""Figures of the misalignment analysis (PNG, written through :mod:`biasloop.io`)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from biasloop.report.plots import PALETTE, _save  # noqa: E402


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _model_names(frame: pd.DataFrame) -> pd.Series:
    return frame["condition"] + " · " + frame["model"]


def plot_value_misalignment(table: pd.DataFrame, folder: Path) -> list[Path]:
    """Per seed: model against reference share of the first option, one panel per model."""
    written = []
    for seed, per_seed in table.groupby("seed"):
        first = per_seed.groupby(["condition", "model", "item"]).head(1)
        models = list(dict.fromkeys(_model_names(first)))
        columns = min(4, len(models))
        rows = int(np.ceil(len(models) / columns))
        figure, axes = plt.subplots(
            rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False, sharey=True
        )
        for axis, name in zip(axes.flat, models):
            part = first[_model_names(first) == name]
            axis.scatter(part["reference_share"], part["model_share"], s=12, color=PALETTE[0])
            axis.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
            mean_distance = part["js_distance"].mean()
            axis.set_title(f"{name}\nmean JSD {mean_distance:.3f}", fontsize=8)
            axis.set_xlim(0, 1), axis.set_ylim(0, 1)
            axis.set_xlabel(f"reference share of '{part['option'].iloc[0]}'", fontsize=8)
        for axis in axes.flat[len(models):]:
            axis.set_visible(False)
        axes[0, 0].set_ylabel("model share", fontsize=8)
        figure.suptitle(f"Value misalignment, seed {seed}", fontsize=10)
        path = folder / f"values_seed-{seed}.png"
        _save(figure, path)
        plt.close(figure)
        written.append(path)
    return written


def plot_group_shares(table: pd.DataFrame, folder: Path) -> list[Path]:
    """Per axis: detected share of each group in neutral-prompt generations, per model."""
    written = []
    for axis_name, part in table.groupby("axis"):
        texts = part.groupby(["condition", "model", "seed"])["texts"].transform("sum")
        part = part.assign(name=_model_names(part) + " · s" + part["seed"].astype(str)
                           + " (n=" + texts.astype(str) + ")")
        pivot = part.pivot_table(index="name", columns="group", values="detected_share",
                                 sort=False)
        if pivot.empty:  # no text with a cue of one group: nothing to draw
            continue
        targets = part.groupby("group", sort=False)["target_share"].first()
        figure, axis = plt.subplots(figsize=(7, 0.35 * len(pivot) + 1.4))
        left = np.zeros(len(pivot))
        for index, group in enumerate(pivot.columns):
            shares = pivot[group].fillna(0).to_numpy()
            axis.barh(range(len(pivot)), shares, left=left, color=PALETTE[index % len(PALETTE)],
                      label=f"{group} (target {targets[group]:.2f})")
            left += shares
        cumulative = np.cumsum([targets[g] for g in pivot.columns])[:-1]
        for x in cumulative:
            axis.axvline(x, color="black", lw=0.8, ls="--")
        axis.set_yticks(range(len(pivot)), pivot.index, fontsize=7)
        axis.set_xlim(0, 1)
        axis.set_xlabel("share of texts about the group (texts with cues of one group)")
        axis.set_title(f"Group-data misalignment: {axis_name} in neutral-prompt generations",
                       fontsize=9)
        axis.legend(fontsize=7, loc="lower right")
        path = folder / f"group_data_{_slug(str(axis_name))}.png"
        _save(figure, path)
        plt.close(figure)
        written.append(path)
    return written


def plot_distribution(
    projections: dict[tuple, tuple[np.ndarray, np.ndarray]],
    tests: pd.DataFrame,
    folder: Path,
) -> list[Path]:
    """Per seed and fine-tune: PCA of original and augmented embeddings, a panel per condition."""
    written = []
    by_place: dict[tuple, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for (seed, label, condition), (points, is_augmented) in projections.items():
        by_place.setdefault((seed, label), []).append((condition, points, is_augmented))
    for (seed, label), panels in sorted(by_place.items()):
        figure, axes = plt.subplots(
            1, len(panels), figsize=(max(6.0, 3.6 * len(panels)), 3.8), squeeze=False
        )
        for axis, (condition, points, is_augmented) in zip(axes[0], panels):
            for flag, name, colour in ((0, "original", PALETTE[0]), (1, "augmented", PALETTE[1])):
                chosen = is_augmented == flag
                axis.scatter(points[chosen, 0], points[chosen, 1], s=10, alpha=0.7,
                             color=colour, label=name)
            row = tests[(tests["seed"] == seed) & (tests["model"] == label)
                        & (tests["condition"] == condition)]
            subtitle = ""
            if not row.empty:
                r = row.iloc[0]
                subtitle = (f"\nMMD² {r['mmd2']:.3f} (p {r['mmd_p_value']:.3g}), "
                            f"AUC {r['classifier_auc']:.2f}")
            axis.set_title(f"{condition}{subtitle}", fontsize=8)
            axis.set_xticks([]), axis.set_yticks([])
        axes[0, 0].legend(fontsize=7)
        figure.suptitle(f"Original vs augmented data (PCA of sentence embeddings)\n"
                        f"seed {seed}, {label}", fontsize=9)
        path = folder / f"distribution_seed-{seed}_{_slug(label)}.png"
        _save(figure, path)
        plt.close(figure)
        written.append(path)
    return written
