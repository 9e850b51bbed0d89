"""Fine-tuning an :class:`~biasloop.models.hf.HFBackend` in place, and saving what it learnt.

:class:`HFTrainingMixin` holds ``train`` (LoRA or full weights), the per-step loss,
``save``, ``reset_to_base`` and ``load_trained``. It keeps what training has done to
the base weights (nothing, a LoRA adapter, or full) and a copy of M_0 for a reset.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from biasloop.config.schema import TrainingConfig
from biasloop.errors import BiasloopError, ConfigError
from biasloop.io import staging_dir
from biasloop.models.base import ExtraLoss, TrainExample, TrainResult
from biasloop.models.precision import resolve_compute_dtype
from biasloop.models.progress import track
from biasloop.seeding import derive_seed, rng

logger = logging.getLogger("biasloop.models")

#: Written beside the saved state: which method (lora, full) produced it.
STATE_FILE = "biasloop_state.json"
#: The label of a position that adds no loss (padding, prompt tokens).
_IGNORE = -100


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


def _sort_adapter_config(path: Path) -> None:
    """Rewrite peft's ``adapter_config.json`` with sorted keys and module lists.

    peft writes ``target_modules`` from a set, in a different order each process, so
    two identical runs would differ in this one file (and in its checksum).
    """
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "modules_to_save"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class HFTrainingMixin:
    """``train``, ``save``, ``reset_to_base`` and ``load_trained`` of :class:`HFBackend`.

    The host class provides ``model``, ``tokenizer``, ``name``, ``device``,
    ``_base_model()``, ``_plain_head()``, the encoders ``_encode``, ``_encode_prompt``,
    ``_eos_ids``, ``_pad``, and ``_drop_decoder()`` (the packed weights of the fast
    generation engine go stale when training changes the weights). It calls
    :meth:`_init_training_state` from its constructor.
    """

    model: torch.nn.Module
    tokenizer: Any
    name: str

    def _init_training_state(self) -> None:
        # What train() has done to the base weights: nothing, a LoRA adapter, or full.
        self._mode: Literal["base", "lora", "full"] = "base"
        self._lora_signature: tuple[Any, ...] | None = None
        self._base_state: dict[str, torch.Tensor] | None = None
        self._autocast_dtype: torch.dtype | None = None  # set by train() for its steps

    @property
    def trained_method(self) -> Literal["base", "lora", "full"]:
        """``base`` (M_0), ``lora`` (an adapter is attached) or ``full`` (weights changed)."""
        return self._mode

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
        # Never more positions than the model has, whatever training.max_length says.
        max_length = min(config.max_length, self.context_length)
        encoded = [self._encode_example(ex, max_length) for ex in examples]
        dropped = sum(1 for ids, n_prompt in encoded if n_prompt >= len(ids))
        if dropped:
            logger.warning(
                "%d of %d training examples have no response tokens left within "
                "training.max_length=%d; they add no loss",
                dropped,
                len(examples),
                max_length,
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
            for epoch, step, batch in track(
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
        plain = self._plain_head()
        if plain is None:
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
        body, head = plain
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
                _sort_adapter_config(tmp / "adapter_config.json")
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
