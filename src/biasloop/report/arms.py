"""The arms of one report: their summary, their comparisons, their order and their colours.

Built once from the measurements (see :mod:`biasloop.report.compare` for what an arm
and its control are), then shared by the figures and the tables, so that legends, bars,
cards and tables list the arms in one order (controls first) with one colour each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import pandas as pd

from biasloop.report import compare
from biasloop.report.collect import ReportInput
from biasloop.report.plots import series_colours

# The loop's metrics by section, in reading order; others go by family or "Other metrics".
METRIC_SECTIONS = {
    "Bias": [
        "preference_bias",
        "disparate_bias",
        "disparate_ratio",
        "majority_lean",
        "attribute_share",
    ],
    "Quality and group shares": ["quality", "group_share", "acceptance_rate"],
    "Collapse indicators": ["distinct_2", "perplexity", "mean_length"],
}


@dataclass(frozen=True, eq=False)  # frames have no single truth value to compare
class Arms:
    """The arms of a report; build it with :meth:`of`."""

    conditions: list[str]  # the report's conditions, in config order
    dims: list[str]  # study columns that tell arms apart (``bias_ratio``...)
    hidden: list[str]  # dims a condition already fixes, left out of labels
    summary: pd.DataFrame  # compare.summarize, plus each row's ``arm`` label
    comparisons: pd.DataFrame  # compare.compare_with_control
    control_names: list[str]  # the control conditions
    order: list[str]  # arm labels: controls first, then by condition and study columns
    control_arm: str | None  # the one arm all others are compared with, if there is one
    colours: dict[str, str]  # arm label (or series label on γ plots) -> colour

    @classmethod
    def of(cls, data: ReportInput, measurements: pd.DataFrame, *, confidence: float) -> Arms:
        """Summarize ``measurements`` per arm and compare each arm with its control."""
        conditions = data.conditions
        dims = compare.dimensions(measurements)
        controls = compare.control_conditions(
            [[run.condition_label(c) for c in run.conditions] for run in data.runs]
        )
        hidden = compare.named_by_condition(measurements, dims)
        summary = compare.summarize(measurements, dims, confidence=confidence)
        if len(summary):
            labels = [
                compare.arm_label(arm, conditions=conditions, hidden=hidden)
                for arm in summary[["condition", *dims]].to_dict("records")
            ]
            summary = summary.assign(arm=labels)
        else:
            summary = summary.assign(arm=pd.Series(dtype=str))
        comparisons = compare.compare_with_control(
            measurements,
            summary,
            dims,
            controls=controls,
            conditions=conditions,
            confidence=confidence,
            hidden=hidden,
        )
        if compare.BIAS_RATIO in dims:  # the controls are the γ = 0 arms
            control_names = list(dict.fromkeys(comparisons["control_condition"]))
        else:
            control_names = list(dict.fromkeys(c for c in controls.values() if c))
        arms = cls(
            conditions=conditions,
            dims=dims,
            hidden=hidden,
            summary=summary,
            comparisons=comparisons,
            control_names=control_names,
            order=[],
            control_arm=None,
            colours={},
        )
        arms = replace(arms, order=arms._arm_order(), control_arm=arms._control_arm())
        return replace(arms, colours=arms._colours())

    # ------------------------------------------------------------ derived
    @property
    def control(self) -> str | None:
        """The one control condition, or None if there are several (or none)."""
        return self.control_names[0] if len(self.control_names) == 1 else None

    @functools.cached_property
    def final(self) -> pd.DataFrame:
        """Each arm × group × metric at its final generation."""
        return compare.final_rows(self.summary, self.dims)

    def headline(self) -> list[tuple[str, str]]:
        """(metric, group) of each headline metric."""
        return compare.headline_metrics(self.summary) if len(self.summary) else []

    def headline_rows(self) -> list[tuple[str, str, pd.DataFrame]]:
        """(metric, group, final rows) of each headline metric."""
        final = self.final
        return [
            (metric, group, final[(final["metric"] == metric) & (final["group"] == group)])
            for metric, group in self.headline()
        ]

    def metrics_in_order(self) -> list[str]:
        """The loop's metrics in section order, then the others by name."""
        present = list(dict.fromkeys(self.summary["metric"].astype(str)))
        known = [m for names in METRIC_SECTIONS.values() for m in names if m in present]
        return known + sorted(m for m in present if m not in known)

    def condition_rank(self, condition: str) -> int:
        """A condition's place: controls first, then config order, then unknown ones."""
        rank = (
            self.conditions.index(condition)
            if condition in self.conditions
            else len(self.conditions)
        )
        return rank - (len(self.conditions) + 1) * (condition in self.control_names)

    def ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows in arm order (control first), so legends and bars read the same everywhere."""
        rank = {arm: i for i, arm in enumerate(self.order)}
        keys = pd.DataFrame(
            {
                "arm": frame["arm"].map(rank).fillna(len(rank)),
                "condition": frame["condition"].map(self.condition_rank),
            },
            index=frame.index,
        )
        return frame.loc[keys.sort_values(["condition", "arm"], kind="stable").index]

    def series_for(self, frame: pd.DataFrame) -> list[str]:
        """Arm labels without γ; with the condition only if several and it does not fix γ."""
        others = [d for d in self.dims if d != compare.BIAS_RATIO]
        with_condition = len(self.conditions) > 1 and compare.BIAS_RATIO not in self.hidden
        conditions = self.conditions if with_condition else []
        return [
            compare.arm_label(arm, conditions=conditions)
            for arm in frame[["condition", *others]].to_dict("records")
        ]

    # ------------------------------------------------------------ built once, by `of`
    def _arm_order(self) -> list[str]:
        if self.summary.empty:
            return []
        arms = self.summary[["arm", "condition", *self.dims]].drop_duplicates("arm")
        arms = arms.assign(_rank=arms["condition"].map(self.condition_rank))
        return arms.sort_values(["_rank", *self.dims], kind="stable")["arm"].tolist()

    def _control_arm(self) -> str | None:
        """None if arms have different controls (e.g. the γ = 0 arm of each bias type)."""
        controls = list(dict.fromkeys(self.comparisons["control"]))
        if len(controls) == 1:
            return controls[0]
        if not controls and self.control is not None and compare.BIAS_RATIO not in self.dims:
            return self.control if self.control in set(self.summary["arm"]) else None
        return None

    def _colours(self) -> dict[str, str]:
        colours = series_colours(self.order, control=self.control_arm)
        if compare.BIAS_RATIO in self.dims:
            # Plots against γ draw one series per arm without γ; those get their own colours.
            names = self.series_for(self.summary)
            control = next(
                (n for n, c in zip(names, self.summary["condition"]) if c in self.control_names),
                None,
            )
            several = self.summary["condition"].nunique() > 1
            colours.update(
                series_colours(list(dict.fromkeys(names)), control=control if several else None)
            )
        return colours
