"""The fast paths: the compact decoder and bf16 autocast training.

Everything runs on ``tiny-random`` except the one ``@pytest.mark.embedded`` test,
which measures bf16 against float32 on the real model.
"""

from __future__ import annotations

import logging

import pytest
import torch

from biasloop.config.schema import GenerationConfig, ModelConfig, TrainingConfig
from biasloop.errors import ConfigError
from biasloop.models import TrainExample
from biasloop.models.fast import compact
from biasloop.models.fast.compact import CompactDecoder, sample, unsupported_reason
from biasloop.models.hf import HFBackend

PROMPTS = [
    "Hello",
    "What is the capital of France?",
    "x",
    "Tell me a long story about a dragon who lived in a cave.",
    "Name three colours.",
]
GREEDY = GenerationConfig(max_new_tokens=12, temperature=0.0, batch_size=3)
SAMPLE = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, batch_size=2)
FP32 = {"engine": "compact", "compute_dtype": "float32"}
HF = {"engine": "transformers"}
EXAMPLES = [
    TrainExample(prompt="Say a colour.", response="Blue is a colour."),
    TrainExample(prompt="Say an animal.", response="A cat is an animal."),
    TrainExample(prompt="Say a number.", response="Seven."),
    TrainExample(prompt="Say a fruit.", response="An apple is a fruit, and it is red."),
]
LORA = TrainingConfig(method="lora", learning_rate=1e-2, epochs=2, batch_size=2, lora_r=4)


def prompt_batch(backend: HFBackend, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [backend._encode(backend.format_prompt(p), special=False) for p in prompts]
    return backend._pad(rows, side="left")


def transformers_greedy_ids(backend: HFBackend, prompts: list[str], steps: int) -> list[list[int]]:
    """Greedy new-token ids from ``model.generate``, cut at the first EOS."""
    ids, mask = prompt_batch(backend, prompts)
    kwargs = backend._generation_kwargs(GREEDY.model_copy(update={"max_new_tokens": steps}), 1)
    with torch.inference_mode():
        out = backend.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    eos = set(backend._eos_ids())
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = next((i for i, token in enumerate(row) if token in eos), len(row))
        rows.append(row[:cut])
    return rows


def compact_ids(
    decoder: CompactDecoder, backend: HFBackend, prompts: list[str], steps: int, **kwargs
) -> list[list[int]]:
    ids, mask = prompt_batch(backend, prompts)
    options = {"num_samples": 1, "temperature": 0.0, "top_p": 1.0, "generator": None}
    options.update(kwargs)
    return decoder.generate(
        ids, mask, max_new_tokens=steps, eos_ids=options.pop("eos_ids", backend._eos_ids()),
        **options,
    )


# --------------------------------------------------------------------------- exactness


def test_float32_greedy_tokens_equal_transformers(tiny_backend):
    decoder = CompactDecoder(tiny_backend.model, dtype=torch.float32)
    assert compact_ids(decoder, tiny_backend, PROMPTS, 16) == transformers_greedy_ids(
        tiny_backend, PROMPTS, 16
    )
    texts = tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=FP32))
    assert texts == tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=HF))


def test_float32_greedy_equals_transformers_with_a_lora_adapter(tiny_backend):
    before = tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=FP32))
    tiny_backend.train(EXAMPLES, config=LORA, seed=0)
    after = tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=FP32))
    assert after == tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=HF))
    assert after != before  # the adapter is merged into the packed weights


def test_decoder_follows_in_place_weight_changes(tiny_backend):
    first = tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=FP32))
    with torch.no_grad():
        tiny_backend.model.lm_head.weight.mul_(-1.0)
    changed = tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=FP32))
    assert changed != first
    assert changed == tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=HF))


def test_bfloat16_teacher_forced_agreement_on_tiny_model(tiny_backend):
    # A random model's logits are nearly flat, the worst case for rounding;
    # the real model's figures are in the embedded test and docs/performance.md.
    ids, mask = prompt_batch(tiny_backend, PROMPTS)
    full = CompactDecoder(tiny_backend.model, dtype=torch.float32).logits(ids, mask)
    half = CompactDecoder(tiny_backend.model, dtype=torch.bfloat16).logits(ids, mask)
    real = mask.bool()
    agreement = (full.argmax(-1) == half.argmax(-1))[real].float().mean()
    print(f"tiny-random bf16 vs fp32: teacher-forced argmax agreement {float(agreement):.3f}")
    assert agreement >= 0.8


