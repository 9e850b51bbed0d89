"""A :class:`ModelBackend` over any Hugging Face causal LM and its tokenizer.

Every other backend (the embedded SmolLM2, the tiny random model, hub models and
local folders) is an :class:`HFBackend`; they differ only in how the model and
tokenizer are obtained (see :mod:`biasloop.models.loading`).

This module holds what reads the model: prompt formatting, ``generate``, ``loglik``
and ``hidden_states``. Fine-tuning, saving and loading trained weights are in
:mod:`biasloop.models.hf_training`; which decoder generates (transformers or the
fast compact decoder) is chosen in :mod:`biasloop.models.generation_engine`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from biasloop.config.schema import GenerationConfig, ModelConfig
from biasloop.errors import ConfigError
from biasloop.models.allocator import keep_freed_memory
from biasloop.models.base import ModelBackend
from biasloop.models.generation_engine import GenerationEngine
from biasloop.models.hf_training import STATE_FILE, HFTrainingMixin
from biasloop.models.progress import track
from biasloop.seeding import derive_seed

if TYPE_CHECKING:
    from biasloop.models.fast import CompactDecoder

__all__ = ["STATE_FILE", "HFBackend", "torch_dtype_kwargs"]

#: Architectures whose causal-LM head is a plain ``lm_head(model(...))`` (no soft-capping
#: or logit scale), so scoring and training compute logits only where they are needed.
_PLAIN_HEAD_TYPES = ("llama", "mistral", "qwen2", "qwen3")

logger = logging.getLogger("biasloop.models")


# --------------------------------------------------------------------------- helpers


def torch_dtype_kwargs(name: str) -> dict[str, torch.dtype]:
    """``from_pretrained`` keyword for ``ModelConfig.dtype`` (``torch_dtype`` before 4.56)."""
    import transformers

    dtype = torch.bfloat16 if name == "bfloat16" else torch.float32
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def _chunks(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


# --------------------------------------------------------------------------- backend


class HFBackend(HFTrainingMixin, ModelBackend):
    """A transformers causal LM + tokenizer behind the :class:`ModelBackend` interface.

    The backend owns its model: ``train`` changes it in place (a LoRA adapter or
    the full weights), ``reset_to_base`` returns it to the weights it was built
    with, without touching the disk (both in :class:`HFTrainingMixin`).
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
        self._init_training_state()
        self._engine = GenerationEngine()

    # ------------------------------------------------------------------ properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        """Most positions the model attends to: its config's ``max_position_embeddings``
        (else the tokenizer's ``model_max_length``, else 2048)."""
        limit = getattr(self._base_model().config, "max_position_embeddings", None)
        if not isinstance(limit, int) or limit <= 0:
            limit = getattr(self.tokenizer, "model_max_length", None)
        # Tokenizers without a limit report a huge sentinel (about 1e30).
        return int(limit) if isinstance(limit, int) and 0 < limit < 10**7 else 2048

    def _keep_last(self, rows: list[list[int]], room: int, what: str) -> list[list[int]]:
        """Rows longer than ``room`` tokens cut to their last ``room`` (one warning per call).

        The end of a prompt is kept: it holds the question and the chat template's
        answer cue, which the model must see to answer.
        """
        cut = sum(1 for row in rows if len(row) > room)
        if cut:
            logger.warning(
                "%d of %d %s are longer than the model's context allows (%d tokens here); "
                "each was cut to its last %d tokens", cut, len(rows), what, room, room,
            )
        return [row[-room:] if len(row) > room else row for row in rows]

    def _base_model(self) -> torch.nn.Module:
        """The transformers model under a possible peft wrapper."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if callable(get_base) else self.model

    def _plain_head(self) -> tuple[torch.nn.Module, torch.nn.Module] | None:
        """``(body, lm_head)`` when logits are ``lm_head(body(...))`` (see _PLAIN_HEAD_TYPES)."""
        lm = self._base_model()
        body, head = getattr(lm, "model", None), getattr(lm, "lm_head", None)
        if getattr(lm.config, "model_type", None) in _PLAIN_HEAD_TYPES and body is not None:
            return body, head
        return None

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

    def generation_path(self, config: GenerationConfig) -> CompactDecoder | None:
        """The compact decoder for ``config``, or None for transformers ``generate``.

        See :meth:`GenerationEngine.choose
        <biasloop.models.generation_engine.GenerationEngine.choose>`: ``generation.engine``,
        ``generation.kernels`` and ``generation.quantization`` decide; a combination that
        cannot run raises a ConfigError.
        """
        return self._engine.choose(self, config)

    def _drop_decoder(self) -> None:
        """Free the packed weights of the fast decoder (the weights are about to change)."""
        self._engine.drop()

    def _int8_calibration(self) -> list[torch.Tensor]:
        """The int8 calibration conversations as token-id rows (prompt, then answer)."""
        from biasloop.models.fast.int8 import CALIBRATION_TEXTS

        return [
            torch.tensor(
                self._encode_prompt(prompt) + self._encode(answer, special=False),
                dtype=torch.long,
            )
            for prompt, answer in CALIBRATION_TEXTS
        ]

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
        room = self.context_length - config.max_new_tokens
        if room < 1:
            raise ConfigError(
                f"generation.max_new_tokens = {config.max_new_tokens} leaves no room for a "
                f"prompt in {self.name!r}'s context of {self.context_length} tokens; valid: "
                f"at most {self.context_length - 1}"
            )
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
            for batch_index, batch in track(
                enumerate(batches), total=len(batches), description="generate", enabled=progress
            ):
                rows = self._keep_last([self._encode(texts[i], special=special) for i in batch],
                                       room, "prompts")
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
        pairs = self._fit_pairs(pairs)
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

    def _fit_pairs(
        self, pairs: list[tuple[list[int], list[int]]]
    ) -> list[tuple[list[int], list[int]]]:
        """(context, continuation) pairs cut to the model's context, as lm-eval does.

        The context loses tokens from its start; a continuation that alone fills the
        context keeps its last ``context_length − 1`` tokens, after one context token.
        """
        limit = self.context_length
        fitted, cut = [], 0
        for context, continuation in pairs:
            if len(context) + len(continuation) > limit:
                cut += 1
                continuation = continuation[-(limit - 1):]
                context = context[-(limit - len(continuation)):]
            fitted.append((context, continuation))
        if cut:
            logger.warning(
                "%d of %d scored texts are longer than the model's context (%d tokens); "
                "their contexts were cut from the start", cut, len(pairs), limit,
            )
        return fitted

    def _last_states(
        self, ids: torch.Tensor, mask: torch.Tensor, keep: int
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The last ``keep`` positions' states and the map from a state to float32 logits.

        For plain-head architectures the states are final hidden states and the
        vocabulary projection runs later on the positions a caller needs; otherwise
        they are the logits themselves.
        """
        plain = self._plain_head()
        if plain is not None:
            body, head = plain
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
                rows = [(self._encode(texts[i], special=True) or [self._eos_ids()[0]])
                        [: self.context_length] for i in chunk]
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
