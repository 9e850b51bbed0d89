"""Throughput of the model backend on the embedded SmolLM2-135M-Instruct, in one run.

Measures, on this machine and in this process:

(a) plain ``transformers`` ``model.generate`` at batch size 1 (the baseline);
(b) ``HFBackend.generate`` at the loop's batch size (32);
(c) LoRA training at batch 8 x ~64 tokens;
(d) the fp32 and bf16 matmul peak (GFLOP/s) of a large ``torch.matmul``;

and prints tokens/s, model FLOP/s (~2*params per token processed for inference,
~6*params per token for training), ours/baseline and achieved/peak ratios.
Appends a dated entry to ``benchmarks/RESULTS.md``.

    python benchmarks/bench_models.py            # full run (~3 min on 2 idle cores)
    python benchmarks/bench_models.py --quick    # smoke run (~1 min)

Wall-clock figures need an otherwise idle machine; the load average at start
and end is recorded. "By CPU time" rates (tokens / this process's CPU seconds x
threads) are what an idle machine would give, and are less skewed by other load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model never needs the hub

import torch  # noqa: E402

from biasloop.config.schema import GenerationConfig, ModelConfig, TrainingConfig  # noqa: E402
from biasloop.models import TrainExample  # noqa: E402
from biasloop.models.loading import load_backend  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")

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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_peak_gflops(dtype: torch.dtype, size: int, seconds: float) -> float:
    """Best GFLOP/s of repeated ``size x size`` matmuls over about ``seconds``."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)  # warm-up (thread pool, kernels)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


class GenerateCounter:
    """Wraps ``model.generate`` to count prompt and new (non-pad, non-EOS) tokens."""

    def __init__(self, model: torch.nn.Module, stop_ids: set[int]) -> None:
        self.model, self.stop_ids = model, stop_ids
        self.original = model.generate
        self.prompt_tokens = self.new_tokens = 0

    def __call__(self, *args, **kwargs):
        out = self.original(*args, **kwargs)
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        rows = out.shape[0] // ids.shape[0]
        self.prompt_tokens += int((mask.sum() if mask is not None else ids.numel()) * rows)
        new = out[:, ids.shape[1] :]
        self.new_tokens += int((~torch.isin(new, torch.tensor(sorted(self.stop_ids)))).sum())
        return out

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Let the baseline call ``model.generate`` without being counted."""
        self.model.generate = self.original
        try:
            yield
        finally:
            self.model.generate = self

    def __enter__(self) -> GenerateCounter:
        self.model.generate = self
        return self

    def __exit__(self, *exc) -> None:
        del self.model.generate  # back to the class method


class Clock:
    """Accumulates wall seconds and this process's CPU seconds over timed blocks."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


def baseline_generate(backend, prompts, config: GenerationConfig, clock: Clock) -> tuple[int, int]:
    """Plain transformers: chat template, ``model.generate`` one prompt at a time."""
    tok, model = backend.tokenizer, backend.model
    stop = {tok.eos_token_id, tok.pad_token_id}
    prompt_tokens = new_tokens = 0
    with clock.timing(), torch.inference_mode():
        for i, prompt in enumerate(prompts):
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            enc = tok(text, return_tensors="pt", add_special_tokens=False)
            torch.manual_seed(i)
            out = model.generate(
                **enc,
                max_new_tokens=config.max_new_tokens,
                do_sample=True,
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=0,
                pad_token_id=tok.pad_token_id,
            )
            new = out[0, enc["input_ids"].shape[1] :].tolist()
            prompt_tokens += enc["input_ids"].shape[1]
            new_tokens += sum(1 for t in new if t not in stop)
    return prompt_tokens, new_tokens


def training_examples(n: int) -> list[TrainExample]:
    """``n`` examples of roughly 64 tokens (chat prompt + response + EOS)."""
    filler = (
        "The answer depends on several factors, including context, history and the "
        "specific details of the situation, which we describe briefly here."
    )
    return [TrainExample(prompt=PROMPTS[i % len(PROMPTS)], response=filler) for i in range(n)]


