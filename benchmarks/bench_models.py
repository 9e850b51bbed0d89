"""Speed of the model backend on the embedded SmolLM2-135M-Instruct, ours beside the baseline.

One run measures, on this machine and in this process (``make bench``):

1. the fp32 and bf16 matmul peak (GFLOP/s) of a large ``torch.matmul``, and the
   int8 peak (GOP/s) of ``torch._int_mm``;
2. generation at the loop's batch (32 prompts x k = 4 samples = 128 rows, 64 new
   tokens, temperature 0.8, top-p 0.95): plain transformers ``generate`` on the fp32
   model and on a bf16 copy, biasloop's default path and its int8 option
   (``generation.quantization: int8``), and both again with PyTorch ops instead of
   the native C kernels (``generation.kernels: torch``), in alternating rounds;
3. greedy exactness: the compact decoder in float32 against transformers, and bf16
   and int8 against float32 (teacher-forced argmax agreement, perplexity ratio);
4. LoRA training at batch 8 (responses from step 2): float32 against the default
   (bf16 autocast), loss curves side by side;
5. one full SCPL generation (256 queries, k = 4, 64 new tokens, one LoRA epoch,
   64 evaluation queries per group) in a fresh process, with where the time goes,
   by default and with int8 generation;
6. peak memory of a 2- and a 10-generation run (smaller budgets), each in a fresh
   process.

It prints every figure with its ratio (ours / baseline, ours / machine peak) and
appends a dated entry to ``benchmarks/RESULTS.md``.

    python benchmarks/bench_models.py            # everything (~10 min on 2 idle cores)
    python benchmarks/bench_models.py --quick    # smaller smoke run (~2 min)

Wall-clock figures need an otherwise idle machine: the load average at start and
end is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model never needs the hub

import torch  # noqa: E402

from biasloop.config.schema import GenerationConfig, ModelConfig, TrainingConfig  # noqa: E402
from biasloop.models import TrainExample  # noqa: E402
from biasloop.models.fast.compact import CompactDecoder  # noqa: E402
from biasloop.models.loading import load_backend  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
EMBEDDED = "smollm2-135m-instruct"

TOPICS = [
    "the water cycle",
    "photosynthesis",
    "the French revolution",
    "black holes",
    "volcanoes",
    "the immune system",
    "compound interest",
    "the printing press",
    "plate tectonics",
    "machine learning",
    "the Roman empire",
    "climate change",
    "the human heart",
    "jazz music",
    "the moon landing",
    "electric cars",
]
TEMPLATES = ["Explain {} in two sentences.", "Write a short paragraph about {}."]
PROMPTS = [t.format(topic) for topic in TOPICS for t in TEMPLATES]  # 32 prompts

Row = tuple[str, str, str]


# --------------------------------------------------------------------------- helpers


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_peak_gflops(dtype: torch.dtype, size: int, seconds: float) -> float:
    """Best GFLOP/s (GOP/s for int8) of repeated ``size x size`` matmuls over ``seconds``."""
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (size, size), dtype=torch.int8)
        b = torch.randint(-127, 128, (size, size), dtype=torch.int8)
        matmul: Callable[..., Any] = torch._int_mm
    else:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        matmul = torch.matmul
    matmul(a, b)  # warm-up (thread pool, kernels)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        matmul(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` would also count the parent's
    memory at fork time, since Linux carries it across ``execve``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Accumulates wall seconds over timed blocks."""

    def __init__(self) -> None:
        self.wall = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - start


