"""Summaries and comparisons with the control, from the tidy metric table alone.

An *arm* is one line of an experiment: its condition plus the values of any study
columns that vary (``bias_ratio``, ``bias_type``, ``round``, ``task``...). Each arm
is compared with its control at its final generation:

- with a ``bias_ratio`` column, the control is the same arm at ``γ = 0`` (or, failing
  that, the ``γ = 0`` arm of the control condition);
- otherwise it is the same arm under the control condition: the one named ``static``,
  ``none``, ``control`` or ``baseline``, else the first condition of the config (in a
  sweep, of the same run; see :func:`control_conditions`).

p-values of a comparison:

- both arms with ≥ 2 seeds, the same seeds: paired t-test over seeds (undefined when the
  difference is the same in every seed);
- both arms with ≥ 2 seeds, different seeds: Welch's t-test;
- otherwise (one seed): a two-sided z-test on ``Δ / √(se_a² + se_c²)``, each ``se``
  read off the arm's bootstrap interval as ``(ci_high − ci_low) / (2·z_{(1+c)/2})``;
  undefined when both intervals have zero width.

Rows whose metric ends in ``p_value`` are significance tests a study computed
itself; they are kept apart from the measurements and shown as they are.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from biasloop.metrics.aggregate import summarize_seeds
from biasloop.report.wording import short_number
from biasloop.store import MEASUREMENT_COLUMNS, METRIC_COLUMNS

CONTROL_NAMES = ("static", "none", "control", "baseline")
BIAS_RATIO = "bias_ratio"

# Headline metrics in order of preference; others are picked by name (bias, gap) then table order.
HEADLINE = ["preference_bias", "disparate_bias", "quality", "bias_score", "accuracy_gap", "gap"]


def dimensions(metrics: pd.DataFrame) -> list[str]:
    """Study columns that tell arms apart: extra columns that vary, e.g. ``bias_ratio``.

    A column with one value per metric (e.g. ``task`` when metric names carry the task)
    describes the metric, not the arm, and is left out.
    """
    extra = [c for c in metrics.columns if c not in (*METRIC_COLUMNS, *MEASUREMENT_COLUMNS)]
    varying = [c for c in extra if metrics[c].nunique(dropna=False) > 1]
    by_metric = metrics.groupby("metric", sort=False)
    return [c for c in varying if by_metric[c].nunique(dropna=False).max() > 1]


def named_by_condition(metrics: pd.DataFrame, dims: Sequence[str]) -> list[str]:
    """Dimensions a condition already fixes (one value per condition): not repeated in labels."""
    if metrics.empty:
        return []
    by_condition = metrics.groupby("condition", sort=False)
    return [d for d in dims if by_condition[d].nunique(dropna=False).max() <= 1]


def split_tests(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measurements, significance tests): rows whose metric ends in ``p_value`` are tests."""
    is_test = metrics["metric"].astype(str).str.endswith("p_value")
    return metrics[~is_test].reset_index(drop=True), metrics[is_test].reset_index(drop=True)


