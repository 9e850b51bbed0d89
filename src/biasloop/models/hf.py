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
from biasloop.models.base import ExtraLoss, ModelBackend, TrainExample, TrainResult
from biasloop.seeding import derive_seed, rng

logger = logging.getLogger("biasloop.models")

STATE_FILE = "biasloop_state.json"
_IGNORE = -100
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
        self._forward_params = set(inspect.signature(self._base_model().forward).parameters)
        # What train() has done to the base weights: nothing, a LoRA adapter, or full.
        self._mode: Literal["base", "lora", "full"] = "base"
        self._lora_signature: tuple[Any, ...] | None = None
        self._base_state: dict[str, torch.Tensor] | None = None

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
        """
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        texts = [self.format_prompt(p) for p in prompts]
        special = not self.use_chat_template
        greedy = config.temperature == 0
        per_prompt = 1 if greedy else num_samples  # greedy gives one answer; repeat it
        gen_kwargs = self._generation_kwargs(config, per_prompt)
        batches = _chunks(len(texts), config.batch_size)
        results: list[list[str]] = []
        self.model.eval()
        with torch.inference_mode():
            for batch_index, batch in _track(
                enumerate(batches), total=len(batches), description="generate", enabled=progress
            ):
                rows = [self._encode(texts[i], special=special) for i in batch]
                ids, mask = self._pad(rows, side="left")
                torch.manual_seed(derive_seed(seed, batch_index))
                out = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
                new_tokens = out[:, ids.shape[1] :]
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
                logits = self._left_padded_forward(ids, mask, keep=keep).logits[:, -keep:]
                logprobs = F.log_softmax(logits.float(), dim=-1)
                for row, i in enumerate(items):
                    n = len(pairs[i][1])
                    target = ids[row, -n:]
                    # Token t is predicted by the logits at position t - 1.
                    predicted = logprobs[row, -n - 1 : -1]
                    scores[i] = float(predicted.gather(-1, target[:, None]).sum())
        return scores

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
        params = self._prepare_training(config, seed)
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
        kwargs: dict[str, Any] = {"output_hidden_states": True} if extra_loss else {}
        outputs = self.model(
            input_ids=data["input_ids"], attention_mask=data["attention_mask"], **kwargs
        )
        logits = outputs.logits[:, :-1].float()
        targets = data["labels"][:, 1:]
        token_loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=_IGNORE,
            reduction="none",
        ).view(targets.shape)
        counts = (targets != _IGNORE).sum(1).clamp(min=1)
        per_example = token_loss.sum(1) / counts
        weights = weights.to(per_example.device)
        total = weights.sum()
        loss = (per_example * weights).sum() / total if total > 0 else per_example.sum() * 0.0
        if extra_loss is not None:
            loss = loss + extra_loss(outputs, data)
        return loss

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
        self.reset_to_base()
        if method == "lora":
            from peft import PeftConfig, PeftModel

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