# --------------------------------------------------------------------------- int8


def test_int8_linear_equals_its_integer_formula():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 5, generator=generator)
    bias = torch.randn(7, generator=generator)
    x = torch.randn(2, 3, 5, generator=generator) * torch.tensor([1.0, 30.0, 0.1, 2.0, 5.0])
    got = compact.Int8Linear(weight, bias)(x)
    # By hand, in float64 and integers: W ~ s_n Q[n, :], x ~ r_m q[m, :].
    w, rows = weight.double(), x.reshape(-1, 5).double()
    s = w.abs().amax(1) / 127
    big_q = torch.round(w / s[:, None])
    r = rows.abs().amax(1) / 127
    small_q = torch.round(rows / r[:, None])
    expected = (small_q @ big_q.T) * r[:, None] * s[None, :] + bias.double()
    assert got.shape == (2, 3, 7) and got.dtype == torch.float32
    assert torch.allclose(got.reshape(-1, 7).double(), expected, rtol=1e-5, atol=1e-5)
    assert big_q.abs().max() == 127 and small_q.abs().max() == 127
    # ... and the quantisation error is small next to the float result.
    exact = x @ weight.T + bias
    assert (got - exact).abs().max() < 0.05 * exact.abs().max()


def test_int8_smoothing_alone_keeps_the_float32_function(tiny_backend, monkeypatch):
    """Folding the smoothing factors into norms and up-projections changes no logit."""
    ids, mask = prompt_batch(tiny_backend, PROMPTS)
    reference = CompactDecoder(tiny_backend.model, dtype=torch.float32).logits(ids, mask)
    calibration = tiny_backend._int8_calibration()
    monkeypatch.setattr(compact, "Int8Linear",
                        lambda weight, bias, **_: compact.DenseLinear(weight, bias, torch.float32))
    smoothed = CompactDecoder(tiny_backend.model, dtype=torch.float32,
                              int8_calibration=calibration)
    norms = torch.stack([layer.input_norm for layer in smoothed.layers])
    originals = torch.stack([layer.input_layernorm.weight for layer in
                             tiny_backend._base_model().model.layers])
    assert not torch.allclose(norms, originals)  # the factors really were folded in
    assert torch.allclose(smoothed.logits(ids, mask), reference, rtol=1e-4, atol=1e-4)


def test_int8_generation_runs_seeded_and_is_logged(tiny_backend, caplog):
    int8 = SAMPLE.model_copy(update={"quantization": "int8"})
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        first = tiny_backend.generate(PROMPTS, config=int8, num_samples=2, seed=3)
    assert "generates with the compact decoder (" in caplog.text
    assert ", int8 projections" in caplog.text
    assert first == tiny_backend.generate(PROMPTS, config=int8, num_samples=2, seed=3)
    decoder = tiny_backend.generation_path(int8)
    assert decoder.int8 and isinstance(decoder.layers[0].gate_up, compact.Int8Linear)
    # The float32 weights of the model are untouched by packing.
    assert tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=FP32)) == \
        tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update=HF))


def test_int8_with_the_transformers_engine_is_refused_when_the_config_loads():
    from biasloop.config import load_config

    with pytest.raises(ConfigError, match="quantization 'int8' needs the compact") as err:
        load_config(None, ["model.name=tiny-random", "generation.quantization=int8",
                           "generation.engine=transformers"])
    assert "\n" not in str(err.value)
    assert load_config(None, ["generation.quantization=int8"]).generation.quantization == "int8"


def test_int8_refuses_what_it_cannot_run(tiny_backend, monkeypatch):
    with pytest.raises(ConfigError, match="quantization = 'int8' needs the compact") as err:
        tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(
            update={"engine": "transformers", "quantization": "int8"}))
    assert "\n" not in str(err.value)
    monkeypatch.setattr(compact, "unsupported_reason", lambda model: "model_type 'gpt2'")
    with pytest.raises(ConfigError, match="cannot run model .*gpt2"):
        tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update={"quantization": "int8"}))


# --------------------------------------------------------------------------- sampling


def test_sampling_is_seeded_and_batches_are_independent(tiny_backend):
    first = tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=3, seed=4)
    assert first == tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=3, seed=4)
    assert first != tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=3, seed=5)
    assert len(set(first[0])) > 1  # samples of one prompt differ
    other_start = ["Something", "else entirely"] + PROMPTS[2:]
    moved = tiny_backend.generate(other_start, config=SAMPLE, num_samples=3, seed=4)
    assert moved[2:] == first[2:] and moved[:2] != first[:2]


