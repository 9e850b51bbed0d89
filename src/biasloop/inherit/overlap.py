"""Contamination checks: evaluation items must share no text with training data.

Two texts overlap when, after lower-casing and keeping only word characters,
one contains the other or they share a run of ``n`` consecutive words (13 by
default, the contamination window used for GPT-3's benchmarks). Evaluation
items that overlap ``D_o`` or the augmentation prompts are dropped before they
are written; generated augmented texts are checked after generation and the
count is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

NGRAM = 13
_WORD = re.compile(r"\w+")


def normalize(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def shingles(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words (the whole text when shorter)."""
    words = normalize(text)
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class OverlapIndex:
    """The n-gram shingles and normalised texts of a training corpus."""

    def __init__(self, texts: Iterable[str], n: int = NGRAM) -> None:
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.texts: list[str] = []
        for text in texts:
            words = normalize(text)
            if not words:
                continue
            self.texts.append(f" {' '.join(words)} ")
            self.grams |= shingles(text, n)

    def overlaps(self, text: str) -> bool:
        """True when ``text`` shares an n-gram with, contains, or is contained in a corpus text."""
        words = normalize(text)
        if not words:
            return False
        if shingles(text, self.n) & self.grams:
            return True
        joined = f" {' '.join(words)} "
        # Short texts have no full n-gram: fall back to whole-word containment either way.
        return any(joined in t or (len(t.split()) < self.n and t in joined) for t in self.texts)


def overlapping(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = NGRAM) -> list[int]:
    """Indices of ``eval_texts`` that overlap any of ``train_texts``."""
    index = OverlapIndex(train_texts, n)
    return [i for i, text in enumerate(eval_texts) if index.overlaps(text)]