class TokenCounter:
    """Counts prompt and new tokens of both generation paths while active."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.prompt_tokens = self.new_tokens = 0  # tokens fed to the model (prefill), made

    def reset(self) -> tuple[int, int]:
        counts = (self.prompt_tokens, self.new_tokens)
        self.prompt_tokens = self.new_tokens = 0
        return counts

    def __enter__(self) -> TokenCounter:
        model, counter = self.backend.model, self
        stop = set(self.backend._eos_ids()) | {self.backend.tokenizer.pad_token_id}
        original_generate = model.generate

        def hf_generate(*args: Any, **kwargs: Any) -> Any:
            out = original_generate(*args, **kwargs)
            ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
            rows = out.shape[0] // ids.shape[0]
            counter.prompt_tokens += int(mask.sum()) * rows  # each row prefills its prompt
            counter.new_tokens += int((~torch.isin(out[:, ids.shape[1] :],
                                                   torch.tensor(sorted(stop)))).sum())
            return out

        original_compact = CompactDecoder.generate

        def compact_generate(decoder: CompactDecoder, ids: Any, mask: Any, **kwargs: Any) -> Any:
            rows = original_compact(decoder, ids, mask, **kwargs)
            counter.prompt_tokens += int(mask.sum())  # each prompt is prefilled once
            counter.new_tokens += sum(len(row) for row in rows)
            return rows

        model.generate = hf_generate
        CompactDecoder.generate = compact_generate
        self._restore = lambda: (
            delattr(model, "generate"),
            setattr(CompactDecoder, "generate", original_compact),
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()


# --------------------------------------------------------------------------- parts


def bench_generation(
    backend: Any, bf16_backend: Any, *, rounds: int, max_new_tokens: int,
    peaks: dict[str, float]
) -> tuple[list[Row], dict[str, Any]]:
    """Transformers fp32, transformers bf16 and ours on the same batch, alternating.

    Each setting of ours (int8, PyTorch ops instead of the native kernels) has a
    backend of its own: a backend keeps one packed decoder, so alternating settings on
    one backend would repack (and recalibrate) every round.
    """
    params = sum(p.numel() for p in backend.model.parameters())
    sampling = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95,
                                batch_size=32)
    paths = {
        "transformers fp32": (backend, sampling.model_copy(update={"engine": "transformers"})),
        "transformers bf16": (bf16_backend,
                              sampling.model_copy(update={"engine": "transformers"})),
        "ours (default)": (backend, sampling),
        "ours (int8)": (load_backend(ModelConfig(name=EMBEDDED)),
                        sampling.model_copy(update={"quantization": "int8"})),
        "ours (PyTorch ops)": (load_backend(ModelConfig(name=EMBEDDED)),
                               sampling.model_copy(update={"kernels": "torch"})),
        "ours (int8, PyTorch ops)": (
            load_backend(ModelConfig(name=EMBEDDED)),
            sampling.model_copy(update={"quantization": "int8", "kernels": "torch"}),
        ),
    }
    for model, config in paths.values():  # pack (and compile) outside the clock
        model.generate(PROMPTS[:4], config=config.model_copy(update={"max_new_tokens": 4}),
                       num_samples=4)
    clocks = {name: Clock() for name in paths}
    counts: dict[str, list[int]] = {name: [0, 0] for name in paths}
    texts: list[str] = []
    for r in range(rounds):
        for name, (model, config) in paths.items():
            with TokenCounter(model) as counter, clocks[name].timing():
                out = model.generate(PROMPTS, config=config, num_samples=4, seed=r)
            prompt, new = counter.reset()
            counts[name][0] += prompt
            counts[name][1] += new
            if name == "ours (default)":
                texts += [answer for answers in out for answer in answers]
    tps = {name: counts[name][1] / clocks[name].wall for name in paths}
    # Model FLOPs: ~2 * params per token processed (prefilled or generated).
    flops = {name: 2 * params * sum(counts[name]) / clocks[name].wall / 1e9 for name in paths}
    ours = tps["ours (default)"]
    rows: list[Row] = []
    for name in paths:
        peak_name = ("int8" if "int8" in name else
                     "bf16" if "bf16" in name or name.startswith("ours") else "fp32")
        peak = peaks[peak_name]
        rows.append((
            f"generate: {name}",
            f"{tps[name]:.0f} new tok/s",
            f"{rounds} x 128 rows, {counts[name][1]} new tokens, {clocks[name].wall:.1f} s; "
            f"{flops[name]:.0f} GFLOP/s = {flops[name] / peak:.0%} of {peak_name} peak",
        ))
    rows += [
        ("    ours / transformers fp32", f"{ours / tps['transformers fp32']:.2f}x",
         "same model, prompts, batch, sampling; target >= 4x"),
        ("    ours / transformers bf16", f"{ours / tps['transformers bf16']:.2f}x",
         "transformers on a bf16 copy of the model"),
        ("    ours / machine bf16 peak", f"{flops['ours (default)'] / peaks['bf16']:.1%}",
         "model FLOP/s over the bf16 matmul peak"),
        ("    int8 / transformers fp32", f"{tps['ours (int8)'] / tps['transformers fp32']:.2f}x",
         "generation.quantization = int8 (opt-in, not exact)"),
        ("    int8 / ours default", f"{tps['ours (int8)'] / ours:.2f}x", "the share of int8"),
        ("    int8 / machine int8 peak", f"{flops['ours (int8)'] / peaks['int8']:.1%}",
         "model OP/s over the int8 _int_mm peak"),
        ("    native kernels / PyTorch ops", f"{ours / tps['ours (PyTorch ops)']:.2f}x",
         "generation.kernels auto vs torch, bf16"),
        ("    native kernels / PyTorch ops, int8",
         f"{tps['ours (int8)'] / tps['ours (int8, PyTorch ops)']:.2f}x",
         "generation.kernels auto vs torch, quantization int8"),
    ]
    return rows, {"texts": texts, "tps": tps}


def bench_greedy_agreement(backend: Any) -> list[Row]:
    """float32 compact vs transformers (tokens), bf16 vs float32 (teacher-forced)."""
    config = GenerationConfig(max_new_tokens=48, temperature=0.0, batch_size=32)
    reference = backend.generate(PROMPTS, config=config.model_copy(update={"engine":
                                                                           "transformers"}))
    fp32 = backend.generate(PROMPTS, config=config.model_copy(
        update={"engine": "compact", "compute_dtype": "float32"}))
    bf16 = backend.generate(PROMPTS, config=config.model_copy(
        update={"engine": "compact", "compute_dtype": "bfloat16"}))
    same32 = sum(a == b for a, b in zip(reference, fp32, strict=True))
    same16 = sum(a == b for a, b in zip(reference, bf16, strict=True))
    rows = [backend._encode(backend.format_prompt(p), special=False)
            + backend._encode(r[0], special=False) for p, r in zip(PROMPTS, reference)]
    ids, mask = backend._pad(rows, side="left")
    real, targets = mask[:, 1:].bool(), ids[:, 1:]
    logits = {d: CompactDecoder(backend.model, dtype=d).logits(ids, mask)[:, :-1]
              for d in (torch.float32, torch.bfloat16)}
    logits["int8"] = CompactDecoder(
        backend.model, dtype=torch.bfloat16, int8_calibration=backend._int8_calibration()
    ).logits(ids, mask)[:, :-1]
    agreement = {d: float((logits[torch.float32].argmax(-1) == v.argmax(-1))[real].float().mean())
                 for d, v in logits.items()}
    nll = {d: float(-torch.log_softmax(v, -1).gather(-1, targets[..., None])[..., 0][real].mean())
           for d, v in logits.items()}
    ratios = {d: float(torch.tensor(nll[d] - nll[torch.float32]).exp()) for d in logits}
    agree, ratio = agreement[torch.bfloat16], ratios[torch.bfloat16]
    return [
        ("greedy: compact fp32 = transformers", f"{same32}/{len(PROMPTS)} rows",
         "identical 48-token greedy texts"),
        ("greedy: compact bf16 = transformers", f"{same16}/{len(PROMPTS)} rows",
         "identical texts (one flipped token changes the rest)"),
        ("bf16 teacher-forced agreement", f"{agree:.1%}",
         "argmax equal to fp32 at every prompt + answer position; tolerance >= 95%"),
        ("bf16 / fp32 perplexity", f"{ratio:.4f}", "on the fp32 greedy texts; tolerance 1 +- 0.01"),
        ("int8 teacher-forced agreement", f"{agreement['int8']:.1%}",
         "generation.quantization = int8; tolerance >= 90%"),
        ("int8 / fp32 perplexity", f"{ratios['int8']:.4f}", "tolerance 1 +- 0.05"),
    ]


def original_step_loss(backend: Any) -> Callable[..., torch.Tensor]:
    """The training loss as computed before the fast paths (the baseline).

    float32, transformers' default attention, logits at every position.
    """
    import torch.nn.functional as F

    def step_loss(data: dict[str, torch.Tensor], weights: torch.Tensor,
                  extra_loss: Any) -> torch.Tensor:
        outputs = backend.model(input_ids=data["input_ids"],
                                attention_mask=data["attention_mask"])
        logits = outputs.logits[:, :-1].float()
        targets = data["labels"][:, 1:]
        token_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     ignore_index=-100, reduction="none").view(targets.shape)
        per_example = token_loss.sum(1) / (targets != -100).sum(1).clamp(min=1)
        return (per_example * weights).sum() / weights.sum()

    return step_loss


def bench_training(backend: Any, texts: list[str], *, steps: int,
                   peaks: dict[str, float]) -> list[Row]:
    """The original float32 LoRA step, float32 on the new path, and the default (bf16 autocast)."""
    params = sum(p.numel() for p in backend.model.parameters())
    examples = [TrainExample(prompt=PROMPTS[i % len(PROMPTS)], response=texts[i])
                for i in range(8 * steps)]
    base = TrainingConfig(method="lora", batch_size=8, max_length=128, epochs=1)
    fp32 = base.model_copy(update={"compute_dtype": "float32"})
    runs = {"original fp32": fp32, "fp32, new path": fp32, "ours": base}
    results = {}
    for name, config in runs.items():
        if name == "original fp32":
            backend._step_loss = original_step_loss(backend)
        backend.reset_to_base()
        backend.train(examples[:8], config=config, seed=0)  # warm-up
        backend.reset_to_base()
        results[name] = backend.train(examples, config=config, seed=1)
        backend.__dict__.pop("_step_loss", None)
    backend.reset_to_base()
    tps = {name: r.tokens_seen / r.seconds for name, r in results.items()}
    flops = {name: 6 * params * tps[name] / 1e9 for name in tps}
    full, ours = results["original fp32"].step_losses, results["ours"].step_losses
    rel = [abs(a - b) / abs(a) for a, b in zip(full, ours, strict=True)]
    mean_rel = abs(sum(ours) - sum(full)) / abs(sum(full))
    baseline = results["original fp32"]
    return [
        ("train: LoRA original fp32 (baseline)", f"{tps['original fp32']:.0f} tok/s",
         f"{steps} steps x 8, {baseline.tokens_seen} tokens, {baseline.seconds:.1f} s; "
         f"{flops['original fp32'] / peaks['fp32']:.0%} of fp32 peak (6*P per token)"),
        ("train: LoRA fp32, new path", f"{tps['fp32, new path']:.0f} tok/s",
         "math attention on CPU, logits at target positions only"),
        ("train: LoRA ours (default)", f"{tps['ours']:.0f} tok/s",
         f"bf16 autocast; {results['ours'].seconds:.1f} s; "
         f"{flops['ours'] / peaks['bf16']:.0%} of bf16 peak"),
        ("    ours / original fp32", f"{tps['ours'] / tps['original fp32']:.2f}x", "target >= 2x"),
        ("    ours / fp32 new path", f"{tps['ours'] / tps['fp32, new path']:.2f}x",
         "the share of bf16 autocast"),
        ("    loss curves", f"max {max(rel):.2%} per step, {mean_rel:.2%} mean",
         "ours vs original fp32, same data, seed and order; tolerance 3% per step, 1% mean; "
         f"fp32 {full[0]:.3f} -> {full[-1]:.3f}, ours {ours[0]:.3f} -> {ours[-1]:.3f}"),
    ]


# --------------------------------------------------------------------------- end to end


def scpl_config(*, queries: int, candidates: int, new_tokens: int, eval_per_group: int,
                generations: int, perplexity: int, bootstrap: int,
                quantization: str = "none") -> Any:
    from biasloop.config import load_config

    return load_config(None, [
        "name=bench-scpl", f"model.name={EMBEDDED}", "task.name=preference",
        f"task.eval_queries_per_group={eval_per_group}", f"generation.max_new_tokens={new_tokens}",
        "generation.batch_size=32", "training.method=lora", "training.epochs=1",
        "training.batch_size=8", "training.max_length=128", f"loop.generations={generations}",
        f"loop.queries_per_generation={queries}", "mitigation.name=reward_rejection",
        f"mitigation.candidates={candidates}", f"metrics.bootstrap_samples={bootstrap}",
        f"metrics.perplexity_texts={perplexity}", "run.progress=false",
        f"generation.quantization={quantization}",
    ])


class PhaseTimer:
    """Exclusive wall time per call path (``evaluate > generate``) of wrapped functions."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []  # [label, start, child seconds]

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            path = " > ".join([*(frame[0] for frame in timer.stack[-1:]), label])
            frame = [path, time.perf_counter(), 0.0]
            timer.stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                timer.stack.pop()
                spent = time.perf_counter() - frame[1]
                timer.exclusive[path] += spent - frame[2]
                if timer.stack:
                    timer.stack[-1][2] += spent

        setattr(owner, attribute, timed)


