"""``tiny-random``: a small randomly initialised Llama with the SmolLM2 tokenizer.

Its outputs are nonsense, but it has the real tokenizer, chat template and
architecture family of the embedded model, so the whole pipeline (generate,
score, train, save, load) runs in seconds in tests. The weights are the same
on every load: they come from a fixed seed, without touching the global RNG.
"""

from __future__ import annotations

from typing import Any

import torch

from biasloop.config.schema import ModelConfig
from biasloop.models.embedded import load_tokenizer
from biasloop.models.hf import HFBackend

TINY_NAME = "tiny-random"
TINY_SEED = 1234


def tiny_config(tokenizer: Any) -> Any:
    """The tiny Llama's architecture: hidden 64, 2 layers, 4 heads, MLP 128."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=False,  # tied random embeddings just echo the last token
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(tokenizer: Any, *, dtype: torch.dtype = torch.float32) -> Any:
    """A freshly initialised tiny Llama, identical on every call."""
    from transformers import LlamaForCausalLM

    config = tiny_config(tokenizer)
    with torch.random.fork_rng(devices=[]):  # deterministic init, global RNG untouched
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    return model.to(dtype)


def load_tiny(config: ModelConfig) -> HFBackend:
    """The ``tiny-random`` backend."""
    tokenizer = load_tokenizer()
    dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
    return HFBackend(
        build_tiny_model(tokenizer, dtype=dtype), tokenizer, config=config, name=TINY_NAME
    )
