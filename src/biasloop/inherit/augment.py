"""Write the augmented data ``D_a``: the backend model answers bias-template prompts.

Prompts are composed one per index with a seed derived from the index, so prompt
``i`` is the same however the work is cut. They are answered in chunks of
``batch_size``, each chunk seeded by its index and stored as its own file, so a
killed run resumes at the first missing chunk and draws the same texts. Chunks
are written until ``count`` texts with at least ``min_words`` words exist or
``ceil(count · oversample)`` prompts have been tried.

Every record is an Example (``id, group, prompt, response, source, generation,
meta``): ``group`` is the target group, ``prompt`` the training prompt (the
template's task without the bias instruction), and ``meta`` keeps the bias
type, its three dimensions, the attribute, target group, the subject's groups,
names, role and the full generation prompt.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from biasloop.config.inheritance import AugmentationConfig
from biasloop.config.schema import GenerationConfig
from biasloop.errors import DataError
from biasloop.inherit.templates import PromptComposer
from biasloop.models.base import ModelBackend
from biasloop.store import read_jsonl, write_jsonl
from biasloop.seeding import derive_seed, rng

log = logging.getLogger("biasloop.inherit")

Track = Callable[[str, Sequence[Any]], Iterator[Any]]


def word_count(text: str) -> int:
    return len(text.split())


def write_augmented(
    *,
    model: Callable[[], ModelBackend],
    composer: PromptComposer,
    count: int,
    config: AugmentationConfig,
    batch_size: int,
    seed: int,
    folder: Path,
    round_index: int,
    written_by: str,
    track: Track,
) -> list[dict[str, Any]]:
    """Write augmented records to ``folder/chunk-*.jsonl`` (resumable); return up to ``count`` valid ones.

    ``model()`` returns the backend holding the writing model; it is only called for
    chunks still missing, so a fully resumed call never loads that model.
    """
    bias_type = composer.bias_type.name
    total_prompts = math.ceil(count * config.oversample)
    generation = GenerationConfig(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        batch_size=batch_size,
    )
    starts = list(range(0, total_prompts, batch_size))
    valid: list[dict[str, Any]] = []
    written = 0
    for chunk_index in track(f"augment {bias_type} r{round_index}", starts):
        if len(valid) >= count:
            break
        path = folder / f"chunk-{chunk_index // batch_size:05d}.jsonl"
        if path.exists():
            records = read_jsonl(path)
        else:
            indexes = range(chunk_index, min(chunk_index + batch_size, total_prompts))
            prompts = [
                composer.compose(i, rng(seed, "augment-prompt", bias_type, i)) for i in indexes
            ]
            texts = model().generate(
                [p.prompt for p in prompts],
                config=generation,
                num_samples=1,
                seed=derive_seed(seed, "augment", bias_type, round_index, chunk_index),
            )
            records = [
                {
                    "id": f"aug-r{round_index}-{p.id}",
                    "group": p.target_group,
                    "prompt": p.train_prompt,
                    "response": text[0],
                    "source": "synthetic",
                    "generation": round_index,
                    "meta": {
                        **p.meta(),
                        "round": round_index,
                        "written_by": written_by,
                        "valid": word_count(text[0]) >= config.min_words,
                    },
                }
                for p, text in zip(prompts, texts)
            ]
            write_jsonl(path, records)
        written += len(records)
        valid.extend(r for r in records if r["meta"]["valid"])
    if len(valid) < config.min_usable * count:
        raise DataError(
            f"augmentation {bias_type} round {round_index}: only {len(valid)} of the {count} "
            f"needed texts are usable (>= {config.min_words} words; {written} written by "
            f"{written_by}), below inheritance.augmentation.min_usable = {config.min_usable}; "
            f"check the writer's texts in {str(folder)!r}, or lower min_usable or min_words"
        )
    if len(valid) < count:
        log.warning(
            "augmentation %s round %d: only %d of %d texts have >= %d words",
            bias_type,
            round_index,
            len(valid),
            count,
            config.min_words,
        )
    return valid[:count]