def test_dropping_finished_rows_changes_no_output(tiny_backend, monkeypatch):
    decoder = CompactDecoder(tiny_backend.model, dtype=torch.float32)
    free = compact_ids(decoder, tiny_backend, PROMPTS, 10, eos_ids=[])
    # Stop tokens that end three rows early, at different steps.
    stops = [free[0][2], free[2][5], free[3][1]]

    def run(share: float, **kwargs) -> list[list[int]]:
        monkeypatch.setattr(compact, "DROP_FINISHED_SHARE", share)
        generator = kwargs.pop("generator", None)
        return compact_ids(
            decoder, tiny_backend, PROMPTS, 10, eos_ids=stops, generator=generator, **kwargs
        )

    kept, dropped = run(10.0), run(0.0)  # never drop vs drop at the first finished row
    assert kept == dropped
    assert sum(len(row) < 10 for row in kept) >= 3
    sampled = {
        share: run(share, temperature=1.0, top_p=0.9, num_samples=2,
                   generator=torch.Generator().manual_seed(0))
        for share in (10.0, 0.0)
    }
    assert sampled[10.0] == sampled[0.0]


def test_top_p_keeps_the_transformers_nucleus():
    from transformers.generation.logits_process import TopPLogitsWarper

    torch.manual_seed(0)
    # Row 0 is peaked (nucleus within the candidates); row 1 is flat (full sort).
    logits = torch.cat([torch.randn(1, 1000) * 4, torch.randn(1, 1000) * 0.1])
    top_p = 0.9
    warped = TopPLogitsWarper(top_p)(None, logits.clone())
    allowed = [set(torch.isfinite(row).nonzero().squeeze(1).tolist()) for row in warped]
    assert len(allowed[1]) > compact.TOP_P_CANDIDATES  # the flat row uses the full sort
    probs = torch.softmax(logits, -1)
    for u in torch.linspace(0, 0.9999, 200):
        tokens = sample(logits.clone(), temperature=1.0, top_p=top_p, uniform=u.repeat(2))
        assert all(int(t) in allowed[i] for i, t in enumerate(tokens))
    # The top of the inverse CDF is the least likely token still in the nucleus.
    last = sample(logits.clone(), temperature=1.0, top_p=top_p,
                  uniform=torch.full((2,), 0.99999))
    for i in range(2):
        assert int(last[i]) == min(allowed[i], key=lambda t: float(probs[i, t]))


def test_refined_top_logits_undo_bf16_rounding():
    torch.manual_seed(1)
    exact = torch.randn(64, 5000) * 3
    rough = exact.bfloat16().float()  # what a bf16 vocabulary projection returns

    def refine(candidates):
        return exact.gather(-1, candidates)

    greedy = sample(rough.clone(), temperature=0, top_p=1.0, uniform=None, refine=refine)
    assert torch.equal(greedy, exact.argmax(-1))
    uniform = torch.rand(64)
    ours = sample(rough.clone(), temperature=0.8, top_p=0.95, uniform=uniform, refine=refine)
    reference = sample(exact.clone(), temperature=0.8, top_p=0.95, uniform=uniform)
    assert (ours == reference).float().mean() >= 0.95


def test_greedy_and_top_p_one_sampling():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    assert sample(logits, temperature=0, top_p=0.5, uniform=None).tolist() == [1, 0]
    # top_p = 1 samples the whole distribution by inverse CDF.
    low = sample(logits, temperature=1.0, top_p=1.0, uniform=torch.zeros(2))
    high = sample(logits, temperature=1.0, top_p=1.0, uniform=torch.full((2,), 0.99999))
    assert low.tolist() == [0, 0] and high.tolist() == [2, 2]


# --------------------------------------------------------------------------- paths


def gpt2_backend(tiny_backend: HFBackend) -> HFBackend:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_backend.tokenizer
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    return HFBackend(model, tiny_backend.tokenizer, config=ModelConfig(name="tiny-random"))


def test_unsupported_model_falls_back_with_one_log_line(tiny_backend, caplog):
    other = gpt2_backend(tiny_backend)
    assert "gpt2" in unsupported_reason(other.model)
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        other.generate(PROMPTS[:2], config=GREEDY)
        other.generate(PROMPTS[:2], config=GREEDY)
    lines = [r.getMessage() for r in caplog.records if "generates with" in r.getMessage()]
    expected = (
        "model 'tiny-random' generates with the transformers generate (compact decoder "
        "unsupported: model_type 'gpt2' (supported: llama))"
    )
    assert lines == [expected]
    with pytest.raises(ConfigError, match="generation.engine = 'compact' cannot run"):
        other.generate(PROMPTS[:1], config=GREEDY.model_copy(update={"engine": "compact"}))


