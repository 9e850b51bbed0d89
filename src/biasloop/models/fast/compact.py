"""A compact batched decoder for Llama-architecture models.

``transformers`` ``generate`` is general: per step it builds masks and cache
objects, runs logits processors and, for top-p, sorts the whole vocabulary of
every row. This decoder does only what the loop needs, on weights packed once
per model state:

* q/k/v and gate/up projections fused into one matmul each, in the compute dtype
  (bf16 where it is native, see :mod:`biasloop.models.precision`); the residual
  stream stays in float32, and in bf16 each row's top 64 logits are recomputed
  in float32 (a bf16 matmul output is too coarse to rank the top tokens);
* a LoRA adapter, when attached, merged into the packed weights;
* each prompt prefilled once, its KV cache copied to its ``num_samples`` rows;
* a preallocated KV cache, one token per step for the whole batch;
* top-p sampling over each row's top 256 tokens (widened to 4096, then the whole
  vocabulary, only for a row whose nucleus is wider), with one uniform draw per
  row and step from a seeded generator;
* finished rows dropped from the batch once a quarter of it is done.

With ``generation.quantization: int8`` the decoder-layer projections run as int8 x
int8 matmuls (:class:`~biasloop.models.fast.int8.Int8Linear`, calibrated smoothing in
:meth:`CompactDecoder._to_int8`), the rest as above.

In bf16 and int8 on a CPU, :mod:`biasloop.models.fast.native` C kernels, when given, run
everything in a decode step but the matmuls (attention, norms, RoPE, SiLU, int8
quantisation, top-p candidates): :meth:`CompactDecoder._fused_bf16_layers`,
:meth:`CompactDecoder._fused_int8_layers`.

Greedy decoding in float32 gives the same tokens as ``transformers``; bf16 and int8
agree on most tokens, each within a stated tolerance
(``tests/test_fast_generation.py``, ``docs/performance.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from biasloop.models.fast.int8 import Int8Linear, smoothing
from biasloop.models.fast.native import NativeKernels

#: ``config.model_type`` values the decoder reproduces exactly.
SUPPORTED_MODEL_TYPES = ("llama",)
#: RoPE variants whose frequencies change with the sequence length.
_DYNAMIC_ROPE = ("dynamic", "longrope")
#: Candidates kept before the top-p cut; rows whose nucleus is wider use a full sort.
TOP_P_CANDIDATES = 256
#: Drop finished rows once this share of the current batch is done.
DROP_FINISHED_SHARE = 0.25
#: In bf16, the logits of each row's top tokens are recomputed in float32 (see _refiner).
EXACT_TOP_LOGITS = 64


class UnsupportedModel(Exception):
    """The model's architecture or adapter is one the compact decoder does not reproduce."""


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why the compact decoder cannot run ``model``, or None when it can."""
    lm = _causal_lm(model)
    config = getattr(lm, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act {config.hidden_act!r}"
    if getattr(config, "mlp_bias", False):
        return "mlp_bias"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) in _DYNAMIC_ROPE:
        return f"rope_type {rope.get('rope_type')!r}"
    inner = getattr(lm, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "no model.layers / model.rotary_emb"
    for module in lm.modules():
        if hasattr(module, "base_layer") and not hasattr(module, "lora_A"):
            return f"peft adapter type {type(module).__name__}"
        if any(getattr(module, "use_dora", {}).values()):
            return "DoRA adapters"
    return None


def _effective_linear(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of a Linear, with any active, unmerged LoRA delta added."""
    base = getattr(module, "base_layer", None)
    if base is None:
        return module.weight.detach(), None if module.bias is None else module.bias.detach()
    weight = base.weight.detach()
    if not getattr(module, "merged", False) and not getattr(module, "disable_adapters", False):
        active = module.active_adapters
        for name in [active] if isinstance(active, str) else active:
            if name in module.lora_A:
                weight = weight + module.get_delta_weight(name).detach().to(weight.dtype)
    return weight, None if base.bias is None else base.bias.detach()