def split_fallbacks(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(measurements, fallbacks): ``fallback_*`` rows count what a run had to fall back on."""
    is_fallback = metrics["metric"].astype(str).str.startswith("fallback_")
    return metrics[~is_fallback].reset_index(drop=True), metrics[is_fallback].reset_index(drop=True)


def control_condition(conditions: Sequence[str]) -> str | None:
    """The condition most named like a control (static/none/control/baseline), else the first.

    Inside a sweep a condition is named by its settings
    (``feedback.rule=static, mitigation.name=none``);
    each setting whose value is a control name counts, and the highest count wins.
    """

    def score(condition: str) -> int:
        parts = re.split(r" · |, ", condition)
        return sum(
            part == name or part.endswith(f"={name}") for part in parts for name in CONTROL_NAMES
        )

    if not conditions:
        return None
    best = max(conditions, key=score)  # max keeps the first of equals
    return best if score(best) > 0 else conditions[0]


def control_conditions(groups: Sequence[Sequence[str]]) -> dict[str, str | None]:
    """Each condition's control: :func:`control_condition` of the group it belongs to.

    A lone run is one group. In a sweep, a run with several conditions is its own group
    (its arms are compared within the run); runs with a single condition form one group.
    """
    controls: dict[str, str | None] = {}
    pooled = [c for group in groups if len(group) == 1 for c in group]
    for group in [*(g for g in groups if len(g) > 1), pooled]:
        control = control_condition(list(group))
        controls.update({condition: control for condition in group})
    return controls


def arm_label(
    arm: dict[str, object], *, conditions: Sequence[str], hidden: Sequence[str] = ()
) -> str:
    """A short readable name: the condition (when several), then ``γ=0.1``, ``bias_type``...

    Dimensions in ``hidden`` (already fixed by the condition) are left out.
    """
    shown = {k: v for k, v in arm.items() if k != "condition" and k not in hidden}
    parts = [str(arm["condition"])] if len(conditions) > 1 or not shown else []
    for key, value in shown.items():
        if key == BIAS_RATIO:
            parts.append(f"γ={short_number(value)}")
        elif isinstance(value, str):
            parts.append(value)
        else:
            parts.append(f"{key}={short_number(value)}")
    return " · ".join(parts)


def summarize(
    measurements: pd.DataFrame, dims: Sequence[str], *, confidence: float
) -> pd.DataFrame:
    """Mean ± CI over seeds per generation × arm × group × metric (one seed keeps its own CI).

    :func:`biasloop.metrics.aggregate.summarize_seeds` on the defined values: intervals
    are clipped to each metric's range and ``ci_clipped`` marks where.
    """
    return summarize_seeds(
        measurements.dropna(subset=["value"]), confidence=confidence, dims=dims
    )


def final_rows(summary: pd.DataFrame, dims: Sequence[str]) -> pd.DataFrame:
    """Each arm × group × metric at the last generation it was measured."""
    if summary.empty:
        return summary
    keys = ["condition", *dims, "group", "metric"]
    last = summary.groupby(keys, sort=False, dropna=False)["generation"].transform("max")
    return summary[summary["generation"] == last].reset_index(drop=True)


def _arms(frame: pd.DataFrame, dims: Sequence[str]) -> list[dict[str, object]]:
    keys = ["condition", *dims]
    unique = frame[keys].drop_duplicates()
    return [dict(zip(keys, row)) for row in unique.itertuples(index=False, name=None)]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _is_nan(value: object) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def control_arm(
    arm: dict[str, object], arms: Sequence[dict[str, object]], *, control: str | None
) -> dict[str, object] | None:
    """The arm ``arm`` is compared with (see the module docstring); None for a control arm."""
    if BIAS_RATIO in arm:
        if _is_nan(arm[BIAS_RATIO]):
            return None  # not on the γ axis (e.g. the base model before any fine-tuning)
        wanted = [
            dict(arm, **{BIAS_RATIO: 0.0}),
            {"condition": arm["condition"], BIAS_RATIO: 0.0},
            {"condition": control, BIAS_RATIO: 0.0},
        ]
    else:
        wanted = [dict(arm, condition=control)]
    chosen = None
    for target in wanted:
        candidates = [a for a in arms if all(_same(a.get(k), v) for k, v in target.items())]
        if candidates:
            chosen = candidates[0]
            break
    if chosen is None and BIAS_RATIO in arm:
        # Conditions that name the ratio themselves: the γ = 0 arm most like this one.
        zero = [a for a in arms if _same(a.get(BIAS_RATIO), 0.0)]
        others = [k for k in arm if k not in ("condition", BIAS_RATIO)]
        if zero:
            chosen = max(zero, key=lambda a: sum(_same(a.get(k), arm[k]) for k in others))
    if chosen is None or all(_same(chosen.get(k), v) for k, v in arm.items()):
        return None
    return chosen


def compare_with_control(
    measurements: pd.DataFrame,
    summary: pd.DataFrame,
    dims: Sequence[str],
    *,
    controls: Mapping[str, str | None],
    conditions: Sequence[str],
    confidence: float,
    hidden: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per non-control arm × group × metric at its final generation, with Δ and p.

    Columns: ``metric, group, arm`` (its label), the arm's ``condition`` and study columns,
    ``generation, value, ci_low, ci_high, ci_clipped``, the ``control`` label (and
    ``control_condition``) with its value and interval (``control_ci_clipped``),
    ``difference`` (arm − control), ``p_value``, ``test`` and ``seeds``.
    """
    columns = [
        "metric",
        "group",
        "arm",
        *["condition", *dims],
        "generation",
        "value",
        "ci_low",
        "ci_high",
        "ci_clipped",
        "control",
        "control_condition",
        "control_value",
        "control_ci_low",
        "control_ci_high",
        "control_ci_clipped",
        "difference",
        "p_value",
        "test",
        "seeds",
    ]
    final = final_rows(summary, dims)
    if final.empty:
        return pd.DataFrame(columns=columns)
    arms = _arms(final, dims)
    keys = ["condition", *dims]
    # Per-seed rows of every arm × metric × group × generation, looked up once each.
    seeds = {
        _key(key): part[["seed", "value", "ci_low", "ci_high"]]
        for key, part in measurements.dropna(subset=["value"]).groupby(
            [*keys, "metric", "group", "generation"], sort=False, dropna=False
        )
    }
    empty = pd.DataFrame(columns=["seed", "value", "ci_low", "ci_high"])
    rows = []
    for arm in arms:
        reference = control_arm(arm, arms, control=controls.get(str(arm["condition"])))
        if reference is None:
            continue
        mine = _select(final, arm)
        theirs = _select(final, reference)
        for row in mine.itertuples(index=False):
            match = theirs[(theirs["metric"] == row.metric) & (theirs["group"] == row.group)]
            if match.empty:
                continue
            other = match.iloc[0]
            where = (row.metric, row.group)
            mine_seeds = seeds.get(_key((*arm.values(), *where, row.generation)), empty)
            their_seeds = seeds.get(
                _key((*reference.values(), *where, other["generation"])), empty
            )
            p_value, test = difference_test(mine_seeds, their_seeds, confidence=confidence)
            rows.append(
                {
                    "metric": row.metric,
                    "group": row.group,
                    "arm": arm_label(arm, conditions=conditions, hidden=hidden),
                    **arm,
                    "generation": int(row.generation),
                    "value": row.value,
                    "ci_low": row.ci_low,
                    "ci_high": row.ci_high,
                    "ci_clipped": bool(row.ci_clipped),
                    "control": arm_label(reference, conditions=conditions, hidden=hidden),
                    "control_condition": reference["condition"],
                    "control_value": float(other["value"]),
                    "control_ci_low": float(other["ci_low"]),
                    "control_ci_high": float(other["ci_high"]),
                    "control_ci_clipped": bool(other["ci_clipped"]),
                    "difference": float(row.value) - float(other["value"]),
                    "p_value": p_value,
                    "test": test,
                    "seeds": int(row.seeds),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def _select(frame: pd.DataFrame, arm: dict[str, object]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for key, value in arm.items():
        column = frame[key]
        if isinstance(value, float) and math.isnan(value):
            mask &= column.isna().to_numpy()
        else:
            mask &= (column == value).to_numpy()
    return frame[mask]


def _key(values: Sequence[object]) -> tuple[object, ...]:
    """A hashable lookup key: NaN as None (NaN never equals itself), numbers as Python numbers."""
    key = []
    for value in values:
        if isinstance(value, (float, np.floating)) and math.isnan(value):
            key.append(None)
        elif isinstance(value, np.generic):
            key.append(value.item())
        else:
            key.append(value)
    return tuple(key)


def difference_test(
    arm: pd.DataFrame, control: pd.DataFrame, *, confidence: float
) -> tuple[float, str]:
    """Two-sided p-value of ``mean(arm) − mean(control)`` and the test's name (see module doc)."""
    if len(arm) >= 2 and len(control) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if sorted(arm["seed"]) == sorted(control["seed"]):
                a = arm.sort_values("seed")["value"].to_numpy()
                c = control.sort_values("seed")["value"].to_numpy()
                if np.allclose(a - c, (a - c)[0]):  # no spread over seeds: t is undefined
                    return float("nan"), "paired t, Δ equal in every seed"
                return float(stats.ttest_rel(a, c).pvalue), f"paired t, {len(a)} seeds"
            result = stats.ttest_ind(arm["value"], control["value"], equal_var=False)
            return float(result.pvalue), f"Welch t, {len(arm)}+{len(control)} seeds"
    if arm.empty or control.empty:
        return float("nan"), "—"
    z = stats.norm.ppf((1 + confidence) / 2)
    se_arm = float(arm["ci_high"].mean() - arm["ci_low"].mean()) / (2 * z)
    se_control = float(control["ci_high"].mean() - control["ci_low"].mean()) / (2 * z)
    spread = math.hypot(se_arm, se_control)
    if spread <= 0:
        return float("nan"), "z, no interval"
    statistic = (float(arm["value"].mean()) - float(control["value"].mean())) / spread
    return float(2 * stats.norm.sf(abs(statistic))), "z from bootstrap CIs"


def headline_metrics(summary: pd.DataFrame, *, limit: int = 6) -> list[tuple[str, str]]:
    """(metric, group) pairs worth a headline card.

    The known loop metrics when present (overall values); otherwise, for each metric
    family (the name before its first ``.``, e.g. a downstream task), its first metric
    named like a bias or a gap, overall or for its first grouping; otherwise the first
    overall metrics.
    """
    pairs = list(dict.fromkeys(zip(summary["metric"].astype(str), summary["group"].astype(str))))
    overall = [m for m, g in pairs if g == ""]
    known = [(m, "") for m in HEADLINE if m in overall]
    if known:
        return known[:limit]
    chosen: dict[str, tuple[str, str]] = {}
    for word in ("gap", "bias"):
        for metric, group in pairs:
            family = metric.split(".")[0] if "." in metric else ""
            if word in metric.rsplit(".", 1)[-1] and family not in chosen:
                groups = [g for m, g in pairs if m == metric]
                chosen[family] = (metric, "" if "" in groups else groups[0])
    headline = sorted(chosen.values(), key=pairs.index)
    return (headline or [(m, "") for m in overall])[:limit]