def test_log_line_names_the_compact_path(tiny_backend, caplog):
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        tiny_backend.generate(PROMPTS[:1], config=GREEDY.model_copy(update=FP32))
    assert "generates with the compact decoder (float32)" in caplog.text


# --------------------------------------------------------------------------- training


def test_bfloat16_autocast_training_tracks_float32_losses(tiny_backend):
    config = LORA.model_copy(update={"epochs": 4, "learning_rate": 3e-3})
    full = tiny_backend.train(
        EXAMPLES, config=config.model_copy(update={"compute_dtype": "float32"}), seed=0
    ).step_losses
    tiny_backend.reset_to_base()
    half = tiny_backend.train(
        EXAMPLES, config=config.model_copy(update={"compute_dtype": "bfloat16"}), seed=0
    ).step_losses
    assert len(full) == len(half) == 8
    # Stated tolerance: every step's loss within 1% of the float32 loss.
    assert half == pytest.approx(full, rel=0.01)
    assert half != full  # bf16 really ran


def test_extra_loss_hook_can_still_read_full_logits(tiny_backend):
    shapes = []

    def extra_loss(outputs, batch):
        shapes.append((tuple(outputs.logits.shape), tuple(batch["input_ids"].shape)))
        return outputs.logits.float().mean() * 0.0

    tiny_backend.train(EXAMPLES[:2], config=LORA.model_copy(update={"epochs": 1}), seed=0,
                       extra_loss=extra_loss)
    (logits, ids), = shapes
    assert logits == (*ids, len(tiny_backend.tokenizer))


# --------------------------------------------------------------------------- embedded


@pytest.mark.embedded
def test_embedded_compact_decoder_matches_float32_and_bf16_is_within_tolerance():
    from biasloop.models.loading import load_backend

    backend = load_backend(ModelConfig(name="smollm2-135m-instruct"))
    prompts = ["What is the capital of France?", "Explain photosynthesis in two sentences.",
               "Give three tips for studying.", "Why is the sky blue?"]
    config = GenerationConfig(max_new_tokens=32, temperature=0.0, batch_size=4)
    reference = backend.generate(prompts, config=config.model_copy(update=HF))
    assert backend.generate(prompts, config=config.model_copy(update=FP32)) == reference

    # bf16 and int8, teacher-forced on the float32 answers: argmax agreement and perplexity.
    rows = [backend._encode(backend.format_prompt(p), special=False)
            + backend._encode(r[0], special=False) for p, r in zip(prompts, reference)]
    ids, mask = backend._pad(rows, side="left")
    real, targets = mask[:, 1:].bool(), ids[:, 1:]
    decoders = {
        "fp32": CompactDecoder(backend.model, dtype=torch.float32),
        "bf16": CompactDecoder(backend.model, dtype=torch.bfloat16),
        "int8": CompactDecoder(backend.model, dtype=torch.bfloat16,
                               int8_calibration=backend._int8_calibration()),
    }
    logits = {name: d.logits(ids, mask)[:, :-1] for name, d in decoders.items()}
    nll = {name: -torch.log_softmax(value, -1).gather(-1, targets[..., None])[..., 0][real].mean()
           for name, value in logits.items()}
    measured = {}
    for name in ("bf16", "int8"):
        agreement = (logits["fp32"].argmax(-1) == logits[name].argmax(-1))[real].float().mean()
        measured[name] = (float(agreement), float((nll[name] - nll["fp32"]).exp()))
        print(f"{name} vs fp32: agreement {measured[name][0]:.3f}, "
              f"perplexity ratio {measured[name][1]:.4f}")
    # Stated tolerances: bf16 agreement >= 95%, perplexity +-1%; int8 (not exact)
    # agreement >= 85%, perplexity +-5%. int8 agreement depends on the CPU's kernels
    # (90.9% measured with AVX-512 VNNI, 88.3% here with AMX; docs/performance.md).
    agreement, ppl_ratio = measured["bf16"]
    assert agreement >= 0.95
    assert abs(ppl_ratio - 1) <= 0.01
    agreement, ppl_ratio = measured["int8"]
    assert agreement >= 0.85
    assert abs(ppl_ratio - 1) <= 0.05
