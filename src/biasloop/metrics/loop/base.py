"""The loop metric plug-in kind: what a metric sees of one generation, and its registry.

A loop metric is one function ``metric(context) -> list[Estimate]`` registered
under a name; the SCPL engine computes every registered metric (or those named in
``metrics.names``) after evaluating ``M_t``, and writes one row per estimate. A
new metric is one module and one registration::

    from biasloop.metrics.loop import Estimate, register_loop_metric

    @register_loop_metric("longest_response")
    def longest_response(context):
        "Longest evaluation response in words: ``max_y |y|``."
        return [Estimate(max(len(r.split()) for r in context.responses),
                         n=len(context.responses))]

The estimate's metric name is the registered name unless it gives its own (a
metric may write several related rows, e.g. its fallback counts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from biasloop.registry import Registry

#: ``interval(samples, statistic) -> (value, low, high)``: the statistic of the samples
#: and its bootstrap interval at the run's confidence (``metrics.stats.bootstrap_interval``).
Interval = Callable[[Sequence[Sequence[float]], Callable[..., float]], tuple[float, float, float]]


@dataclass(frozen=True)
class Estimate:
    """One metric row: a value, its interval (none for exact quantities), group and size ``n``.

    ``n`` is how many responses or items the estimate rests on (``None`` for states
    such as group shares); ``metric`` defaults to the registered name.
    """

    value: float
    low: float | None = None
    high: float | None = None
    group: str = ""
    n: int | None = None
    metric: str | None = None


@dataclass(frozen=True, kw_only=True)
class LoopMetricContext:
    """Everything a loop metric may read about generation ``t`` (plain data, no model).

    The evaluation responses come in the order of ``eval_groups`` (the group of each
    evaluation query). Costly inputs are computed on first use: the attributes
    (a judge runs) and the perplexity (a forward pass over held-out texts).
    """

    generation: int
    groups: tuple[str, ...]
    majority: str
    eval_groups: Sequence[str]
    quality: Sequence[float]
    responses: Sequence[str]
    shares: Mapping[str, float]
    extinct: bool
    interval: Interval
    curation: Mapping[str, Any] | None = None
    served_groups: Sequence[str] = ()
    attribute_fn: Callable[[], tuple[list[str | None], list[str | None]] | None] = field(
        default=lambda: None, repr=False
    )
    perplexity_fn: Callable[[], tuple[float, int]] = field(
        default=lambda: (float("nan"), 0), repr=False
    )

    def by_group(self, values: Sequence[Any]) -> dict[str, list[Any]]:
        """``values`` (aligned with the evaluation queries) split by group, in group order."""
        return {g: [v for v, q in zip(values, self.eval_groups) if q == g] for g in self.groups}

    @cached_property
    def attributes(self) -> tuple[list[str | None], list[str | None]] | None:
        """``(model, reference)`` attributes ``a(y)`` of the neutral responses and of the
        real references; ``None`` when the task defines no attribute."""
        return self.attribute_fn()

    @cached_property
    def perplexity(self) -> tuple[float, int]:
        """Perplexity of ``M_t`` on held-out real references, and their count."""
        return self.perplexity_fn()


@dataclass(frozen=True)
class LoopMetric:
    """A registered loop metric: its function and its one-line summary (``biasloop list``)."""

    compute: Callable[[LoopMetricContext], list[Estimate]]
    summary: str = ""
    module: str = ""  # where it is defined: a built-in, or which plug-in brought it


LOOP_METRICS: Registry[LoopMetric] = Registry(
    "metric", field="metrics.names", discover="biasloop.metrics.loop"
)


def register_loop_metric(name: str) -> Callable[[Callable[[LoopMetricContext], list[Estimate]]],
                                                Callable[[LoopMetricContext], list[Estimate]]]:
    """Register ``metric(context) -> list[Estimate]`` under ``name`` (decorator).

    Its summary (``biasloop list metric``) is the first line of its docstring, which
    gives the metric's formula.
    """

    def decorate(compute: Callable[[LoopMetricContext], list[Estimate]]):
        doc = (compute.__doc__ or "").strip()
        LOOP_METRICS.register(name)(
            LoopMetric(compute, doc.splitlines()[0] if doc else "", compute.__module__)
        )
        return compute

    return decorate


def default_loop_metrics(plugins: Sequence[str] = ()) -> list[str]:
    """The metrics a run computes when ``metrics.names`` is unset: every built-in one and
    those of the run's own plug-ins (``plugins``, installed entry points), never those a
    plug-in of another run in the same process registered."""
    from biasloop.plugins import active_modules

    modules = active_modules(plugins)
    return [
        name for name in LOOP_METRICS.names()
        if LOOP_METRICS.get(name).module.startswith("biasloop.")
        or LOOP_METRICS.get(name).module in modules
    ]


def compute_loop_metrics(context: LoopMetricContext,
                         names: Sequence[str] | None = None) -> list[tuple[str, Estimate]]:
    """``(metric name, estimate)`` of every metric in ``names`` (default: the built-ins)."""
    results = []
    for name in default_loop_metrics() if names is None else names:
        for estimate in LOOP_METRICS.get(name).compute(context):
            results.append((estimate.metric or name, estimate))
    return results