class DenseLinear:
    """``x @ weight.T + bias`` with the weight in the compute dtype.

    While ``input_absmax`` is a tensor, each call also records ``max |x[:, k]|`` per
    input channel ``k`` (the int8 calibration pass).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        self.weight = weight.to(dtype).contiguous()
        self.bias = None if bias is None else bias.to(dtype)
        self.input_absmax: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_absmax is not None:
            seen = x.detach().abs().reshape(-1, x.shape[-1]).amax(0).float()
            self.input_absmax = torch.maximum(self.input_absmax, seen)
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)


Linear = DenseLinear | Int8Linear

@dataclass
class _KVCache:
    """Preallocated keys and values of every layer.

    Keys are stored transposed, ``[layers, batch, kv_heads, head_dim, width]``, so a
    decode step's ``q @ K^T`` reads them in place; values are
    ``[layers, batch, kv_heads, width, head_dim]``.
    """

    keys_t: torch.Tensor
    values: torch.Tensor

    def rows(self, index: torch.Tensor) -> _KVCache:
        return _KVCache(self.keys_t.index_select(1, index), self.values.index_select(1, index))


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: Linear
    out: Linear
    post_norm: torch.Tensor
    gate_up: Linear
    down: Linear


class CompactDecoder:
    """Packed weights of one model state, and a batched prefill + decode loop."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        dtype: torch.dtype,
        int8_calibration: Sequence[torch.Tensor] | None = None,
        kernels: NativeKernels | None = None,
    ) -> None:
        """Pack ``model``'s current weights for computing in ``dtype``.

        With ``int8_calibration`` (token-id rows, e.g.
        :data:`~biasloop.models.fast.int8.CALIBRATION_TEXTS` encoded), the decoder-layer projections become :class:`Int8Linear` after
        SmoothQuant-style smoothing calibrated on those rows (see :meth:`_to_int8`);
        attention, the KV cache and the vocabulary head stay in ``dtype``.
        ``kernels`` are used in bf16 on a CPU (float32 keeps PyTorch ops, which
        reproduce transformers exactly); see :attr:`native_attention`.
        """
        reason = unsupported_reason(model)
        if reason is not None:
            raise UnsupportedModel(reason)
        lm = _causal_lm(model)
        config = lm.config
        self.dtype = dtype
        self.device = next(lm.parameters()).device
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.eps = config.rms_norm_eps
        self.intermediate = config.intermediate_size
        inner = lm.model
        with torch.no_grad():
            # The residual stream stays in float32 (a 135M model's bf16 residual visibly
            # degrades greedy text); only matmul inputs, weights and the KV cache use dtype.
            self.embed = inner.embed_tokens.weight.detach().float()
            # int8 packs float32 first: calibration and smoothing work on exact weights.
            pack_dtype = torch.float32 if int8_calibration is not None else dtype
            self.layers = [self._pack_layer(layer, pack_dtype) for layer in inner.layers]
            self.final_norm = inner.norm.weight.detach().float()
            head, _ = _effective_linear(lm.lm_head)
            self.lm_head: torch.Tensor | Linear = head.to(dtype)
            self.lm_head_fp32 = head.float()
            rotary = inner.rotary_emb
            self.inv_freq = rotary.inv_freq.detach().float()
            self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        # cos, sin in the compute dtype, then in float32
        self._rope_cache: tuple[torch.Tensor, ...] | None = None
        self.kernels = (
            kernels if dtype == torch.bfloat16 and self.device.type == "cpu" else None
        )
        #: Decode steps attend with the native kernel (else batched matmuls).
        self.native_attention = self.kernels is not None and self.kernels.attention_supported(
            n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, head_dim=self.head_dim
        )
        self.int8 = int8_calibration is not None
        self.fused_decode = False  # calibration (in _to_int8) runs the float32 layers
        if int8_calibration is not None:
            self._to_int8(int8_calibration)
        #: Decode steps run through the fused native kernels (:meth:`_fused_int8_layers`,
        #: :meth:`_fused_bf16_layers`) rather than :meth:`_layer`.
        self.fused_decode = self.native_attention and (not self.int8 or all(
            layer.qkv.bias is None and layer.out.bias is None for layer in self.layers
        ))

    def _to_int8(self, calibration: Sequence[torch.Tensor]) -> None:
        """Smooth, then quantise every decoder-layer projection to int8.

        Per-row int8 activations lose the small channels of a row that has a few
        large ones. Smoothing (SmoothQuant) moves that range into the weights: for a
        projection with calibration input max ``a_k`` and weight column max ``w_k``,
        ``s_k = a_k^alpha / w_k^(1-alpha)``; the weight's columns are multiplied by
        ``s`` and its input divided by ``s``, folded exactly into what produces it:
        the RMSNorm weight before q/k/v and gate/up, the up-projection rows before
        down (``silu(g) * (u / s)``). The attention output projection is quantised
        unsmoothed (its input comes from softmax-weighted values).
        """
        dense = [(layer.qkv, layer.gate_up, layer.down) for layer in self.layers]
        for linears in dense:
            for linear in linears:
                linear.input_absmax = torch.zeros(linear.weight.shape[1], device=self.device)
        for ids in calibration:
            row = ids.reshape(1, -1).to(self.device)
            self.logits(row, torch.ones_like(row))
        for layer, (qkv, gate_up, down) in zip(self.layers, dense, strict=True):
            inter = down.weight.shape[1]
            smooth = smoothing(down)
            gate_up.weight[inter:] /= smooth[:, None]
            down_weight = down.weight * smooth
            smooth = smoothing(qkv)
            layer.input_norm = layer.input_norm / smooth
            qkv_weight = qkv.weight * smooth
            smooth = smoothing(gate_up)
            layer.post_norm = layer.post_norm / smooth
            kernels = self.kernels
            layer.qkv = Int8Linear(qkv_weight, qkv.bias, kernels=kernels)
            layer.gate_up = Int8Linear(gate_up.weight * smooth, None, kernels=kernels)
            layer.down = Int8Linear(down_weight, None, kernels=kernels)
            layer.out = Int8Linear(layer.out.weight, layer.out.bias, kernels=kernels)
        # The vocabulary head ranks tokens in int8 too; each row's top logits are
        # still recomputed in float32 (_refiner), as after a bf16 head.
        self.lm_head = Int8Linear(self.lm_head_fp32, None, kernels=self.kernels)

    def _pack_layer(self, layer: torch.nn.Module, dtype: torch.dtype) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        parts = [_effective_linear(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
        biases = [b for _, b in parts]
        qkv_bias = None
        if any(b is not None for b in biases):
            sizes = [w.shape[0] for w, _ in parts]
            qkv_bias = torch.cat([
                b if b is not None else torch.zeros(n, device=w.device)
                for (w, b), n in zip(parts, sizes, strict=True)
            ])
        out, out_bias = _effective_linear(attn.o_proj)
        gate, _ = _effective_linear(mlp.gate_proj)
        up, _ = _effective_linear(mlp.up_proj)
        down, _ = _effective_linear(mlp.down_proj)
        return _Layer(
            input_norm=layer.input_layernorm.weight.detach().to(dtype),
            qkv=DenseLinear(torch.cat([w for w, _ in parts]), qkv_bias, dtype),
            out=DenseLinear(out, out_bias, dtype),
            post_norm=layer.post_attention_layernorm.weight.detach().to(dtype),
            gate_up=DenseLinear(torch.cat([gate, up]), None, dtype),
            down=DenseLinear(down, None, dtype),
        )

    # ------------------------------------------------------------------ building blocks

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm of the float32 residual ``x``, in the norm weight's dtype."""
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * x.to(weight.dtype)

    def _rope(
        self, positions: torch.Tensor, *, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for integer ``positions`` (any shape), in ``dtype`` (default: compute)."""
        needed = int(positions.max()) + 1
        if self._rope_cache is None or self._rope_cache[0].shape[0] < needed:
            size = max(needed, 512)
            steps = torch.arange(size, device=self.device, dtype=torch.float32)
            freqs = steps[:, None] * self.inv_freq.to(self.device)[None, :]
            table = torch.cat((freqs, freqs), dim=-1)
            cos, sin = table.cos() * self.rope_scaling, table.sin() * self.rope_scaling
            self._rope_cache = (cos.to(self.dtype), sin.to(self.dtype), cos, sin)
        cos, sin = self._rope_cache[2:] if dtype == torch.float32 else self._rope_cache[:2]
        return cos[positions], sin[positions]

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _layer(
        self,
        layer: _Layer,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys_t: torch.Tensor,
        values: torch.Tensor,
        start: int,
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        """One block on the float32 residual ``x`` ``[B, T, H]``.

        Writes K/V at cache columns ``start..start+T`` of this layer's ``keys_t``
        ``[B, kv_heads, head_dim, width]`` and ``values`` ``[B, kv_heads, width,
        head_dim]``. ``attn_mask`` is a bool
        ``[B, 1, T, start + T]`` (True = may attend) for a prefill (any T). For a decode
        step it is the bool ``[B, width]`` of valid cache columns with
        :attr:`native_attention`, else an additive float ``[B, 1, 1, width]`` bias: the
        batched matmuls attend over the whole (zero-initialised) cache width, because
        a strided slice of it would be copied at every layer and step.
        """
        batch, length, _ = x.shape
        nq, nkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = layer.qkv(self._norm(x, layer.input_norm)).to(self.dtype)
        qk = self._rotate(qkv[..., : (nq + nkv) * hd].view(batch, length, nq + nkv, hd), cos, sin)
        end = start + length
        keys_t[..., start:end] = qk[:, :, nq:].permute(0, 2, 3, 1)
        values[:, :, start:end] = qkv[..., (nq + nkv) * hd :].view(
            batch, length, nkv, hd
        ).transpose(1, 2)
        if attn_mask.dtype == torch.bool and attn_mask.dim() == 4:  # a prefill, any length
            q = qk[:, :, :nq].transpose(1, 2)
            attended = F.scaled_dot_product_attention(
                q, keys_t[..., :end].transpose(-1, -2), values[:, :, :end],
                attn_mask=attn_mask, enable_gqa=nq != nkv,
            ).transpose(1, 2)
        elif self.native_attention:
            assert self.kernels is not None
            attended = self.kernels.decode_attention(
                qk[:, 0, :nq], keys_t, values, attn_mask, n_cols=end, scale=hd**-0.5
            )
        else:
            # One query per row: a plain grouped matmul beats the flash kernel here; the
            # transposed key cache is read in place.
            q = qk[:, 0, :nq].reshape(batch, nkv, nq // nkv, hd)
            scores = torch.matmul(q, keys_t).float() * hd**-0.5 + attn_mask
            attended = torch.matmul(torch.softmax(scores, dim=-1).to(values.dtype), values)
        attended = attended.reshape(batch, length, nq * hd)
        x = x + layer.out(attended)
        gate, up = layer.gate_up(self._norm(x, layer.post_norm)).chunk(2, dim=-1)
        return x + layer.down(F.silu(gate) * up)

    def _forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        cache: _KVCache,
        start: int,
        attn_mask: torch.Tensor,
        *,
        every_position: bool = False,
    ) -> torch.Tensor:
        """Final-normed float32 states of the last position (or every position) of ``ids``."""
        # A decode step (one token, the [B, width] valid-column mask of _step_mask);
        # a one-token prefill has a [B, 1, 1, 1] mask and takes the layer path.
        if self.fused_decode and ids.shape[1] == 1 and attn_mask.dim() == 2:
            x = self.embed[ids[:, 0]]  # a copy, [B, H] float32, updated in place
            cos, sin = self._rope(positions[:, 0], dtype=torch.float32)
            layers = self._fused_int8_layers if self.int8 else self._fused_bf16_layers
            layers(x, cos, sin, cache, start, attn_mask)
        else:
            x = self.embed[ids]
            cos, sin = self._rope(positions)
            cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # broadcast over heads: [B, T, 1, D]
            for index, layer in enumerate(self.layers):
                x = self._layer(
                    layer, x, cos, sin, cache.keys_t[index], cache.values[index], start,
                    attn_mask,
                )
            x = x if every_position else x[:, -1]
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.final_norm

    def _fused_int8_layers(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: _KVCache,
        column: int,
        key_valid: torch.Tensor,
    ) -> None:
        """Every int8 layer of a decode step on the float32 residual ``x`` ``[B, H]``
        (updated in place), as :meth:`_layer` computes it, with the work between a
        layer's four int8 matmuls in four native kernels. RoPE (float32 ``cos``/``sin``
        ``[B, D]``) runs before q/k/v are rounded to bf16 (the op-by-op path rotates
        in bf16).
        """
        kernels = self.kernels
        assert kernels is not None
        scale = self.head_dim**-0.5
        normed = kernels.norm_quantize(x, self.layers[0].input_norm, self.eps)
        for index, layer in enumerate(self.layers):
            assert normed is not None
            keys_t, values = cache.keys_t[index], cache.values[index]
            qkv, out, gate_up, down = layer.qkv, layer.out, layer.gate_up, layer.down
            assert isinstance(qkv, Int8Linear) and isinstance(out, Int8Linear)
            assert isinstance(gate_up, Int8Linear) and isinstance(down, Int8Linear)
            quantised, row_scale = normed
            queries = kernels.rope_store(
                torch._int_mm(quantised, qkv.weight), qkv.scale, row_scale, cos=cos, sin=sin,
                keys_t=keys_t, values=values, column=column, n_heads=self.n_heads,
            )
            attended = kernels.decode_attention(
                queries, keys_t, values, key_valid, n_cols=column + 1, scale=scale
            )
            quantised, row_scale = kernels.quantize_rows(attended)
            quantised, row_scale = kernels.residual_norm_quantize(  # type: ignore[misc]
                torch._int_mm(quantised, out.weight), out.scale, row_scale, x,
                layer.post_norm, self.eps,
            )
            quantised, row_scale = kernels.silu_quantize(
                torch._int_mm(quantised, gate_up.weight), gate_up.scale, row_scale
            )
            following = self.layers[index + 1] if index + 1 < len(self.layers) else None
            normed = kernels.residual_norm_quantize(
                torch._int_mm(quantised, down.weight), down.scale, row_scale, x,
                None if following is None else following.input_norm, self.eps,
            )

    def _fused_bf16_layers(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: _KVCache,
        column: int,
        key_valid: torch.Tensor,
    ) -> None:
        """As :meth:`_fused_int8_layers` for bf16 layers: bf16 matmuls, the work between
        them in four native kernels (norms in float32 rounded once to bf16)."""
        kernels = self.kernels
        assert kernels is not None
        scale = self.head_dim**-0.5
        hidden = kernels.norm_bf16(x, self.layers[0].input_norm, self.eps)
        for index, layer in enumerate(self.layers):
            assert hidden is not None
            keys_t, values = cache.keys_t[index], cache.values[index]
            qkv, out, gate_up, down = layer.qkv, layer.out, layer.gate_up, layer.down
            assert isinstance(qkv, DenseLinear) and isinstance(out, DenseLinear)
            assert isinstance(gate_up, DenseLinear) and isinstance(down, DenseLinear)
            queries = kernels.rope_store(
                F.linear(hidden, qkv.weight, qkv.bias), None, None, cos=cos, sin=sin,
                keys_t=keys_t, values=values, column=column, n_heads=self.n_heads,
            )
            attended = kernels.decode_attention(
                queries, keys_t, values, key_valid, n_cols=column + 1, scale=scale
            )
            hidden = kernels.residual_norm_bf16(
                F.linear(attended.to(torch.bfloat16), out.weight, out.bias), x,
                layer.post_norm, self.eps,
            )
            assert hidden is not None
            hidden = kernels.silu_bf16(F.linear(hidden, gate_up.weight))
            following = self.layers[index + 1] if index + 1 < len(self.layers) else None
            hidden = kernels.residual_norm_bf16(
                F.linear(hidden, down.weight), x,
                None if following is None else following.input_norm, self.eps,
            )

    def _project(self, states: torch.Tensor) -> torch.Tensor:
        """float32 logits of normed ``states``, from a matmul in the compute dtype (or int8)."""
        if not isinstance(self.lm_head, torch.Tensor):
            return self.lm_head(states)
        return F.linear(states.to(self.dtype), self.lm_head).float()

    def _exact(self, states: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """float32 logits of ``states`` ``[B, H]`` for token ids ``candidates`` ``[B, K]``."""
        if self.kernels is not None:
            return self.kernels.gathered_dot(
                self.lm_head_fp32, states.contiguous(), candidates.contiguous()
            )
        return torch.matmul(self.lm_head_fp32[candidates], states.unsqueeze(-1)).squeeze(-1)

    @property
    def _approximate_head(self) -> bool:
        """The vocabulary head runs in bf16 or int8, so top logits need recomputing."""
        return self.dtype != torch.float32 or self.int8

    def _refiner(self, states: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """How :func:`sample` recomputes top logits exactly; None when they already are.

        A bf16 matmul rounds its output to bf16: a logit near 20 moves by up to
        0.06, which ties or swaps the top tokens and shifts their probabilities by
        several percent. So the projection runs in bf16 to rank the vocabulary,
        and each row's top candidates get float32 logits.
        """
        if not self._approximate_head:
            return None
        return lambda candidates: self._exact(states, candidates)

    def _new_cache(self, batch: int, width: int, *, zeroed: bool = False) -> _KVCache:
        """An uninitialised cache, or a zeroed one for decode steps (which read every column)."""
        shape = (len(self.layers), batch, self.n_kv_heads)
        options = {"dtype": self.dtype, "device": self.device}
        make = torch.zeros if zeroed else torch.empty
        return _KVCache(
            keys_t=make((*shape, self.head_dim, width), **options),
            values=make((*shape, width, self.head_dim), **options),
        )

    @staticmethod
    def _prefill_mask(mask: torch.Tensor) -> torch.Tensor:
        """Causal and padding mask ``[B, 1, T, T]``; a pad query sees itself (no empty rows)."""
        length = mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        allowed = causal[None] & mask.bool()[:, None, :]
        allowed |= torch.eye(length, dtype=torch.bool, device=mask.device)[None]
        return allowed[:, None]

    def _step_mask(self, key_valid: torch.Tensor) -> torch.Tensor:
        """A decode step's ``attn_mask`` (see :meth:`_layer`) from bool ``[B, width]``."""
        if self.native_attention:
            return key_valid
        bias = torch.zeros(key_valid.shape, device=self.device)
        bias.masked_fill_(~key_valid, float("-inf"))
        return bias[:, None, None, :]

    # ------------------------------------------------------------------ public

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """float32 logits ``[B, T, vocab]`` of a left-padded batch (teacher forcing)."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._new_cache(ids.shape[0], ids.shape[1])
        states = self._forward(
            ids, positions, cache, 0, self._prefill_mask(mask), every_position=True
        )
        logits = self._project(states)
        flat, flat_states = logits.view(-1, logits.shape[-1]), states.view(-1, states.shape[-1])
        if self._approximate_head:
            for rows in torch.arange(flat.shape[0], device=self.device).split(256):
                top = flat[rows].topk(EXACT_TOP_LOGITS, dim=-1).indices
                exact = self._exact(flat_states[rows], top)
                flat[rows] = flat[rows].scatter(-1, top, exact)
        return logits

    @torch.inference_mode()
    def generate(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        *,
        num_samples: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        eos_ids: Sequence[int],
        generator: torch.Generator | None,
    ) -> list[list[int]]:
        """New token ids (EOS excluded) per row, prompt-major: ``row = prompt * n + sample``.

        ``ids``/``mask`` are a left-padded ``[P, T]`` prompt batch. Each row draws one
        uniform number per step from ``generator`` by its original row index, so a
        row's draws do not depend on when other rows finish.
        """
        ids, mask = ids.to(self.device), mask.to(self.device)
        prompts, width = ids.shape
        rows = prompts * num_samples
        total = width + max_new_tokens
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        prompt_cache = self._new_cache(prompts, width)
        states = self._forward(ids, positions, prompt_cache, 0, self._prefill_mask(mask))

        # Copy each prompt's cache and state to its num_samples rows.
        expand = torch.arange(prompts, device=self.device).repeat_interleave(num_samples)
        cache = self._new_cache(rows, total, zeroed=True)
        copied = prompt_cache.rows(expand)
        cache.keys_t[..., :width] = copied.keys_t
        cache.values[:, :, :, :width] = copied.values
        del prompt_cache, copied
        logits = self._project(states).index_select(0, expand)
        states = states.index_select(0, expand)
        key_valid = torch.zeros(rows, total, dtype=torch.bool, device=self.device)
        key_valid[:, :width] = mask.bool().index_select(0, expand)
        next_position = positions[:, -1].index_select(0, expand) + 1

        eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=self.device)
        out = torch.full((rows, max_new_tokens), -1, dtype=torch.long, device=self.device)
        alive = torch.arange(rows, device=self.device)  # original index of each current row
        finished = torch.zeros(rows, dtype=torch.bool, device=self.device)
        for step in range(max_new_tokens):
            uniform = None
            if temperature > 0:
                uniform = torch.rand(rows, generator=generator, device=self.device)[alive]
            tokens = sample(logits, temperature=temperature, top_p=top_p, uniform=uniform,
                            refine=self._refiner(states), kernels=self.kernels)
            out[alive, step] = tokens
            finished[alive] |= torch.isin(tokens, eos) if eos.numel() else False
            if step == max_new_tokens - 1:
                break
            done = finished[alive]
            n_done = int(done.sum())
            if n_done == alive.numel():
                break
            if n_done and n_done >= DROP_FINISHED_SHARE * alive.numel():
                keep = (~done).nonzero().squeeze(1)
                alive, tokens = alive[keep], tokens[keep]
                cache = cache.rows(keep)
                key_valid, next_position = key_valid[keep], next_position[keep]
            column = width + step
            key_valid[:, column] = True
            states = self._forward(
                tokens[:, None], next_position[:, None], cache, column, self._step_mask(key_valid)
            )
            logits = self._project(states)
            next_position = next_position + 1

        eos_set = set(eos.tolist())
        result = []
        for row in out.tolist():
            kept = []
            for token in row:
                if token < 0 or token in eos_set:
                    break
                kept.append(token)
            result.append(kept)
        return result


def sample(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    uniform: torch.Tensor | None,
    refine: Callable[[torch.Tensor], torch.Tensor] | None = None,
    kernels: NativeKernels | None = None,
) -> torch.Tensor:
    """One token per row of float32 ``logits`` ``[B, V]``: argmax, or top-p at ``temperature``.

    The nucleus is the smallest set of most likely tokens whose mass reaches
    ``top_p`` (a token is kept while the mass strictly above it is < ``top_p``, as in
    transformers). The token is the inverse CDF of the renormalised nucleus at
    ``uniform`` (one number in [0, 1) per row). ``refine(ids)``, when given, returns
    exact logits for candidate ids ``[B, K]``; they replace the row's top logits.
    With ``kernels`` (and ``refine``), one native pass per row finds the candidates and
    the softmax normaliser (:meth:`NativeKernels.top_candidates`), and the normaliser is
    corrected for the refined logits. ``logits`` is overwritten (it is the step's
    scratch buffer).
    """
    vocab = logits.shape[-1]
    if temperature == 0:
        if refine is None:
            return logits.argmax(dim=-1)
        top = logits.topk(min(EXACT_TOP_LOGITS, vocab), dim=-1).indices
        return top.gather(-1, refine(top).argmax(dim=-1, keepdim=True)).squeeze(1)
    assert uniform is not None
    n = min(EXACT_TOP_LOGITS, TOP_P_CANDIDATES, vocab)
    native = kernels is not None and refine is not None and top_p < 1.0
    if native:
        assert kernels is not None and refine is not None
        values, indices, row_max, approximate_total = kernels.top_candidates(
            logits, k=min(TOP_P_CANDIDATES, vocab), first=n, temperature=temperature
        )
    elif refine is not None or top_p < 1.0:
        values, indices = logits.topk(min(TOP_P_CANDIDATES, vocab), dim=-1)
    if refine is not None:
        exact = refine(indices[:, :n])
        approximate = values[:, :n]
        logits.scatter_(-1, indices[:, :n], exact)
        values, order = torch.cat([exact, values[:, n:]], dim=-1).sort(dim=-1, descending=True)
        indices = indices.gather(-1, order)
    if top_p >= 1.0:
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
        choice = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1))
        return choice.squeeze(1).clamp(max=vocab - 1)
    if native:
        # The kernel's sum used the approximate top logits: swap in the exact ones,
        # sum_v exp((l_v - max) / T) with max the new row maximum.
        top = torch.maximum(row_max, values[:, :1]) / temperature
        rest = approximate_total - torch.exp(approximate / temperature - row_max / temperature
                                             ).sum(-1, keepdim=True)
        total = rest.clamp_(min=0) * torch.exp(row_max / temperature - top) + torch.exp(
            exact / temperature - top).sum(-1, keepdim=True)

        def row_weights(rows: torch.Tensor) -> torch.Tensor:
            return torch.exp(logits[rows] / temperature - top[rows])
    else:
        # Unnormalised probabilities exp(l / T - max), in place: no full-vocabulary copies.
        scaled = logits.div_(temperature)
        top = scaled.amax(dim=-1, keepdim=True)
        weights = scaled.sub_(top).exp_()
        total = weights.sum(dim=-1, keepdim=True)

        def row_weights(rows: torch.Tensor) -> torch.Tensor:
            return weights[rows]
    probs = torch.exp(values / temperature - top) / total
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    pending = torch.arange(logits.shape[0], device=logits.device)
    # Widen the candidates for rows whose nucleus reaches past them: 256, 4096, all.
    for width in (TOP_P_CANDIDATES, 4096, vocab):
        if width > TOP_P_CANDIDATES:
            width = min(width, vocab)
            values, indices = row_weights(pending).topk(width, dim=-1)
            probs = values / total[pending]
        covered = (probs.sum(-1) >= top_p) | (width >= vocab)
        done = covered.nonzero().squeeze(1)
        if done.numel():
            tokens[pending[done]] = _nucleus_draw(
                probs[done], indices[done], top_p, uniform[pending[done]]
            )
        pending = pending[~covered]
        if not pending.numel() or width >= vocab:
            break
    return tokens


def _nucleus_draw(
    values: torch.Tensor, indices: torch.Tensor, top_p: float, uniform: torch.Tensor
) -> torch.Tensor:
    """Inverse-CDF draw within the nucleus of descending ``values`` ``[B, K]``."""
    above = values.cumsum(-1) - values  # mass strictly above each token
    kept = torch.where(above < top_p, values, torch.zeros_like(values))
    cdf = kept.cumsum(-1)
    choice = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1))
    choice = choice.clamp(max=values.shape[-1] - 1)
    return indices.gather(-1, choice).squeeze(1)

