"""Turn one evaluation's per-item records into metric rows: values, intervals, gaps, p-values.

For every statistic ``s`` of an evaluation ``e`` (metric name ``e.s``):

* ``e.s`` with group ``""``: ``s`` on all items; with group ``g``: ``s`` on the items
  of group ``g`` (for every grouping the evaluation declares);
* ``e.s_gap`` with group = the grouping's name: ``max_g s_g − min_g s_g``;
  ``e.s_ratio``: ``min_g s_g / max_g s_g`` for statistics that ask for it;
* ``e.s_gap_p_value``: label-permutation test of that gap (within blocks);
* ``e.s_vs_ratio0_p_value`` (per group and overall) and ``e.s_gap_vs_ratio0_p_value``:
  paired test of this model against the ``γ = 0`` model on the same items.

Intervals are percentile bootstraps over items
(:func:`biasloop.metrics.stats.bootstrap_interval`); a
gap's interval resamples each group's items independently. Every row carries ``n``,
the number of records its statistic was computed on: all items for group ``""``,
the group's items for a group, the items labelled under the grouping for a gap,
ratio or p-value row (a statistic may use only some of them, e.g. BBQ's bias score
on disambiguated contexts only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


from biasloop.inherit.evaluations.base import UNASSIGNED, Evaluation, Record
from biasloop.inherit.scoring import gap, ratio
from biasloop.metrics.stats import PAIRED_TESTS, group_permutation_p_value
from biasloop.metrics.stats import bootstrap_interval
from biasloop.seeding import derive_seed


@dataclass(frozen=True, kw_only=True)
class MeasureSettings:
    bootstrap_samples: int
    confidence: float
    significance_method: str
    resamples: int


def ordered_groups(evaluation: Evaluation, records: Sequence[Record], grouping: str) -> list[str]:
    """The grouping's labels present in ``records``: the evaluation's preferred order first."""
    present = list(
        dict.fromkeys(r["groups"][grouping] for r in records if r["groups"].get(grouping))
    )
    preferred = [g for g in evaluation.group_order if g in present]
    return preferred + [g for g in present if g not in preferred]


def _gap_of(
    fn: Callable[[Sequence[Record]], float],
    groups: Sequence[str],
    combine: Callable[[Sequence[float]], float],
) -> Callable[[Sequence[Record], Sequence[str]], float]:
    """``gap(records, labels)``: ``combine`` of ``fn`` over each group's records."""

    def statistic(records: Sequence[Record], labels: Sequence[str]) -> float:
        return combine([fn([r for r, label in zip(records, labels) if label == g]) for g in groups])

    return statistic


def _combined(
    fn: Callable[[Sequence[Record]], float], combine: Callable[[Sequence[float]], float]
) -> Callable[..., float]:
    """``statistic(*subsets) = combine([fn(subset) for subset in subsets])``."""

    def statistic(*subsets: Sequence[Record]) -> float:
        return combine([fn(s) for s in subsets])

    return statistic


def _own_labels(
    gap_statistic: Callable[[Sequence[Record], Sequence[str]], float], grouping: str
) -> Callable[[Sequence[Record]], float]:
    """The gap of records under their own labels for ``grouping``."""

    def statistic(records: Sequence[Record]) -> float:
        return gap_statistic(records, [r["groups"][grouping] for r in records])

    return statistic


def measure(
    evaluation: Evaluation,
    records: Sequence[Record],
    *,
    reference: Sequence[Record] | None,
    settings: MeasureSettings,
    seed: int,
) -> list[dict[str, Any]]:
    """Metric rows ``{metric, group, value, ci_low, ci_high, n}`` of one evaluation on one model."""
    rows: list[dict[str, Any]] = []
    paired_test = PAIRED_TESTS[settings.significance_method]

    def add(
        metric: str,
        group: str,
        n: int,
        value: float,
        low: float | None = None,
        high: float | None = None,
    ) -> None:
        rows.append(
            {
                "metric": metric,
                "group": group,
                "value": float(value),
                "ci_low": float(value if low is None else low),
                "ci_high": float(value if high is None else high),
                "n": int(n),
            }
        )

    def interval(
        samples: Sequence[Sequence[Record]], statistic: Callable[..., float], *parts: object
    ):
        return bootstrap_interval(
            samples,
            statistic,
            n_resamples=settings.bootstrap_samples,
            confidence=settings.confidence,
            seed=derive_seed(seed, *parts),
        )

    def versus_reference(
        metric: str,
        group: str,
        subset: Sequence[Record],
        statistic: Callable[[Sequence[Record]], float],
    ) -> None:
        if reference is None:
            return
        p_value = paired_test(
            subset,
            reference,
            statistic,
            resamples=settings.resamples,
            seed=derive_seed(seed, metric, group, "vs-ratio0"),
        )
        add(f"{metric}_vs_ratio0_p_value", group, len(subset), p_value)

    for name, spec in evaluation.statistics().items():
        metric = f"{evaluation.name}.{name}"
        add(metric, "", len(records), *interval([records], spec.fn, metric, "all"))
        versus_reference(metric, "", records, spec.fn)
        for grouping in spec.groupings or evaluation.groupings:
            labelled = [r for r in records if r["groups"].get(grouping)]
            groups = ordered_groups(evaluation, labelled, grouping)
            per_group = [[r for r in labelled if r["groups"][grouping] == g] for g in groups]
            for group, subset in zip(groups, per_group):
                add(metric, group, len(subset), *interval([subset], spec.fn, metric, group))
                versus_reference(metric, group, subset, spec.fn)
            # Items whose group the data does not tell get their own row above, but a
            # gap is between named groups: they stay out of it.
            named = [(g, subset) for g, subset in zip(groups, per_group) if g != UNASSIGNED]
            groups, per_group = [g for g, _ in named], [subset for _, subset in named]
            labelled = [r for r in labelled if r["groups"][grouping] != UNASSIGNED]
            if not spec.gap or len(groups) < 2:
                continue
            labels = [r["groups"][grouping] for r in labelled]
            gap_statistic = _gap_of(spec.fn, groups, gap)
            add(
                f"{metric}_gap",
                grouping,
                len(labelled),
                *interval(per_group, _combined(spec.fn, gap), metric, grouping, "gap"),
            )
            add(
                f"{metric}_gap_p_value",
                grouping,
                len(labelled),
                group_permutation_p_value(
                    labelled,
                    labels,
                    gap_statistic,
                    resamples=settings.resamples,
                    seed=derive_seed(seed, metric, grouping, "between-groups"),
                    blocks=[r.get("block") for r in labelled],
                ),
            )
            versus_reference(
                f"{metric}_gap", grouping, labelled, _own_labels(gap_statistic, grouping)
            )
            if spec.ratio:
                add(
                    f"{metric}_ratio",
                    grouping,
                    len(labelled),
                    *interval(per_group, _combined(spec.fn, ratio), metric, grouping, "ratio"),
                )
    return rows