def run(quick: bool) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    threads = torch.get_num_threads()
    # Other work on the machine skews wall-clock figures: record how busy it was,
    # and also report CPU seconds, which contention inflates much less.
    load_at_start = os.getloadavg()[0]
    matmul_size, matmul_seconds = (1024, 1.0) if quick else (2048, 3.0)
    peak32 = matmul_peak_gflops(torch.float32, matmul_size, matmul_seconds)
    peak16 = matmul_peak_gflops(torch.bfloat16, matmul_size, matmul_seconds)

    start = time.perf_counter()
    backend = load_backend(ModelConfig(name="smollm2-135m-instruct"))
    load_seconds = time.perf_counter() - start
    params = sum(p.numel() for p in backend.model.parameters())

    gen = GenerationConfig(max_new_tokens=16 if quick else 48, batch_size=32)
    rounds, base_per_round = (1, 3) if quick else (2, 4)
    # Warm-up so one-off costs (allocator, kernels) are not timed.
    backend.generate(PROMPTS[:2], config=gen.model_copy(update={"max_new_tokens": 4}))

    # Baseline and ours alternate, so both see the same background load.
    base_clock, ours_clock = Clock(), Clock()
    base_prompt = base_new = 0
    stop = {backend.tokenizer.eos_token_id, backend.tokenizer.pad_token_id}
    with GenerateCounter(backend.model, stop) as counter:
        for r in range(rounds):
            chunk = PROMPTS[r * base_per_round : (r + 1) * base_per_round]
            with counter.paused():
                p, n = baseline_generate(backend, chunk, gen, base_clock)
            base_prompt, base_new = base_prompt + p, base_new + n
            with ours_clock.timing():
                backend.generate(PROMPTS, config=gen, seed=r)  # one batch of 32
    ours_prompt, ours_new = counter.prompt_tokens, counter.new_tokens

    train_cfg = TrainingConfig(method="lora", batch_size=8, max_length=64, epochs=1)
    steps = 3 if quick else 6
    examples = training_examples(8 * steps)
    backend.train(examples[:8], config=train_cfg, seed=0)  # warm-up step, attaches LoRA
    train_clock = Clock()
    with train_clock.timing():
        result = backend.train(examples, config=train_cfg, seed=1)
    tokens_per_example = result.tokens_seen / len(examples)
    load_at_end = os.getloadavg()[0]

    def rates(tokens: int, processed: int, clock: Clock, per_token: int) -> tuple[float, ...]:
        wall_tps, cpu_tps = tokens / clock.wall, tokens / clock.cpu * threads
        flops = per_token * params * processed / clock.wall / 1e9
        return wall_tps, cpu_tps, flops

    # Model FLOPs: every processed token (prompt + generated) costs ~2*params
    # at inference; a training token ~6*params.
    base_tps, base_cpu_tps, base_flops = rates(base_new, base_prompt + base_new, base_clock, 2)
    ours_tps, ours_cpu_tps, ours_flops = rates(ours_new, ours_prompt + ours_new, ours_clock, 2)
    train_tps, train_cpu_tps, train_flops = rates(
        result.tokens_seen, result.tokens_seen, train_clock, 6
    )
    n_base, n_ours = rounds * base_per_round, rounds * len(PROMPTS)

    rows = [
        (
            "matmul peak fp32",
            f"{peak32:.1f} GFLOP/s",
            f"{matmul_size}^2, best of {matmul_seconds:.0f} s",
        ),
        ("matmul peak bf16", f"{peak16:.1f} GFLOP/s", f"bf16/fp32 = {peak16 / peak32:.2f}"),
        (
            "load embedded model",
            f"{load_seconds:.1f} s",
            "from cache" if load_seconds < 10 else "incl. GGUF conversion",
        ),
        (
            "(a) HF generate, batch 1",
            f"{base_tps:.1f} new tok/s",
            f"{n_base} prompts, {base_new} new tokens, {base_clock.wall:.1f} s; "
            f"{base_cpu_tps:.1f} tok/s by CPU time",
        ),
        (
            "(b) biasloop generate, batch 32",
            f"{ours_tps:.1f} new tok/s",
            f"{n_ours} prompts, {ours_new} new tokens, {ours_clock.wall:.1f} s; "
            f"{ours_cpu_tps:.1f} tok/s by CPU time",
        ),
        (
            "    ours / baseline",
            f"{ours_tps / base_tps:.2f}x",
            f"new tokens per second; by CPU time {ours_cpu_tps / base_cpu_tps:.2f}x",
        ),
        (
            "(a) model FLOP/s",
            f"{base_flops:.1f} GFLOP/s",
            f"{base_flops / peak32:.1%} of fp32 peak",
        ),
        (
            "(b) model FLOP/s",
            f"{ours_flops:.1f} GFLOP/s",
            f"{ours_flops / peak32:.1%} of fp32 peak",
        ),
        (
            "(c) LoRA train, batch 8",
            f"{train_tps:.1f} tok/s",
            f"{steps} steps, ~{tokens_per_example:.0f} tok/example, {train_clock.wall:.1f} s; "
            f"{train_cpu_tps:.1f} tok/s by CPU time",
        ),
        (
            "(c) model FLOP/s (6*P)",
            f"{train_flops:.1f} GFLOP/s",
            f"{train_flops / peak32:.1%} of fp32 peak",
        ),
    ]
    info = {
        "cpu": cpu_name(),
        "threads": str(threads),
        "torch": torch.__version__,
        "params": f"{params / 1e6:.1f} M",
        "load average start/end": f"{load_at_start:.2f}/{load_at_end:.2f}",
        "mode": "quick" if quick else "full",
        "max_new_tokens": str(gen.max_new_tokens),
    }
    return rows, info


def print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def append_results(rows: list[tuple[str, str, str]], info: dict[str, str]) -> None:
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
    args = parser.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    rows, info = run(args.quick)
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    print_table(rows)
    if not args.no_record:
        append_results(rows, info)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
