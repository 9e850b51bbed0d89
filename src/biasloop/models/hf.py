"""A :class:`ModelBackend` over any Hugging Face causal LM and its tokenizer.

Every other backend (the embedded SmolLM2, the tiny random model, hub models and
local folders) is an :class:`HFBackend`; they differ only in how the model and
tokenizer are obtained (see :mod:`biasloop.models.loading`).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F

from biasloop.config.schema import GenerationConfig, ModelConfig, TrainingConfig
from biasloop.errors import BiasloopError, ConfigError
from biasloop.io import staging_dir
from biasloop.models.allocator import keep_freed_memory
from biasloop.models.base import ExtraLoss, ModelBackend, TrainExample, TrainResult
from biasloop.models.precision import resolve_compute_dtype
from biasloop.seeding import derive_seed, rng

logger = logging.getLogger("biasloop.models")

STATE_FILE = "biasloop_state.json"
_IGNORE = -100
#: Architectures whose causal-LM head is a plain ``lm_head(model(...))`` (no soft-capping
#: or logit scale), so training can compute logits at the target positions only.
_PLAIN_HEAD_TYPES = ("llama", "mistral", "qwen2", "qwen3")
T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def _track(items: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T]:
    """Iterate ``items``, showing a rich progress bar when ``enabled``."""
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextmanager
def _no_autocast() -> Iterator[None]:
    yield


@contextmanager
def _training_attention(device: torch.device) -> Iterator[None]:
    """On CPU, composite (math) attention: its backward is several times faster than the
    fused CPU flash kernel's at the loop's short training sequences (~5x measured)."""
    if device.type != "cpu":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """Hide peft's call of transformers' deprecated ``is_gradient_checkpointing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        yield