def e2e_child(args: argparse.Namespace) -> None:
    """Run one SCPL config in this (fresh) process; print timings and peak memory as JSON."""
    from biasloop.loop.engine import LoopRun
    from biasloop.models.hf import HFBackend
    from biasloop.runner import studies
    from biasloop.runner.experiment import start_run

    torch.set_num_threads(args.threads)
    config = scpl_config(queries=args.queries, candidates=4, new_tokens=args.new_tokens,
                         eval_per_group=args.eval_per_group, generations=args.generations,
                         perplexity=32, bootstrap=1000, quantization=args.quantization)
    timer = PhaseTimer()
    timer.wrap(studies.Components, "backend", "load model")
    for name, label in [("serve", "serve"), ("generate_candidates", "candidates"),
                        ("curate", "curate"), ("evaluate", "evaluate"),
                        ("write_metrics", "metrics"), ("feedback", "feedback"),
                        ("assemble", "assemble"), ("train", "train step")]:
        timer.wrap(LoopRun, name, label)
    for name in ("generate", "loglik", "train", "save", "load_trained", "reset_to_base"):
        timer.wrap(HFBackend, name, name)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        start_run(config, out=Path(out))
    total = time.perf_counter() - start
    print(json.dumps({"total": total, "phases": dict(timer.exclusive),
                      "peak_rss_mb": peak_rss_mb()}))


