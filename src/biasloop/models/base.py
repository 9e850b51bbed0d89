"""The one interface every model backend implements.

A backend wraps a causal LM and its tokenizer. The loop and the studies only
talk to this interface, so a Hugging Face model, the embedded default and a
tiny random model are interchangeable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biasloop.config.schema import GenerationConfig, TrainingConfig


#: ``extra_loss(model_outputs, batch) -> scalar`` adds a term to the training loss.
#: ``batch`` holds ``input_ids``, ``attention_mask``, ``labels`` (``-100`` off the
#: response), ``weights`` (float) and ``is_augmented`` (bool), all ``[batch, ...]``
#: tensors; the forward pass is run with ``output_hidden_states=True``.
ExtraLoss = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class TrainExample:
    """One supervised example: loss on ``response`` tokens only, scaled by ``weight``.

    ``is_augmented`` marks synthetic/augmented examples; the loss-based mitigation
    uses it to split a batch into original and augmented halves.
    """

    prompt: str
    response: str
    weight: float = 1.0
    is_augmented: bool = False


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What a fine-tuning call reports: the loss of every optimiser step."""

    step_losses: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    seconds: float = 0.0


class ModelBackend(ABC):
    """A causal LM that can generate, score, embed, fine-tune and be saved."""

    name: str

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        *,
        config: GenerationConfig,
        num_samples: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> list[list[str]]:
        """``num_samples`` sampled responses per prompt, as ``result[prompt][sample]``.

        Prompts are wrapped in the chat template (when the model config asks for
        it), batched with left padding, and sampled with the config's temperature
        and top-p (greedy when temperature is 0). The same seed, prompts and config
        give the same responses on CPU.
        """

    tokenizer: Any

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text without special tokens (for perplexity)."""
        return [len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]

    @abstractmethod
    def loglik(
        self,
        prompts: Sequence[str],
        continuations: Sequence[str],
        *,
        batch_size: int = 16,
        chat: bool = False,
    ) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens given its prompt."""

    @abstractmethod
    def hidden_states(self, texts: Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
        """Mean-pooled last-layer hidden states, shape ``[len(texts), hidden_size]``."""

    @abstractmethod
    def train(
        self,
        examples: Sequence[TrainExample],
        *,
        config: TrainingConfig,
        seed: int = 0,
        progress: bool = False,
        extra_loss: ExtraLoss | None = None,
    ) -> TrainResult:
        """Fine-tune in place (LoRA or full weights) on ``examples``.

        ``extra_loss``, when given, is added to every step's loss (see :data:`ExtraLoss`).
        """

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the trainable state (adapter or full weights) as safetensors."""

    @abstractmethod
    def reset_to_base(self) -> None:
        """Drop any fine-tuned state so the backend is the base model M_0 again."""

    @abstractmethod
    def load_trained(self, path: Path) -> None:
        """Load state written by :meth:`save` on top of the base model."""