def torch_dtype_kwargs(name: str) -> dict[str, torch.dtype]:
    """``from_pretrained`` keyword for ``ModelConfig.dtype`` (``torch_dtype`` before 4.56)."""
    import transformers

    dtype = torch.bfloat16 if name == "bfloat16" else torch.float32
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def _chunks(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


class _TrainOutputs:
    """What an ``extra_loss`` hook sees when training skips the full logits.

    ``hidden_states`` are the model's (embeddings, then every layer); ``logits`` are
    computed for every position only if the hook asks for them.
    """

    def __init__(self, hidden_states: Any, last_hidden_state: torch.Tensor, head: Any) -> None:
        self.hidden_states = hidden_states
        self.last_hidden_state = last_hidden_state
        self._head = head

    @property
    def logits(self) -> torch.Tensor:
        return self._head(self.last_hidden_state)


# --------------------------------------------------------------------------- backend


class HFBackend(ModelBackend):
    """A transformers causal LM + tokenizer behind the :class:`ModelBackend` interface.

    The backend owns its model: ``train`` changes it in place (a LoRA adapter or
    the full weights), ``reset_to_base`` returns it to the weights it was built
    with, without touching the disk.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        config: ModelConfig | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config or ModelConfig()
        self.name = name or self.config.name
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            # Decoder-only tokenizers often have no pad token; EOS is the usual stand-in
            # (padding positions are masked, so which id it is does not matter).
            tokenizer.pad_token = tokenizer.eos_token
        self.use_chat_template = bool(
            self.config.chat_template and getattr(tokenizer, "chat_template", None)
        )
        self.model.eval()
        self.model.requires_grad_(False)
        if self.device.type == "cpu":
            keep_freed_memory()  # see biasloop.models.allocator: no page faults per step
        self._forward_params = set(inspect.signature(self._base_model().forward).parameters)
        # What train() has done to the base weights: nothing, a LoRA adapter, or full.
        self._mode: Literal["base", "lora", "full"] = "base"
        self._lora_signature: tuple[Any, ...] | None = None
        self._base_state: dict[str, torch.Tensor] | None = None
        # The compact decoder of the current weights (rebuilt when they change),
        # the generation path last logged, and the training autocast dtype.
        self._decoder: Any = None
        self._decoder_key: tuple[Any, ...] | None = None
        self._warned_kernels = False
        self._generation_path: str | None = None
        self._autocast_dtype: torch.dtype | None = None

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def trained_method(self) -> Literal["base", "lora", "full"]:
        """``base`` (M_0), ``lora`` (an adapter is attached) or ``full`` (weights changed)."""
        return self._mode

    def _base_model(self) -> torch.nn.Module:
        """The transformers model under a possible peft wrapper."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if callable(get_base) else self.model

    def _eos_ids(self) -> list[int]:
        eos = getattr(self._base_model().generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return [i for i in ids if i is not None]

    # ------------------------------------------------------------------ formatting

    def format_prompt(self, prompt: str, *, chat: bool = True) -> str:
        """The prompt as the model sees it: wrapped in the chat template when enabled."""
        if chat and self.use_chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
        return prompt

    def _encode(self, text: str, *, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _encode_prompt(self, prompt: str, *, chat: bool = True) -> list[int]:
        """Prompt token ids; a templated prompt already carries its special tokens."""
        templated = chat and self.use_chat_template
        ids = self._encode(self.format_prompt(prompt, chat=chat), special=not templated)
        if not ids:
            # An empty context still needs one token to predict from (as lm-eval does).
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else self._eos_ids()[0]]
        return ids

    def _pad(
        self, rows: Sequence[Sequence[int]], *, side: Literal["left", "right"]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad id lists to one ``[B, T]`` tensor plus its attention mask."""
        width = max(len(r) for r in rows)
        pad_id = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[i, span] = torch.tensor(row, dtype=torch.long)
            mask[i, span] = 1
        return ids.to(self.device), mask.to(self.device)

    def _left_padded_forward(
        self, ids: torch.Tensor, mask: torch.Tensor, *, keep: int | None = None, **kwargs: Any
    ) -> Any:
        """Forward a left-padded batch with positions counted from each row's first token."""
        extra: dict[str, Any] = dict(kwargs)
        if "position_ids" in self._forward_params:
            extra["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        if keep is not None and "logits_to_keep" in self._forward_params:
            extra["logits_to_keep"] = keep
        return self.model(input_ids=ids, attention_mask=mask, **extra)

    # ------------------------------------------------------------------ generate

    def _generation_kwargs(
        self, config: GenerationConfig, num_return_sequences: int
    ) -> dict[str, Any]:
        from transformers import GenerationConfig as HFGenerationConfig

        greedy = config.temperature == 0
        # A fresh config: only temperature and top-p shape sampling (no hidden top-k=50
        # or repetition penalty from the model's own generation_config.json).
        gen = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else config.temperature,
            top_p=None if greedy else config.top_p,
            top_k=None if greedy else 0,
            num_return_sequences=num_return_sequences,
            eos_token_id=self._eos_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        return {"generation_config": gen}

    def generation_path(self, config: GenerationConfig) -> Any:
        """The compact decoder for ``config``, or None for transformers ``generate``.

        ``generation.engine``: ``transformers`` always uses ``generate``; ``compact``
        requires the compact decoder (a ConfigError names what the model lacks);
        ``auto`` uses it when the model supports it. The decoder is rebuilt when the
        weights change (training, loading, reset). ``generation.kernels`` chooses its
        CPU kernels (:meth:`_native_kernels`). One log line names the path.
        """
        from biasloop.models.compact import CompactDecoder, unsupported_reason

        decoder = None
        int8 = config.quantization == "int8"
        if int8 and config.engine == "transformers":
            raise ConfigError(
                "generation.quantization = 'int8' needs the compact decoder, but "
                "generation.engine = 'transformers'; valid: engine auto or compact, or "
                "quantization none"
            )
        if int8 and self.device.type != "cpu":
            raise ConfigError(
                f"generation.quantization = 'int8' runs on the CPU only, not on "
                f"{self.device}; valid here: none"
            )
        if config.engine == "transformers":
            label = "transformers generate (generation.engine = transformers)"
        elif (reason := unsupported_reason(self.model)) is not None:
            if config.engine == "compact" or int8:
                setting = "quantization = 'int8'" if int8 else "engine = 'compact'"
                raise ConfigError(
                    f"generation.{setting} cannot run model {self.name!r}: the compact "
                    f"decoder does not support {reason}; valid here: engine auto or "
                    "transformers with quantization none"
                )
            label = f"transformers generate (compact decoder unsupported: {reason})"
        else:
            dtype = resolve_compute_dtype(
                config.compute_dtype, model_dtype=self._base_model().dtype, device=self.device
            )
            kernels = self._native_kernels(config.kernels, dtype)
            key = (id(self.model), dtype, int8, kernels is not None, self._weights_version())
            if self._decoder_key != key:
                self._decoder = None  # free the old packed weights first
                self._decoder = CompactDecoder(
                    self.model, dtype=dtype,
                    int8_calibration=self._int8_calibration() if int8 else None,
                    kernels=kernels,
                )
                self._decoder_key = key
            decoder = self._decoder
            parts = [str(dtype).removeprefix("torch.")]
            if int8:
                parts.append("int8 projections")
            if decoder.kernels is not None:
                parts.append(
                    "native kernels" if decoder.native_attention
                    else "native kernels, PyTorch attention"
                )
            elif dtype == torch.bfloat16 and self.device.type == "cpu":
                parts.append("PyTorch ops")
            label = f"compact decoder ({', '.join(parts)})"
        if label != self._generation_path:
            logger.info("model %r generates with the %s", self.name, label)
            self._generation_path = label
        return decoder

    def _native_kernels(self, choice: str, dtype: torch.dtype) -> Any:
        """The native C kernels for ``generation.kernels`` = ``choice``, or None.

        They serve bf16 (and int8) decoding on a CPU only. ``native`` raises a
        ConfigError when they cannot be built; ``auto`` logs a warning, once, and
        uses PyTorch ops.
        """
        from biasloop.models.native import NativeKernelsUnavailable, load_native_kernels

        if choice == "torch" or self.device.type != "cpu" or dtype != torch.bfloat16:
            return None
        try:
            return load_native_kernels()
        except NativeKernelsUnavailable as error:
            if choice == "native":
                raise ConfigError(
                    f"generation.kernels = 'native' but the native kernels are unavailable: "
                    f"{error}; valid here: auto or torch"
                ) from None
            if not self._warned_kernels:
                logger.warning("native decode kernels unavailable (%s); using PyTorch ops",
                               error)
                self._warned_kernels = True
            return None

    def _int8_calibration(self) -> list[torch.Tensor]:
        """The built-in calibration conversations as token-id rows (prompt, then answer)."""
        from biasloop.models.compact import CALIBRATION_TEXTS

        return [
            torch.tensor(
                self._encode_prompt(prompt) + self._encode(answer, special=False),
                dtype=torch.long,
            )
            for prompt, answer in CALIBRATION_TEXTS
        ]

    def _weights_version(self) -> int:
        """Changes whenever any parameter is modified in place (optimiser, load_state_dict)."""
        return sum(p._version for p in self.model.parameters())

    def _drop_decoder(self) -> None:
        self._decoder = self._decoder_key = None

    def generate(
        self,
        prompts: Sequence[str],
        *,
        config: GenerationConfig,
        num_samples: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> list[list[str]]:
        """``num_samples`` responses per prompt, ``result[prompt][sample]``.

        Batch ``b`` (of ``config.batch_size`` prompts) is seeded with
        ``derive_seed(seed, b)``, so a batch's samples do not depend on which batches
        ran before it. Temperature 0 decodes greedily and repeats the one answer.
        Which decoder runs is :meth:`generation_path`.
        """
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        texts = [self.format_prompt(p) for p in prompts]
        special = not self.use_chat_template
        greedy = config.temperature == 0
        per_prompt = 1 if greedy else num_samples  # greedy gives one answer; repeat it
        self.model.eval()
        decoder = self.generation_path(config)
        gen_kwargs = self._generation_kwargs(config, per_prompt) if decoder is None else {}
        batches = _chunks(len(texts), config.batch_size)
        results: list[list[str]] = []
        with torch.inference_mode():
            for batch_index, batch in _track(
                enumerate(batches), total=len(batches), description="generate", enabled=progress
            ):
                rows = [self._encode(texts[i], special=special) for i in batch]
                ids, mask = self._pad(rows, side="left")
                batch_seed = derive_seed(seed, batch_index)
                if decoder is None:
                    torch.manual_seed(batch_seed)
                    out = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
                    new_tokens = out[:, ids.shape[1] :]
                else:
                    generator = torch.Generator(device=decoder.device)
                    generator.manual_seed(batch_seed)
                    new_tokens = decoder.generate(
                        ids,
                        mask,
                        num_samples=per_prompt,
                        max_new_tokens=config.max_new_tokens,
                        temperature=config.temperature,
                        top_p=config.top_p,
                        eos_ids=self._eos_ids(),
                        generator=generator,
                    )
                decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                decoded = [text.strip() for text in decoded]
                for j in range(len(batch)):
                    answers = decoded[j * per_prompt : (j + 1) * per_prompt]
                    results.append(answers * num_samples if greedy else answers)
        return results

    # ------------------------------------------------------------------ loglik

    def _context_continuation_ids(
        self, prompt: str, continuation: str, *, chat: bool
    ) -> tuple[list[int], list[int]]:
        """Token ids of context and continuation, encoded separately (lm-eval style).

        Trailing spaces of a plain-text context move to the continuation, so
        ``"The capital is "`` + ``"Paris"`` scores the token ``" Paris"``.
        """
        if not (chat and self.use_chat_template):
            n_spaces = len(prompt) - len(prompt.rstrip(" "))
            if n_spaces:
                continuation = prompt[-n_spaces:] + continuation
                prompt = prompt[:-n_spaces]
        context = self._encode_prompt(prompt, chat=chat)
        return context, self._encode(continuation, special=False)

    def loglik(
        self,
        prompts: Sequence[str],
        continuations: Sequence[str],
        *,
        batch_size: int = 16,
        chat: bool = False,
    ) -> list[float]:
        """Sum of log-probs of each continuation's tokens given its prompt.

        Context and continuation are tokenised separately and their ids
        concatenated, so the continuation's tokens are the same whatever the
        context. With ``chat=True`` the prompt is wrapped in the chat template and
        the continuation scored as the assistant's answer.
        """
        if len(prompts) != len(continuations):
            raise ValueError(
                f"loglik needs one continuation per prompt, got {len(prompts)} prompts "
                f"and {len(continuations)} continuations"
            )
        pairs = [
            self._context_continuation_ids(p, c, chat=chat)
            for p, c in zip(prompts, continuations, strict=True)
        ]
        # Longest first so each batch holds similar lengths (less padding).
        order = sorted(range(len(pairs)), key=lambda i: -sum(map(len, pairs[i])))
        scores = [0.0] * len(pairs)
        self.model.eval()
        with torch.inference_mode():
            for chunk in _chunks(len(order), batch_size):
                items = [order[k] for k in chunk if pairs[order[k]][1]]
                if not items:
                    continue  # only empty continuations: log-prob 0
                rows = [pairs[i][0] + pairs[i][1] for i in items]
                ids, mask = self._pad(rows, side="left")
                # Left padding puts every continuation at the end, so only the last
                # (longest continuation + 1) positions' logits are needed.
                keep = max(len(pairs[i][1]) for i in items) + 1
                states, project = self._last_states(ids, mask, keep)
                for row, i in enumerate(items):
                    n = len(pairs[i][1])
                    target = ids[row, -n:]
                    # Token t is predicted by the logits at position t - 1; log p(t) is
                    # its logit minus the logsumexp over the vocabulary.
                    predicted = project(states[row, -n - 1 : -1])
                    picked = predicted.gather(-1, target[:, None]).sum()
                    scores[i] = float(picked - torch.logsumexp(predicted, dim=-1).sum())
        return scores

    def _last_states(
        self, ids: torch.Tensor, mask: torch.Tensor, keep: int
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The last ``keep`` positions' states and the map from a state to float32 logits.

        For plain-head architectures the states are final hidden states and the
        vocabulary projection runs later on the positions a caller needs; otherwise
        they are the logits themselves.
        """
        lm = self._base_model()
        body, head = getattr(lm, "model", None), getattr(lm, "lm_head", None)
        if getattr(lm.config, "model_type", None) in _PLAIN_HEAD_TYPES and body is not None:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = body(input_ids=ids, attention_mask=mask, position_ids=positions)
            return out.last_hidden_state[:, -keep:], lambda states: head(states).float()
        logits = self._left_padded_forward(ids, mask, keep=keep).logits[:, -keep:]
        return logits, lambda states: states.float()

    # ------------------------------------------------------------------ hidden states

    def hidden_states(self, texts: Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
        """Attention-mask-weighted mean of last-layer hidden states, ``[N, H]`` float32.

        "Last layer" is ``outputs.hidden_states[-1]``, i.e. after the final norm for
        Llama-style models. Texts are encoded as plain text (no chat template).
        """
        vectors: list[torch.Tensor] = []
        self.model.eval()
        with torch.inference_mode():
            for chunk in _chunks(len(texts), batch_size):
                rows = [self._encode(texts[i], special=True) or [self._eos_ids()[0]] for i in chunk]
                ids, mask = self._pad(rows, side="right")
                kwargs: dict[str, Any] = {"output_hidden_states": True}
                if "logits_to_keep" in self._forward_params:
                    kwargs["logits_to_keep"] = 1  # the logits are not needed
                out = self.model(input_ids=ids, attention_mask=mask, **kwargs)
                last = out.hidden_states[-1].float()
                weights = mask.unsqueeze(-1).float()
                vectors.append((last * weights).sum(1) / weights.sum(1))
        if not vectors:
            hidden = int(getattr(self._base_model().config, "hidden_size", 0))
            return torch.zeros((0, hidden), dtype=torch.float32)
        return torch.cat(vectors).cpu()

    # ------------------------------------------------------------------ training

    def _encode_example(self, example: TrainExample, max_length: int) -> tuple[list[int], int]:
        """Ids of prompt + response + EOS (truncated) and the number of prompt tokens."""
        prompt_ids = self._encode_prompt(example.prompt)
        response_ids = self._encode(example.response, special=False) + self._eos_ids()[:1]
        ids = (prompt_ids + response_ids)[:max_length]
        return ids, min(len(prompt_ids), len(ids))

    def _collate(
        self, examples: Sequence[TrainExample], encoded: Sequence[tuple[list[int], int]]
    ) -> dict[str, torch.Tensor]:
        ids, mask = self._pad([row for row, _ in encoded], side="right")
        labels = ids.masked_fill(mask == 0, _IGNORE)
        for i, (_, n_prompt) in enumerate(encoded):
            labels[i, :n_prompt] = _IGNORE
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "weights": torch.tensor([ex.weight for ex in examples], dtype=torch.float32),
            "is_augmented": torch.tensor([ex.is_augmented for ex in examples], dtype=torch.bool),
        }

    @staticmethod
    def _lora_settings(config: TrainingConfig) -> tuple[Any, ...]:
        return (config.lora_r, config.lora_alpha, tuple(sorted(config.lora_target_modules)))

    def _attach_lora(self, config: TrainingConfig, seed: int) -> None:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        try:
            # LoRA A matrices are random: seed them so a training run is reproducible.
            with torch.random.fork_rng(devices=[]), _quiet_peft():
                torch.manual_seed(derive_seed(seed, "lora-init"))
                self.model = get_peft_model(self.model, lora)
        except ValueError as exc:
            raise ConfigError(
                f"training.lora_target_modules {list(config.lora_target_modules)} do not fit "
                f"model {self.name!r}: {str(exc).splitlines()[0]}"
            ) from None
        self._lora_signature = self._lora_settings(config)
        self._mode = "lora"

    def _snapshot_base(self) -> None:
        """Keep a copy of M_0's weights before they are changed in place."""
        if self._base_state is None:
            self._base_state = {
                k: v.detach().clone() for k, v in self._base_model().state_dict().items()
            }

    def _prepare_training(self, config: TrainingConfig, seed: int) -> list[torch.nn.Parameter]:
        """Attach (or keep) the trainable state for ``config.method``; its parameters."""
        if config.method == "lora":
            if self._mode == "full":
                raise ConfigError(
                    f"model {self.name!r} was fully fine-tuned; call reset_to_base() "
                    "before LoRA training"
                )
            if self._mode == "base":
                self._attach_lora(config, seed)
            elif self._lora_signature != self._lora_settings(config):
                raise ConfigError(
                    f"model {self.name!r} holds a LoRA adapter with (r, alpha, targets) = "
                    f"{self._lora_signature}; training.* asks for "
                    f"{self._lora_settings(config)}; call reset_to_base() to change them"
                )
        else:
            if self._mode == "lora":
                raise ConfigError(
                    f"model {self.name!r} holds a LoRA adapter; call reset_to_base() "
                    "before full fine-tuning"
                )
            self._snapshot_base()
            self.model.requires_grad_(True)
            self._mode = "full"
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(
        self,
        examples: Sequence[TrainExample],
        *,
        config: TrainingConfig,
        seed: int = 0,
        progress: bool = False,
        extra_loss: ExtraLoss | None = None,
    ) -> TrainResult:
        """Fine-tune in place on ``examples``; a second call continues the same state.

        The loss of an example is its mean token cross-entropy over the response
        (and EOS) tokens; a batch's loss is the ``weight``-weighted mean of its
        examples' losses. ``extra_loss``, when given, is added to every step's loss.
        ``tokens_seen`` counts every non-padding token fed to the model.
        """
        start = time.perf_counter()
        self._drop_decoder()  # the weights are about to change
        params = self._prepare_training(config, seed)
        compute = resolve_compute_dtype(
            config.compute_dtype, model_dtype=self._base_model().dtype, device=self.device
        )
        # Autocast only lowers precision: fp32 weights, bf16 compute (bf16 weights stay bf16).
        lower = compute == torch.bfloat16 and self._base_model().dtype == torch.float32
        self._autocast_dtype = compute if lower else None
        encoded = [self._encode_example(ex, config.max_length) for ex in examples]
        dropped = sum(1 for ids, n_prompt in encoded if n_prompt >= len(ids))
        if dropped:
            logger.warning(
                "%d of %d training examples have no response tokens left within "
                "training.max_length=%d; they add no loss",
                dropped,
                len(examples),
                config.max_length,
            )
        optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, weight_decay=config.weight_decay
        )
        batches_per_epoch = math.ceil(len(examples) / config.batch_size)
        step_losses: list[float] = []
        tokens_seen = 0
        self.model.train()
        try:
            steps = (
                (epoch, step, batch)
                for epoch in range(config.epochs)
                for step, batch in enumerate(
                    self._epoch_batches(len(examples), config.batch_size, seed, epoch)
                )
            )
            for epoch, step, batch in _track(
                steps,
                total=config.epochs * batches_per_epoch,
                description="train",
                enabled=progress,
            ):
                data = self._collate([examples[i] for i in batch], [encoded[i] for i in batch])
                has_target = (data["labels"] != _IGNORE).any(dim=1)
                weights = data["weights"] * has_target
                if float(weights.sum()) <= 0 and extra_loss is None:
                    continue  # nothing to learn from: no gradient, no optimiser step
                torch.manual_seed(derive_seed(seed, "train-step", epoch, step))  # dropout
                loss = self._step_loss(data, weights, extra_loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                step_losses.append(float(loss.detach()))
                tokens_seen += int(data["attention_mask"].sum())
        finally:
            self.model.eval()
            optimizer.zero_grad(set_to_none=True)
            self._autocast_dtype = None
        return TrainResult(
            step_losses=step_losses, tokens_seen=tokens_seen, seconds=time.perf_counter() - start
        )

    @staticmethod
    def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        """A seeded shuffle of ``range(n)``, cut into batches."""
        order = rng(seed, "shuffle", epoch).permutation(n).tolist()
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]

    def _step_loss(
        self,
        data: dict[str, torch.Tensor],
        weights: torch.Tensor,
        extra_loss: ExtraLoss | None,
    ) -> torch.Tensor:
        """Weighted mean over examples of the mean response-token cross-entropy.

        Runs under bf16 autocast when ``train`` chose it. For plain-head
        architectures the vocabulary projection is applied only at target positions
        (a prompt token's logits are never needed).
        """
        autocast = (
            torch.autocast(self.device.type, dtype=self._autocast_dtype)
            if self._autocast_dtype is not None
            else _no_autocast()
        )
        targets = data["labels"][:, 1:]
        with autocast, _training_attention(self.device):
            outputs, token_loss = self._token_losses(data, targets, bool(extra_loss))
        counts = (targets != _IGNORE).sum(1).clamp(min=1)
        per_example = token_loss / counts
        weights = weights.to(per_example.device)
        total = weights.sum()
        loss = (per_example * weights).sum() / total if total > 0 else per_example.sum() * 0.0
        if extra_loss is not None:
            loss = loss + extra_loss(outputs, data)
        return loss

    def _token_losses(
        self, data: dict[str, torch.Tensor], targets: torch.Tensor, hidden: bool
    ) -> tuple[Any, torch.Tensor]:
        """Forward outputs and each example's summed target-token cross-entropy ``[B]``."""
        kwargs: dict[str, Any] = {"output_hidden_states": True} if hidden else {}
        lm = self._base_model()
        body, head = getattr(lm, "model", None), getattr(lm, "lm_head", None)
        if getattr(lm.config, "model_type", None) not in _PLAIN_HEAD_TYPES or body is None:
            outputs = self.model(
                input_ids=data["input_ids"], attention_mask=data["attention_mask"], **kwargs
            )
            logits = outputs.logits[:, :-1].float()
            token_loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                targets.reshape(-1),
                ignore_index=_IGNORE,
                reduction="none",
            ).view(targets.shape)
            return outputs, token_loss.sum(1)
        out = body(input_ids=data["input_ids"], attention_mask=data["attention_mask"], **kwargs)
        last = out.last_hidden_state
        picked = targets != _IGNORE
        logits = head(last[:, :-1][picked]).float()
        losses = F.cross_entropy(logits, targets[picked], reduction="none")
        rows = picked.nonzero()[:, 0]
        summed = torch.zeros(targets.shape[0], dtype=losses.dtype, device=losses.device)
        summed = summed.index_add(0, rows, losses)
        return _TrainOutputs(out.hidden_states if hidden else None, last, head), summed

    # ------------------------------------------------------------------ save / load

    def save(self, path: Path) -> None:
        """Write the trained state to ``path`` atomically.

        LoRA: the peft adapter (``adapter_model.safetensors`` + ``adapter_config.json``).
        Full: ``save_pretrained`` of the whole model plus its tokenizer, so the folder
        also loads as a model by path. Either way ``biasloop_state.json`` says which.
        """
        path = Path(path)
        with staging_dir(path) as tmp:
            if self._mode == "lora":
                self.model.save_pretrained(tmp, safe_serialization=True)
            elif self._mode == "full":
                self.model.save_pretrained(tmp, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
            state = {"method": self._mode, "model": self.name, "format": 1}
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def reset_to_base(self) -> None:
        """Return to M_0: drop the LoRA adapter or restore the kept base weights."""
        self._drop_decoder()
        if self._mode == "lora":
            self.model = self.model.unload()
            self._lora_signature = None
        elif self._mode == "full":
            assert self._base_state is not None
            self.model.load_state_dict(self._base_state, strict=True)
        self._mode = "base"
        self.model.requires_grad_(False)
        self.model.eval()

    def load_trained(self, path: Path) -> None:
        """Load what :meth:`save` wrote on top of M_0; training afterwards continues it."""
        path = Path(path)
        state_file = path / STATE_FILE
        if not state_file.is_file():
            raise BiasloopError(f"no saved model state at {path} (missing {STATE_FILE})")
        method = json.loads(state_file.read_text())["method"]
        self.reset_to_base()  # also drops the compact decoder of the old weights
        if method == "lora":
            from peft import PeftConfig, PeftModel

            # peft would fall back to adapter_model.bin (torch.load): take safetensors only.
            if not (path / "adapter_model.safetensors").is_file():
                raise BiasloopError(
                    f"no adapter_model.safetensors in {path}; biasloop loads adapters only "
                    "as safetensors"
                )
            with _quiet_peft():
                self.model = PeftModel.from_pretrained(self.model, path, is_trainable=True)
            adapter = PeftConfig.from_pretrained(path)
            targets = adapter.target_modules
            self._lora_signature = (
                adapter.r,
                adapter.lora_alpha,
                tuple(sorted(targets if not isinstance(targets, str) else [targets])),
            )
            self._mode = "lora"
        elif method == "full":
            self._load_full_weights(path)
        elif method != "base":
            raise BiasloopError(f"{state_file}: unknown method {method!r}; valid: lora, full")
        self.model.eval()

    def _load_full_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise BiasloopError(f"no *.safetensors weights in {path}")
        self._snapshot_base()
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        params = dict(self.model.named_parameters(remove_duplicate=False))
        loaded = {id(params[name]) for name in state if name in params}
        # Tied weights (e.g. lm_head = embed_tokens) are saved once; the rest must match.
        untied_missing = [n for n in missing if n not in params or id(params[n]) not in loaded]
        if unexpected or untied_missing:
            raise BiasloopError(
                f"weights in {path} do not fit model {self.name!r}: "
                f"missing {untied_missing[:3]}, unexpected {unexpected[:3]}"
            )
        self._mode = "full"
