"""The compact decoder's native C kernels (biasloop.models.fast.native), compiled for real.

Each kernel is checked against an independent computation: attention against a
float64 softmax over the same bf16 inputs, quantisation byte for byte against the
PyTorch ops it replaces. The loader is checked with a working and a broken compiler.
"""

from __future__ import annotations

import logging

import pytest
import torch

from biasloop.config.schema import GenerationConfig
from biasloop.errors import ConfigError
from biasloop.models.fast import compact, native
from biasloop.models.fast.compact import CompactDecoder

PROMPTS = ["Hello", "What is the capital of France?", "x", "Name three colours."]
SAMPLE = GenerationConfig(max_new_tokens=12, temperature=1.0, top_p=0.9, batch_size=2)


@pytest.fixture(scope="module")
def kernels() -> native.NativeKernels:
    native.reset_for_tests()
    return native.load_native_kernels()


@pytest.fixture
def broken_compiler(monkeypatch, tmp_path):
    """An empty kernel cache and a C compiler that does not exist."""
    monkeypatch.setenv("BIASLOOP_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    native.reset_for_tests()
    yield
    native.reset_for_tests()


def reference_attention(query, keys_t, values, valid, n_cols, scale):
    """float64 softmax attention over the first ``n_cols`` cache columns."""
    batch, n_heads, _ = query.shape
    n_kv = keys_t.shape[1]
    keys = keys_t[..., :n_cols].double().repeat_interleave(n_heads // n_kv, dim=1)
    vals = values[:, :, :n_cols].double().repeat_interleave(n_heads // n_kv, dim=1)
    scores = torch.einsum("bhd,bhdt->bht", query.double(), keys) * scale
    scores = scores.masked_fill(~valid[:, None, :n_cols], float("-inf"))
    return torch.einsum("bht,bhtd->bhd", scores.softmax(-1), vals).reshape(batch, -1)


@pytest.mark.parametrize(
    ("n_heads", "n_kv_heads", "head_dim", "n_cols", "width"),
    [(9, 3, 64, 75, 110), (4, 4, 16, 16, 16), (8, 1, 128, 33, 40), (6, 2, 32, 1, 7),
     (16, 2, 64, 130, 130)],
)
def test_decode_attention_equals_a_float64_softmax(kernels, n_heads, n_kv_heads, head_dim,
                                                   n_cols, width):
    generator = torch.Generator().manual_seed(n_cols)
    batch = 5

    def bf16(*shape):
        return (torch.randn(*shape, generator=generator) * 2).to(torch.bfloat16)

    # Query heads are a strided slice of a wider row, as in the decoder's qkv output.
    packed = bf16(batch, n_heads + 2 * n_kv_heads, head_dim)
    query = packed[:, :n_heads]
    keys_t, values = bf16(batch, n_kv_heads, head_dim, width), bf16(batch, n_kv_heads, width,
                                                                    head_dim)
    valid = torch.rand(batch, width, generator=generator) > 0.3
    valid[:, n_cols - 1] = True  # the current token always sees itself
    valid[0, :n_cols] = True
    scale = head_dim**-0.5
    got = kernels.decode_attention(query, keys_t, values, valid, n_cols=n_cols, scale=scale)
    expected = reference_attention(query, keys_t, values, valid, n_cols, scale)
    assert got.dtype == torch.float32 and got.shape == (batch, n_heads * head_dim)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5)
    # Columns past n_cols are not attended, whatever they hold.
    keys_t[..., n_cols:] = 1e4
    again = kernels.decode_attention(query, keys_t, values, valid, n_cols=n_cols, scale=scale)
    assert torch.equal(again, got)


def test_decode_attention_refuses_layouts_it_cannot_read(kernels):
    assert not kernels.attention_supported(n_heads=9, n_kv_heads=1, head_dim=64)  # group 9
    assert not kernels.attention_supported(n_heads=4, n_kv_heads=4, head_dim=80)
    keys_t = torch.zeros(2, 1, 16, 8, dtype=torch.bfloat16)
    values = torch.zeros(2, 1, 8, 16, dtype=torch.bfloat16)
    valid = torch.ones(2, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="layout or dtype"):
        kernels.decode_attention(torch.zeros(2, 1, 16), keys_t, values, valid, n_cols=3,
                                 scale=1.0)
    with pytest.raises(ValueError, match="layout or dtype"):  # mask shorter than n_cols
        kernels.decode_attention(torch.zeros(2, 1, 16, dtype=torch.bfloat16), keys_t, values,
                                 valid[:, :2], n_cols=3, scale=1.0)
    with pytest.raises(ValueError, match="layout or dtype"):
        kernels.decode_attention(torch.zeros(2, 1, 16, dtype=torch.bfloat16), keys_t, values,
                                 valid, n_cols=9, scale=1.0)  # past the cache width


def test_int8_quantisation_gives_the_bytes_of_the_pytorch_ops(kernels):
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(40, 70, generator=generator)
    bias = torch.randn(40, generator=generator)
    x = torch.randn(3, 11, 70, generator=generator) * torch.logspace(-3, 3, 70)
    x[0, 0] = 0.0  # an all-zero row uses the 1e-12 floor
    x[1, 2, 5] = 1e6  # an outlier
    plain = compact.Int8Linear(weight, bias)
    fused = compact.Int8Linear(weight, bias, kernels=kernels)
    assert torch.equal(fused(x), plain(x))
    strided = x[:, :, :64]  # rows 70 floats apart: read in place
    assert torch.equal(
        compact.Int8Linear(weight[:, :64], None, kernels=kernels)(strided),
        compact.Int8Linear(weight[:, :64], None)(strided),
    )
    quantised, row_scale = kernels.quantize_rows(x[0])
    assert quantised.dtype == torch.int8 and int(quantised.abs().max()) == 127
    assert row_scale[0, 0] == torch.tensor(1e-12) / 127


def test_bf16_decoder_uses_the_kernels_and_float32_does_not(tiny_backend, kernels):
    model = tiny_backend.model
    assert CompactDecoder(model, dtype=torch.bfloat16, kernels=kernels).native_attention
    full = CompactDecoder(model, dtype=torch.float32, kernels=kernels)
    assert full.kernels is None and not full.native_attention


def decode_step_states(decoder: CompactDecoder, ids: torch.Tensor, mask: torch.Tensor):
    """Final states of one decode step after prefilling ``ids`` (as generate does)."""
    prompts, width = ids.shape
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = decoder._new_cache(prompts, width + 1, zeroed=True)
    decoder._forward(ids, positions, cache, 0, decoder._prefill_mask(mask))
    valid = torch.cat([mask.bool(), torch.ones(prompts, 1, dtype=torch.bool)], dim=1)
    return decoder._forward(ids[:, -1:], positions[:, -1:] + 1, cache, width,
                            decoder._step_mask(valid))


def test_a_decode_step_with_the_kernels_is_as_close_to_float32_as_pytorch(tiny_backend,
                                                                          kernels):
    ids, mask = tiny_backend._pad(
        [tiny_backend._encode(tiny_backend.format_prompt(p), special=False) for p in PROMPTS],
        side="left",
    )
    model = tiny_backend.model
    exact = decode_step_states(CompactDecoder(model, dtype=torch.float32), ids, mask)
    errors = {}
    for name, chosen in (("torch", None), ("native", kernels), ("layers", kernels)):
        decoder = CompactDecoder(model, dtype=torch.bfloat16, kernels=chosen)
        assert decoder.native_attention == decoder.fused_decode == (chosen is not None)
        decoder.fused_decode = name == "native"  # "layers": native attention in _layer
        states = decode_step_states(decoder, ids, mask)
        errors[name] = float((states - exact).abs().max() / exact.abs().max())
    print(f"tiny-random decode step, max error vs float32: {errors}")
    assert errors["native"] < 0.02  # bf16 projections and cache, float32 attention
    assert errors["native"] <= 1.5 * errors["torch"]
    assert errors["layers"] <= 1.5 * errors["torch"]


def test_the_fused_int8_step_computes_what_the_int8_layers_do(tiny_backend, kernels):
    ids, mask = tiny_backend._pad(
        [tiny_backend._encode(tiny_backend.format_prompt(p), special=False) for p in PROMPTS],
        side="left",
    )
    model, calibration = tiny_backend.model, tiny_backend._int8_calibration()
    exact = decode_step_states(CompactDecoder(model, dtype=torch.float32), ids, mask)
    fused = CompactDecoder(model, dtype=torch.bfloat16, int8_calibration=calibration,
                           kernels=kernels)
    assert fused.fused_decode
    states = {"fused": decode_step_states(fused, ids, mask)}
    fused.fused_decode = False  # the same packed weights, layer by layer
    states["layers"] = decode_step_states(fused, ids, mask)
    plain = CompactDecoder(model, dtype=torch.bfloat16, int8_calibration=calibration)
    assert not plain.fused_decode
    states["torch"] = decode_step_states(plain, ids, mask)
    errors = {name: float((value - exact).abs().max() / exact.abs().max())
              for name, value in states.items()}
    print(f"tiny-random int8 decode step, max error vs float32: {errors}")
    gap = float((states["fused"] - states["layers"]).abs().max() / exact.abs().max())
    assert gap < 0.01  # float32 RoPE and summation order, int8 rounding flips
    assert errors["fused"] <= 1.5 * errors["torch"]


def test_one_token_prompts_keep_their_shape_with_the_fused_step(tiny_backend, kernels):
    ids, mask = torch.tensor([[5], [7]]), torch.ones(2, 1, dtype=torch.long)
    for chosen in (None, kernels):
        decoder = CompactDecoder(tiny_backend.model, dtype=torch.bfloat16, kernels=chosen)
        assert decoder.logits(ids, mask).shape == (2, 1, tiny_backend.model.config.vocab_size)
        out = decoder.generate(ids, mask, num_samples=2, max_new_tokens=3, temperature=1.0,
                               top_p=0.9, eos_ids=[], generator=torch.Generator().manual_seed(0))
        assert [len(row) for row in out] == [3] * 4


def test_fused_kernels_check_their_inputs(kernels):
    x = torch.zeros(2, 8)
    with pytest.raises(ValueError, match="weight: expected contiguous torch.float32 \\[8\\]"):
        kernels.norm_quantize(x, torch.ones(7), 1e-6)
    with pytest.raises(ValueError, match="acc: expected contiguous torch.int32"):
        kernels.silu_quantize(torch.zeros(2, 8), torch.ones(8), torch.ones(2, 1))
    with pytest.raises(ValueError, match="needs an even width, got 5"):
        kernels.silu_bf16(torch.zeros(2, 5, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="top_candidates: k 0"):
        kernels.top_candidates(x, k=0, first=0, temperature=1.0)
    keys_t = torch.zeros(2, 1, 4, 3, dtype=torch.bfloat16)
    values = torch.zeros(2, 1, 3, 4, dtype=torch.bfloat16)
    table = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="column 3 of width 3"):
        kernels.rope_store(torch.zeros(2, 12, dtype=torch.int32), torch.ones(12),
                           torch.ones(2, 1), cos=table, sin=table, keys_t=keys_t,
                           values=values, column=3, n_heads=1)


def test_fused_kernels_equal_their_formulas(kernels):
    """norm, SiLU and RoPE kernels against the same formulas in float64."""
    generator = torch.Generator().manual_seed(2)
    rows, hidden, inter = 3, 40, 24
    x = torch.randn(rows, hidden, generator=generator) * 3
    weight = torch.rand(hidden, generator=generator) + 0.5
    eps = 1e-5

    def dequantised(quantised, row_scale):
        return quantised.double() * row_scale.double()

    normed = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + eps)
    normed = normed * weight.double()
    got = dequantised(*kernels.norm_quantize(x, weight, eps))
    step = normed.abs().amax(-1, keepdim=True) / 127
    assert ((got - normed).abs() <= 0.5001 * step).all()  # within half a quantisation step
    # Residual update, then the norm of the new residual.
    acc = torch.randint(-5000, 5000, (rows, hidden), dtype=torch.int32, generator=generator)
    col, row = torch.rand(hidden, generator=generator), torch.rand(rows, 1, generator=generator)
    residual = x.clone()
    result = kernels.residual_norm_quantize(acc, col, row, residual, None, eps)
    assert result is None
    assert torch.allclose(residual.double(), x.double() + acc.double() * col.double()
                          * row.double(), rtol=1e-6, atol=1e-4)
    # SiLU(gate) * up.
    acc = torch.randint(-3000, 3000, (rows, 2 * inter), dtype=torch.int32, generator=generator)
    col = torch.rand(2 * inter, generator=generator) * 4e-3
    values = acc.double() * col.double() * row.double()
    gate, up = values[:, :inter], values[:, inter:]
    expected = gate * torch.sigmoid(gate) * up
    got = dequantised(*kernels.silu_quantize(acc, col, row))
    step = expected.abs().amax(-1, keepdim=True) / 127
    assert ((got - expected).abs() <= 0.5001 * step + 1e-6).all()
    # RoPE: q rotated into the result, k rotated and v copied into cache column 2.
    n_heads, n_kv, head_dim, width = 2, 1, 8, 5
    cols = (n_heads + 2 * n_kv) * head_dim
    acc = torch.randint(-100, 100, (rows, cols), dtype=torch.int32, generator=generator)
    col, row = torch.rand(cols, generator=generator), torch.rand(rows, 1, generator=generator)
    angles = torch.rand(rows, head_dim // 2, generator=generator) * 6
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    keys_t = torch.zeros(rows, n_kv, head_dim, width, dtype=torch.bfloat16)
    cache_values = torch.zeros(rows, n_kv, width, head_dim, dtype=torch.bfloat16)
    queries = kernels.rope_store(acc, col, row, cos=cos, sin=sin, keys_t=keys_t,
                                 values=cache_values, column=2, n_heads=n_heads)
    heads = (acc.double() * col.double() * row.double()).view(rows, -1, head_dim)
    half = head_dim // 2
    rotated = heads * cos.double()[:, None] + torch.cat(
        [-heads[..., half:], heads[..., :half]], -1) * sin.double()[:, None]
    assert torch.allclose(queries.double(), rotated[:, :n_heads], rtol=1e-2, atol=1e-2)
    assert torch.allclose(keys_t[..., 2].double(), rotated[:, n_heads:n_heads + n_kv],
                          rtol=1e-2, atol=1e-2)
    assert torch.allclose(cache_values[:, :, 2].double(), heads[:, n_heads + n_kv:],
                          rtol=1e-2, atol=1e-2)
    assert keys_t[..., [0, 1, 3, 4]].abs().sum() == 0  # other columns untouched
    # The same from a bf16 q/k/v, as a bf16 matmul returns it.
    halves = (acc.double() * col.double() * row.double()).bfloat16()
    again = kernels.rope_store(halves, None, None, cos=cos, sin=sin, keys_t=keys_t,
                               values=cache_values, column=4, n_heads=n_heads)
    heads = halves.double().view(rows, -1, head_dim)
    rotated = heads * cos.double()[:, None] + torch.cat(
        [-heads[..., half:], heads[..., :half]], -1) * sin.double()[:, None]
    assert torch.allclose(again.double(), rotated[:, :n_heads], rtol=1e-2, atol=1e-2)
    assert torch.equal(cache_values[:, :, 4], halves.view(rows, -1, head_dim)[:, -n_kv:])


def test_bf16_step_kernels_equal_their_formulas(kernels):
    generator = torch.Generator().manual_seed(6)
    rows, hidden, inter, eps = 3, 40, 24, 1e-5
    x = torch.randn(rows, hidden, generator=generator) * 3
    weight = (torch.rand(hidden, generator=generator) + 0.5).bfloat16()

    def norm(values):
        values = values.double()
        return values * torch.rsqrt(values.pow(2).mean(-1, keepdim=True) + eps) * weight.double()

    def close(got, expected):  # bf16 keeps 8 significant bits
        return torch.allclose(got.double(), expected, rtol=8e-3, atol=1e-3)

    assert close(kernels.norm_bf16(x, weight, eps), norm(x))
    delta = torch.randn(rows, hidden, generator=generator).bfloat16()
    residual = x.clone()
    got = kernels.residual_norm_bf16(delta, residual, weight, eps)
    assert torch.equal(residual, x + delta.float())
    assert close(got, norm(residual))
    assert kernels.residual_norm_bf16(delta, residual, None, eps) is None
    gate_up = (torch.randn(rows, 2 * inter + 2, generator=generator) * 4).bfloat16()
    gate, up = gate_up.double()[:, : inter + 1], gate_up.double()[:, inter + 1:]
    assert close(kernels.silu_bf16(gate_up), gate * torch.sigmoid(gate) * up)


def test_top_candidates_are_the_topk_with_the_softmax_normaliser(kernels):
    generator = torch.Generator().manual_seed(3)
    shapes = {
        "spread": torch.randn(16, 5000, generator=generator) * 4,
        "flat": torch.randn(16, 5000, generator=generator) * 0.01,  # every logit gathered
        "ties": torch.randint(0, 4, (16, 5000), generator=generator).float(),
        "short": torch.randn(3, 100, generator=generator),  # k = the whole vocabulary
    }
    for name, logits in shapes.items():
        k = min(256, logits.shape[1])
        values, indices, row_max, total = kernels.top_candidates(logits, k=k, first=64,
                                                                 temperature=0.7)
        expected = logits.topk(k).values
        assert torch.equal(values.sort(-1, descending=True).values, expected), name
        assert torch.equal(values[:, :64].sort(-1, descending=True).values, expected[:, :64])
        assert torch.equal(logits.gather(-1, indices), values), name
        assert all(len(set(row)) == k for row in indices.tolist()), name
        assert torch.equal(row_max[:, 0], logits.amax(-1))
        reference = ((logits.double() - logits.double().amax(-1, keepdim=True)) / 0.7).exp()
        assert torch.allclose(total[:, 0].double(), reference.sum(-1), rtol=1e-5), name


def test_gathered_dot_equals_gather_then_matmul(kernels):
    generator = torch.Generator().manual_seed(5)
    table, states = torch.randn(300, 40, generator=generator), torch.randn(6, 40, generator=generator)
    ids = torch.randint(0, 300, (6, 9), generator=generator)
    expected = torch.matmul(table.double()[ids], states.double().unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(kernels.gathered_dot(table, states, ids).double(), expected,
                          rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="token ids outside 0..299"):
        kernels.gathered_dot(table, states, ids + 300)


@pytest.mark.parametrize("spread", [6.0, 0.05])  # a peaked and a flat (widened) nucleus
def test_native_top_p_draws_the_tokens_of_the_pytorch_path(kernels, spread):
    generator = torch.Generator().manual_seed(4)
    exact = torch.randn(64, 3000, generator=generator) * spread
    rough = exact.bfloat16().float()  # as a bf16 head would give

    def refine(candidates):
        return exact.gather(-1, candidates)

    uniform = torch.rand(64, generator=generator)
    options = {"temperature": 0.8, "top_p": 0.95, "uniform": uniform, "refine": refine}
    plain = compact.sample(rough.clone(), **options)
    fast = compact.sample(rough.clone(), kernels=kernels, **options)
    # Only the normaliser's summation order differs: a token changes only when a uniform
    # falls within ~1e-6 of a boundary of the cumulative distribution.
    assert (plain == fast).float().mean() >= 0.98


def test_backend_logs_the_kernel_path_and_reuses_the_compiled_library(tiny_backend, caplog,
                                                                      kernels):
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=2, seed=1)
    assert "compact decoder (bfloat16, native kernels)" in caplog.text
    assert "compiling the native decode kernels" not in caplog.text  # kept from the fixture
    native.reset_for_tests()  # a new process: the cached file is loaded, not rebuilt
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        assert native.load_native_kernels().path == kernels.path
    assert "compiling" not in caplog.text
    torch_only = SAMPLE.model_copy(update={"kernels": "torch"})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        tiny_backend.generate(PROMPTS, config=torch_only, num_samples=2, seed=1)
    assert "compact decoder (bfloat16, PyTorch ops)" in caplog.text


def test_without_a_compiler_auto_falls_back_and_native_is_refused(tiny_backend, caplog,
                                                                  broken_compiler):
    with pytest.raises(native.NativeKernelsUnavailable, match="no-such-cc") as err:
        native.load_native_kernels()
    assert "\n" not in str(err.value)
    with caplog.at_level(logging.INFO, logger="biasloop.models"):
        texts = tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=2, seed=1)
    assert len(texts) == len(PROMPTS)
    assert "native decode kernels unavailable" in caplog.text
    assert "compact decoder (bfloat16, PyTorch ops)" in caplog.text
    required = SAMPLE.model_copy(update={"kernels": "native"})
    with pytest.raises(ConfigError, match="generation.kernels = 'native'") as err:
        tiny_backend.generate(PROMPTS, config=required)
    assert "\n" not in str(err.value) and "valid here: auto or torch" in str(err.value)


def test_a_compiler_error_is_one_line_and_leaves_no_file(monkeypatch, tmp_path,
                                                         broken_compiler):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake-cc 1.0; exit 0; }\n"
                    "echo 'native_kernels.c:1: error: no vector extensions' >&2\n"
                    "echo 'second line' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(native.NativeKernelsUnavailable,
                       match="could not compile native_kernels.c: .*no vector extensions") as err:
        native.load_native_kernels()
    assert "second line" not in str(err.value)
    assert list((tmp_path / "kernels").iterdir()) == []  # the temporary file is gone


def test_native_kernels_with_the_transformers_engine_are_refused_when_the_config_loads():
    from biasloop.config import load_config

    with pytest.raises(ConfigError, match="kernels 'native' needs the compact") as err:
        load_config(None, ["generation.kernels=native", "generation.engine=transformers"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="generation.kernels"):
        load_config(None, ["generation.kernels=fast"])