def run_child(threads: int, **options: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--e2e-child", "--threads", str(threads)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_end_to_end(threads: int, quick: bool, quantization: str = "none") -> list[Row]:
    options = ({"queries": 64, "new_tokens": 32, "eval_per_group": 16} if quick else
               {"queries": 256, "new_tokens": 64, "eval_per_group": 64})
    result = run_child(threads, generations=1, quantization=quantization, **options)
    total = result["total"]
    load = sum(v for k, v in result["phases"].items() if k.endswith("load model"))
    label = "" if quantization == "none" else f", generation.quantization = {quantization}"
    rows: list[Row] = [(
        f"SCPL generation, end to end{label}", f"{total:.1f} s",
        f"{options['queries']} queries x k=4, {options['new_tokens']} new tokens, 1 LoRA epoch, "
        f"{options['eval_per_group']} eval queries/group, M_0 and M_1 evaluated; "
        f"{total - load:.1f} s without model load; target <= 90 s; "
        f"peak memory {result['peak_rss_mb']:.0f} MB",
    )]
    for phase, seconds in sorted(result["phases"].items(), key=lambda kv: -kv[1]):
        if seconds >= 0.05:
            rows.append((f"    {phase}", f"{seconds:.1f} s", f"{seconds / total:.0%}"))
    rows.append(("    (not in a timed phase)", f"{total - sum(result['phases'].values()):.1f} s",
                 "run store, config checks, task setup"))
    return rows


def bench_memory(threads: int, quick: bool) -> list[Row]:
    options = {"queries": 16 if quick else 32, "new_tokens": 16 if quick else 32,
               "eval_per_group": 4 if quick else 8}
    runs = {n: run_child(threads, generations=n, **options) for n in (2, 10)}
    short, long = runs[2]["peak_rss_mb"], runs[10]["peak_rss_mb"]
    return [
        ("peak memory, 2 generations", f"{short:.0f} MB", f"{runs[2]['total']:.0f} s; "
         f"{options['queries']} queries x k=4, {options['new_tokens']} new tokens"),
        ("peak memory, 10 generations", f"{long:.0f} MB", f"{runs[10]['total']:.0f} s"),
        ("    10 / 2 generations", f"{long / short:.3f}", "target <= 1.10"),
    ]


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, str]]:
    quick, threads = args.quick, torch.get_num_threads()
    load_at_start = os.getloadavg()[0]
    matmul_size, matmul_seconds = (1024, 1.0) if quick else (2048, 3.0)
    peaks = {name: matmul_peak_gflops(dtype, matmul_size, matmul_seconds) for name, dtype in
             (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8))}
    start = time.perf_counter()
    backend = load_backend(ModelConfig(name=EMBEDDED))
    load_seconds = time.perf_counter() - start
    bf16_backend = load_backend(ModelConfig(name=EMBEDDED, dtype="bfloat16"))
    rows: list[Row] = [
        ("matmul peak fp32", f"{peaks['fp32']:.0f} GFLOP/s",
         f"{matmul_size}^2, best of {matmul_seconds:.0f} s"),
        ("matmul peak bf16", f"{peaks['bf16']:.0f} GFLOP/s",
         f"bf16/fp32 = {peaks['bf16'] / peaks['fp32']:.2f}"),
        ("matmul peak int8", f"{peaks['int8']:.0f} GOP/s",
         f"torch._int_mm; int8/bf16 = {peaks['int8'] / peaks['bf16']:.2f}"),
        ("load embedded model", f"{load_seconds:.1f} s", "from cache"),
    ]
    generation_rows, generated = bench_generation(
        backend, bf16_backend, rounds=1 if quick else 2,
        max_new_tokens=16 if quick else 64, peaks=peaks)
    del bf16_backend
    rows += generation_rows
    rows += bench_greedy_agreement(backend)
    rows += bench_training(backend, generated["texts"], steps=3 if quick else 8, peaks=peaks)
    del backend
    if not args.skip_e2e:
        rows += bench_end_to_end(threads, quick)
        rows += bench_end_to_end(threads, quick, quantization="int8")
    if not args.skip_memory:
        rows += bench_memory(threads, quick)
    info = {
        "cpu": cpu_name(),
        "threads": str(threads),
        "torch": torch.__version__,
        "load average start/end": f"{load_at_start:.2f}/{os.getloadavg()[0]:.2f}",
        "mode": "quick" if quick else "full",
    }
    return rows, info


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def append_results(rows: list[Row], info: dict[str, str]) -> None:
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"## {stamp} ({info['mode']})",
        "",
        ", ".join(f"{k}: {v}" for k, v in info.items() if k != "mode"),
        "",
        "| measure | value | note |",
        "| --- | --- | --- |",
        *(f"| {a.strip()} | {b} | {c} |" for a, b, c in rows),
        "",
    ]
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Model backend benchmarks\n\nAppended by `benchmarks/bench_models.py`.\n\n"
        )
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller smoke run")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end SCPL run")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 2 vs 10 generations")
    child: Callable[[str], None] = parser.add_argument_group("child process").add_argument
    child("--e2e-child", action="store_true", help=argparse.SUPPRESS)
    child("--generations", type=int, default=1, help=argparse.SUPPRESS)
    child("--queries", type=int, default=256, help=argparse.SUPPRESS)
    child("--new-tokens", type=int, default=64, help=argparse.SUPPRESS)
    child("--eval-per-group", type=int, default=64, help=argparse.SUPPRESS)
    child("--quantization", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(args.threads)
    if args.e2e_child:
        e2e_child(args)
        return 0
    rows, info = run(args)
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    print_table(rows)
    if not args.no_record:
        append_results(rows, info)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
