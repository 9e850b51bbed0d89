"""The self-consuming performative loop (SPEC section 2), one condition and seed at a time.

For each generation ``t = 0..T-1`` the loop runs
serve → curate → evaluate → feedback → assemble → train, and after the last one
it evaluates the final model ``M_T`` (reported as generation ``T``).

Every step is a unit of work whose output in ``gen-<t>/`` goes through
:func:`biasloop.store.cached`: read back if it exists, else computed and written
atomically, so a killed run resumes where it stopped.
Generation is cut into chunks of ``generation.batch_size`` queries, each written
as its own part file and seeded by ``derive_seed(seed, condition, t, step, chunk)``,
so a resumed run draws exactly the samples an uninterrupted one would.

The group shares reach the next model only through its data (SPEC section 2, the
causal path): the served queries are drawn by ``p_t`` and each carries its group in
its prompt (a group's own prompts, or its stated preference) and in every record
made from it; the real part of ``D_{t+1}`` is drawn by ``p_{t+1}``. A design with
neither (groups sending the same prompts, λ = 1) is logged as a warning when the
loop starts.

Files of one generation::

    state.json                 group shares p_t and population N_t (input)
    served.jsonl               the n served queries
    candidates/r<round>-<chunk>.jsonl   k candidates per query with group rewards
    synthetic.jsonl            the accepted synthetic set S_t (Example records)
    curation.json              acceptance rate per group
    eval/<chunk>.jsonl         responses of M_t on E_g with their quality
    metrics.parquet            this generation's metrics
    train.jsonl                the training set D_{t+1}
    model/                     M_{t+1} (adapter or weights, safetensors)
    train.json                 training losses (written last: training is done)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biasloop.config.schema import ExperimentConfig
from biasloop.finetune import fine_tune
from biasloop.loop.feedback import (
    FEEDBACK_RULES,
    PopulationState,
    check_feedback,
    feedback_params,
)
from biasloop.metrics import scpl as metrics
from biasloop.metrics.loop import (
    LOOP_METRICS,
    LoopMetricContext,
    compute_loop_metrics,
    default_loop_metrics,
)
from biasloop.metrics.stats import bootstrap_interval
from biasloop.mitigate import (
    MITIGATIONS,
    CandidateSet,
    CurationContext,
    TrainingContext,
    acceptance_rates,
    check_mitigation,
    mitigation_params,
    prepare_training_records,
    training_loss_term,
)
from biasloop.models.base import ModelBackend
from biasloop.store import RunStore, cached, read_json, read_jsonl, write_jsonl
from biasloop.tracking import Track, no_progress
from biasloop.seeding import derive_seed, rng
from biasloop.tasks.base import Query, Task

log = logging.getLogger("biasloop.loop")

# A progress callback: (description, iterable, total) -> the same items, reported as they pass.



def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _query_record(query: Query) -> dict[str, Any]:
    return {"id": query.id, "group": query.group, "prompt": query.prompt,
            "reference": query.reference, "meta": query.meta}


def _query_from(record: dict[str, Any]) -> Query:
    return Query(id=record["id"], group=record["group"], prompt=record["prompt"],
                 reference=record.get("reference"), meta=record.get("meta") or {})


@dataclass
class LoopRun:
    """The loop for one condition and seed, resumable from its run-store folder."""

    config: ExperimentConfig
    condition: str
    seed: int
    store: RunStore
    backend: ModelBackend
    task: Task
    track: Track = no_progress

    def __post_init__(self) -> None:
        self.folder = self.store.path("conditions", self.condition, f"seed-{self.seed}")
        self.groups = tuple(self.task.groups)
        check_shares(self.config, self.task.name, self.groups)
        initial = self.config.loop.initial_shares
        self.target_shares = (
            PopulationState.from_shares(initial).shares if initial
            else PopulationState.uniform(self.groups).shares
        )
        # The majority is the group with the largest initial share (the first on ties).
        self.majority = max(self.groups, key=lambda g: self.target_shares[g])
        self.loaded_generation: int | None = None

    # ------------------------------------------------------------------ paths
    def gen_dir(self, t: int) -> Path:
        return self.folder / f"gen-{t:03d}"

    # ------------------------------------------------------------------ model state
    def use_model(self, t: int) -> None:
        """Make the backend hold M_t: the base model for t = 0, else gen-(t-1)/model."""
        if self.loaded_generation == t:
            return
        if t == 0:
            self.backend.reset_to_base()
        else:
            self.backend.reset_to_base()
            self.backend.load_trained(self.gen_dir(t - 1) / "model")
        self.loaded_generation = t

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        generations = self.config.loop.generations
        self.start()
        for t in range(generations):
            log.info("condition %s seed %d: generation %d/%d", self.condition, self.seed, t + 1, generations)
            self.train(t, self.next_training_set(t))
        evaluation = self.evaluate(generations)
        self.write_metrics(generations, evaluation, curation=None)

    def start(self) -> None:
        """Write the initial state ``p_0``, ``N_0``; warn if the shares cannot reach the data."""
        initial = PopulationState.from_shares(
            self.target_shares, total=self.config.feedback.initial_population
        )
        cached(self.gen_dir(0) / "state.json",
               lambda: {"shares": initial.shares, "population": initial.population})
        self.warn_if_no_causal_path()

    def next_training_set(self, t: int) -> list[dict[str, Any]]:
        """Steps 1-5 of generation ``t`` (serve … assemble): the training set ``D_{t+1}``."""
        served = self.serve(t)
        candidates = self.generate_candidates(t, served)
        accepted = self.curate(t, candidates)
        evaluation = self.evaluate(t)
        self.write_metrics(t, evaluation, curation=accepted)
        self.feedback(t, evaluation)
        return self.assemble(t)

    def warn_if_no_causal_path(self) -> bool:
        """Warn (and return True) when the shares reach ``D_{t+1}`` only through curation.

        That is when λ = 1 and groups send some of the same train prompts: such a
        prompt does not say which group sent it, so ``p_t`` moves the training data
        only through which answers the mitigation accepts (not at all with ``none``).
        """
        if self.config.loop.synthetic_fraction < 1:
            return False
        senders: dict[str, set[str]] = {}
        for group in self.groups:
            for query in self.task.queries(group, "train"):
                senders.setdefault(query.prompt, set()).add(group)
        shared = sum(len(groups) > 1 for groups in senders.values())
        if not shared:
            return False
        log.warning(
            "condition %s: %d of task %r's %d train prompts are sent by more than one group "
            "and loop.synthetic_fraction is 1, so the group shares reach the training data "
            "only through what the mitigation accepts (not at all with mitigation none); "
            "give each group its own prompts (preference: task.params.group_cue: true) or "
            "set loop.synthetic_fraction below 1 (SPEC section 2, causal path)",
            self.condition, shared, self.task.name, len(senders))
        return True

    # ------------------------------------------------------------------ 1. serve
    def state(self, t: int) -> PopulationState:
        return PopulationState(read_json(self.gen_dir(t) / "state.json")["population"])

    def serve(self, t: int) -> list[Query]:
        """Draw n queries: group g with probability p_t(g), then a query from g's train pool."""
        records = cached(self.gen_dir(t) / "served.jsonl",
                         lambda: [_query_record(q) for q in self._draw_served(t)])
        return [_query_from(r) for r in records]

    def _draw_served(self, t: int) -> list[Query]:
        # Each query keeps its group, prompt and reference: the group is in the prompt
        # (the task's job) and in every record made from it (served, synthetic, train).
        shares = self.state(t).shares
        generator = rng(self.seed, self.condition, t, "serve")
        probabilities = np.array([shares[g] for g in self.groups])
        groups = generator.choice(len(self.groups), size=self.config.loop.queries_per_generation,
                                  p=probabilities / probabilities.sum())
        served = []
        for index in groups:
            pool = self.task.queries(self.groups[index], "train")
            served.append(pool[int(generator.integers(len(pool)))])
        return served

    # ------------------------------------------------------------------ candidates
    def _respond(self, t: int, step: str, queries: Sequence[Query], k: int) -> list[dict[str, Any]]:
        """Generate k responses per query in seeded, separately stored chunks."""
        folder = self.gen_dir(t) / step
        records: list[dict[str, Any]] = []
        chunks = _chunks(list(queries), self.config.generation.batch_size)
        for index, chunk in enumerate(self.track(f"gen {t} {step}", chunks)):
            records.extend(cached(folder / f"{index:05d}.jsonl",
                                  lambda: self._respond_chunk(t, step, index, chunk, k)))
        return records

    def _respond_chunk(self, t: int, step: str, index: int, chunk: Sequence[Query],
                       k: int) -> list[dict[str, Any]]:
        self.use_model(t)
        responses = self.backend.generate(
            [q.prompt for q in chunk], config=self.config.generation, num_samples=k,
            seed=derive_seed(self.seed, self.condition, t, step, index),
        )
        return [
            {"query_id": q.id, "group": q.group, "prompt": q.prompt, "responses": r,
             "rewards": [float(x) for x in self.task.reward(q.group, [q] * len(r), r)]}
            for q, r in zip(chunk, responses)
        ]

    def generate_candidates(self, t: int, served: Sequence[Query]) -> list[CandidateSet]:
        """k candidates per served query, plus resample rounds for rejected queries."""
        mitigation = self.config.mitigation
        k = mitigation.candidates
        records = self._respond(t, "candidates/r0", served, k)
        by_position = [dict(r) for r in records]
        resample = mitigation.on_reject == "resample" and MITIGATIONS.get(mitigation.name).thresholded
        for round_index in range(1, (mitigation.max_resamples if resample else 0) + 1):
            pending = [i for i, r in enumerate(by_position) if max(r["rewards"]) < mitigation.threshold]
            if not pending:
                break
            extra = self._respond(t, f"candidates/r{round_index}", [served[i] for i in pending], k)
            for i, record in zip(pending, extra):
                by_position[i]["responses"] = by_position[i]["responses"] + record["responses"]
                by_position[i]["rewards"] = by_position[i]["rewards"] + record["rewards"]
        return [
            CandidateSet(query_id=f"{t}-{i}-{r['query_id']}", group=r["group"], prompt=r["prompt"],
                         responses=r["responses"], rewards=r["rewards"])
            for i, r in enumerate(by_position)
        ]

    # ------------------------------------------------------------------ 2. curate
    def curate(self, t: int, candidates: Sequence[CandidateSet]) -> dict[str, Any]:
        """Apply the mitigation; write S_t, the acceptance rate per group and any fallbacks."""
        return cached(self.gen_dir(t) / "curation.json", lambda: self._curate(t, candidates))

    def _curate(self, t: int, candidates: Sequence[CandidateSet]) -> dict[str, Any]:
        context = CurationContext(
            config=self.config.mitigation, params=mitigation_params(self.config.mitigation),
            groups=self.groups, shares=self.state(t).shares,
            target_shares=self.target_shares, rng=rng(self.seed, self.condition, t, "curate"),
        )
        accepted = MITIGATIONS.get(self.config.mitigation.name).curate(candidates, context)
        write_jsonl(self.gen_dir(t) / "synthetic.jsonl", [
            {"id": f"syn-{t}-{i}", "group": a.group, "prompt": a.prompt, "response": a.response,
             "source": "synthetic", "generation": t,
             "meta": {"query_id": a.query_id, "reward": a.reward, "weight": a.weight}}
            for i, a in enumerate(accepted)
        ])
        rates = acceptance_rates(candidates, accepted, self.groups)
        for (name, group), count in context.fallbacks.items():
            log.warning("generation %d: curation fallback %s for group %r (%d)", t, name, group, count)
        return {"acceptance_rate": rates, "accepted": len(accepted), "served": len(candidates),
                "fallbacks": [{"name": n, "group": g, "count": c}
                              for (n, g), c in context.fallbacks.items()]}

    # ------------------------------------------------------------------ 3. evaluate
    def evaluate(self, t: int) -> dict[str, Any]:
        """Responses of M_t on every E_g (and neutral prompts), with quality and attributes."""
        eval_queries = [q for g in self.groups for q in self.task.eval_queries(g)]
        records = self._respond(t, "eval", eval_queries, 1)
        responses = [r["responses"][0] for r in records]
        neutral = self.task.neutral_queries()
        eval_ids = [q.id for q in eval_queries]
        if [q.id for q in neutral] == eval_ids:
            neutral_responses = responses
        else:
            neutral_responses = [r["responses"][0] for r in self._respond(t, "neutral", neutral, 1)]
        quality = self.task.quality(eval_queries, responses)
        return {
            "queries": eval_queries, "responses": responses, "quality": list(quality),
            "neutral": neutral, "neutral_responses": neutral_responses,
        }

    def _perplexity(self, t: int) -> tuple[float, int]:
        """Perplexity of M_t on held-out real references (balanced over groups), and their count."""
        per_group = max(1, self.config.metrics.perplexity_texts // len(self.groups))
        held_out = [q for g in self.groups for q in self.task.eval_queries(g)[:per_group] if q.reference]
        if not held_out or self.config.metrics.perplexity_texts == 0:
            return float("nan"), 0
        self.use_model(t)
        references = [q.reference or "" for q in held_out]
        logliks = self.backend.loglik([q.prompt for q in held_out], references,
                                      batch_size=self.config.generation.batch_size, chat=True)
        counts = self.backend.count_tokens(references)
        return metrics.perplexity(logliks, counts), len(held_out)

    def write_metrics(self, t: int, evaluation: dict[str, Any], *, curation: dict[str, Any] | None) -> None:
        cached(self.gen_dir(t) / "metrics.parquet",
               lambda: pd.DataFrame(self._metric_rows(t, evaluation, curation)))

    def _metric_rows(self, t: int, evaluation: dict[str, Any],
                     curation: dict[str, Any] | None) -> list[dict[str, Any]]:
        """One row per estimate of every loop metric (``metrics.names``; default all)."""
        settings = self.config.metrics
        seed = derive_seed(self.seed, self.condition, t, "bootstrap")
        state = self.state(t)

        def interval(samples: Sequence[Sequence[float]],
                     statistic: Callable[..., float]) -> tuple[float, float, float]:
            return bootstrap_interval(samples, statistic, n_resamples=settings.bootstrap_samples,
                                      confidence=settings.confidence, seed=seed)

        def attributes() -> tuple[list[str | None], list[str | None]] | None:
            model = self.task.attribute(evaluation["neutral_responses"])
            if model is None:
                return None
            references = [q.reference for q in evaluation["neutral"] if q.reference]
            return list(model), list(self.task.attribute(references) or [])

        served = (read_jsonl(self.gen_dir(t) / "served.jsonl") if curation is not None else [])
        context = LoopMetricContext(
            generation=t, groups=self.groups, majority=self.majority,
            eval_groups=[q.group for q in evaluation["queries"]], quality=evaluation["quality"],
            responses=evaluation["responses"], shares=state.shares, extinct=state.extinct,
            interval=interval, curation=curation, served_groups=[r["group"] for r in served],
            attribute_fn=attributes, perplexity_fn=lambda: self._perplexity(t),
        )
        return [
            {"generation": t, "condition": self.condition, "seed": self.seed,
             "group": estimate.group, "metric": name, "value": float(estimate.value),
             "ci_low": float(estimate.value if estimate.low is None else estimate.low),
             "ci_high": float(estimate.value if estimate.high is None else estimate.high),
             "n": math.nan if estimate.n is None else float(estimate.n)}
            for name, estimate in compute_loop_metrics(
                context, settings.names or default_loop_metrics(self.config.plugins)
            )
        ]

    # ------------------------------------------------------------------ 4. feedback
    def feedback(self, t: int, evaluation: dict[str, Any]) -> None:
        """p_{t+1} = F(p_t, q_t) with q_t(g) the mean quality of group g on E_g."""
        cached(self.gen_dir(t + 1) / "state.json", lambda: self._next_state(t, evaluation))

    def _next_state(self, t: int, evaluation: dict[str, Any]) -> dict[str, Any]:
        quality = {
            g: float(np.mean([q for q, query in zip(evaluation["quality"], evaluation["queries"])
                              if query.group == g]))
            for g in self.groups
        }
        settings = self.config.feedback
        rule = FEEDBACK_RULES.get(settings.rule)
        new_state = rule(self.state(t), quality, feedback_params(settings),
                         min_share=settings.min_share)
        if new_state.extinct:
            log.warning("generation %d: every group has left (N = 0); generation %d serves "
                        "uniform shares (counted as fallback_uniform_shares)", t, t + 1)
        return {"shares": new_state.shares, "population": new_state.population, "quality": quality}

    # ------------------------------------------------------------------ 5. assemble
    def assemble(self, t: int) -> list[dict[str, Any]]:
        """Build D_{t+1}: a share λ synthetic, the rest real data with groups drawn by p_{t+1}.

        The synthetic part is S_t (``replace``) or S_0 ∪ … ∪ S_t (``accumulate``), whose
        groups followed p_t when served. With ``|S|`` synthetic examples and λ < 1 the
        real part has ``round(|S|·(1−λ)/λ)`` examples (``n`` when λ = 0), each group
        drawn by p_{t+1}, then a reference example from that group's train pool. Every
        record carries its ``group``.
        """
        return cached(self.gen_dir(t) / "train.jsonl", lambda: self._assemble(t))

    def _assemble(self, t: int) -> list[dict[str, Any]]:
        loop = self.config.loop
        sources = [t] if loop.data_policy == "replace" else list(range(t + 1))
        synthetic = [r for s in sources for r in read_jsonl(self.gen_dir(s) / "synthetic.jsonl")]
        fraction = loop.synthetic_fraction
        if fraction == 0:
            synthetic, n_real = [], loop.queries_per_generation
        else:
            n_real = int(round(len(synthetic) * (1 - fraction) / fraction))
        real: list[dict[str, Any]] = []
        if n_real:
            shares = self.state(t + 1).shares
            generator = rng(self.seed, self.condition, t, "assemble")
            probabilities = np.array([shares[g] for g in self.groups])
            for draw, index in enumerate(generator.choice(len(self.groups), size=n_real,
                                                          p=probabilities / probabilities.sum())):
                pool = self.task.reference_examples(self.groups[index])
                query = pool[int(generator.integers(len(pool)))]
                real.append({"id": f"real-{t}-{draw}", "group": query.group, "prompt": query.prompt,
                             "response": query.reference, "source": "real", "generation": t,
                             "meta": {"query_id": query.id, "weight": 1.0}})
        return synthetic + real

    # ------------------------------------------------------------------ 6. train
    def train(self, t: int, records: Sequence[dict[str, Any]]) -> None:
        """M_{t+1} = Train(M_0, D_{t+1}) (retrain) or Train(M_t, D_{t+1}) (incremental).

        ``train.json`` (losses, sizes) is written last, once the model is saved.
        """
        cached(self.gen_dir(t) / "train.json", lambda: self._train(t, records),
               requires=[self.gen_dir(t) / "model"])

    def _train(self, t: int, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        retrain = self.config.loop.type == "retrain"
        if not retrain:
            self.use_model(t)  # continue from M_t
        self.loaded_generation = None  # the backend is being changed
        prepared = prepare_training_records(records, TrainingContext(
            config=self.config.mitigation, params=mitigation_params(self.config.mitigation)))
        extra_loss = training_loss_term(self.config.mitigation)
        if extra_loss is not None and all(r["source"] == "synthetic" for r in records):
            log.warning("mitigation %s: generation %d has no real records to align with; its "
                        "term is zero (set loop.synthetic_fraction below 1)",
                        self.config.mitigation.name, t)
        if prepared != list(records):
            write_jsonl(self.gen_dir(t) / "train.jsonl", prepared)  # what was trained on
        if not prepared:
            log.warning("generation %d: empty training set; M_%d = M_%d", t, t + 1, t)
        summary = fine_tune(
            self.backend, prepared, training=self.config.training,
            seed=derive_seed(self.seed, self.condition, t, "train"),
            save_to=self.gen_dir(t) / "model", from_base=retrain, extra_loss=extra_loss,
        )
        self.loaded_generation = t + 1
        return summary


def check_shares(config: ExperimentConfig, task_name: str, groups: Sequence[str]) -> None:
    """``loop.initial_shares`` names the task's groups, and ``feedback.min_share`` fits them."""
    from biasloop.errors import ConfigError

    initial = config.loop.initial_shares
    if initial is not None and set(initial) != set(groups):
        raise ConfigError(
            f"loop.initial_shares has groups {sorted(initial)}; "
            f"task {task_name!r} has groups {sorted(groups)}"
        )
    min_share = config.feedback.min_share
    if min_share * len(groups) > 1:
        raise ConfigError(
            f"feedback.min_share: {min_share} × {len(groups)} groups of task "
            f"{task_name!r} exceeds 1; valid: at most {1 / len(groups):g}"
        )


def check_scpl(config: ExperimentConfig) -> None:
    """Fail before any folder is written: plug-in names and params, groups, device, sections."""
    from biasloop.config.inheritance import InheritanceConfig
    from biasloop.config.simulate import SimulateConfig
    from biasloop.errors import ConfigError
    from biasloop.models.loading import check_trainable, resolve_device
    from biasloop.tasks.base import build_task, validate_task_params

    if "inheritance" in config.model_fields_set and config.inheritance != InheritanceConfig():
        raise ConfigError(
            "inheritance: set on a `study: scpl` run, which does not use it; "
            "remove the section or set study: inheritance"
        )
    if "simulate" in config.model_fields_set and config.simulate != SimulateConfig():
        raise ConfigError(
            "simulate: set on a `study: scpl` run, which does not use it; "
            "remove the section or set study: simulate"
        )
    check_trainable(config.model, "model")
    resolve_device(config.model.device)
    check_feedback(config.feedback)
    for index, name in enumerate(config.metrics.names or []):
        LOOP_METRICS.get(name, where=f"metrics.names[{index}]")
    check_mitigation(config.mitigation)
    validate_task_params(config.task)
    task = build_task(config.task, seed=config.seed)
    check_shares(config, task.name, tuple(task.groups))


def run_scpl(*, config: ExperimentConfig, condition: str, seed: int, store: RunStore,
             components: Any, track: Track | None) -> None:
    """Run the loop for one condition × seed."""
    LoopRun(config=config, condition=condition, seed=seed, store=store,
            backend=components.backend(config.model), task=components.task(config.task, seed),
            track=track or no_progress).run()
