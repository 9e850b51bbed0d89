"""Deterministic style scorers for the ``preference`` task, each in [0, 1].

Words: a word is a maximal run of letters or digits, with internal apostrophes kept
(``don't`` is one word, ``well-known`` is two). ``n = word_count(y)``.

Length style (groups ``concise`` and ``detailed``), targets ``T_c < T_d`` words:

* ``concise(y)  = 0 if n == 0 else min(1, T_c / n)`` — full reward up to ``T_c`` words,
  then falling as ``T_c / n``;
* ``detailed(y) = min(1, n / T_d)`` — rising linearly to full reward at ``T_d`` words.

The two are equal at ``n = sqrt(T_c · T_d)``: shorter responses lean concise, longer
ones detailed.

Formality style (groups ``formal`` and ``casual``), from lexicon counts:

* ``F`` = formal markers: words in :data:`FORMAL_WORDS` or of 12 or more letters;
* ``C`` = casual markers: words in :data:`CASUAL_WORDS`, contractions (``n't``, ``'re``,
  ``'ll``, ``'ve``, ``'m``, ``'d``) and exclamation marks;
* ``f = (F − C) / (F + C + 1)`` in (−1, 1);
* ``formal(y) = (1 + f) / 2`` and ``casual(y) = (1 − f) / 2``; both are 0 for a
  response with no words (an empty answer serves nobody).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_CONTRACTION = re.compile(r"[^\W_]+(?:n['’]t|['’](?:re|ll|ve|m|d))\b", re.IGNORECASE)

FORMAL_WORDS: frozenset[str] = frozenset(
    """accordingly additionally approximately consequently furthermore hence however
    moreover namely nevertheless nonetheless notably primarily regarding respectively
    subsequently therefore thereby thus whereas wherein whereby""".split()
)
CASUAL_WORDS: frozenset[str] = frozenset(
    """awesome btw cool cuz dude gonna gotta guys haha hey hi huh kinda lol nah nope ok
    okay omg sorta stuff super tbh totally wanna wow ya yeah yep yo""".split()
)
LONG_WORD_LETTERS = 12

#: Groups of each preference style, in their default order.
STYLE_GROUPS: dict[str, tuple[str, str]] = {
    "length": ("concise", "detailed"),
    "formality": ("formal", "casual"),
}


def words(text: str) -> list[str]:
    """The words of ``text`` (see the module docstring)."""
    return _WORD.findall(text)


def word_count(text: str) -> int:
    """Number of words of ``text``."""
    return len(words(text))


def concise_score(text: str, target_words: int) -> float:
    """``0 if n == 0 else min(1, target_words / n)`` with ``n = word_count(text)``."""
    n = word_count(text)
    return 0.0 if n == 0 else min(1.0, target_words / n)


def detailed_score(text: str, target_words: int) -> float:
    """``min(1, n / target_words)`` with ``n = word_count(text)``."""
    return min(1.0, word_count(text) / target_words)


def formality_counts(text: str) -> tuple[int, int]:
    """``(F, C)``: formal and casual marker counts (see the module docstring)."""
    formal = casual = 0
    for word in words(text):
        lower = word.lower().replace("’", "'")
        if lower in FORMAL_WORDS or (lower.isalpha() and len(lower) >= LONG_WORD_LETTERS):
            formal += 1
        elif lower in CASUAL_WORDS:
            casual += 1
    casual += len(_CONTRACTION.findall(text)) + text.count("!")
    return formal, casual


def _formality(text: str) -> float | None:
    """``f = (F − C) / (F + C + 1)``, or None for a text without words."""
    if word_count(text) == 0:
        return None
    formal, casual = formality_counts(text)
    return (formal - casual) / (formal + casual + 1)


def formal_score(text: str) -> float:
    """``(1 + f) / 2`` with ``f = (F − C) / (F + C + 1)``; 0 for a text without words."""
    f = _formality(text)
    return 0.0 if f is None else (1.0 + f) / 2.0


def casual_score(text: str) -> float:
    """``(1 − f) / 2`` with ``f = (F − C) / (F + C + 1)``; 0 for a text without words."""
    f = _formality(text)
    return 0.0 if f is None else (1.0 - f) / 2.0


def style_scorers(
    style: str, *, concise_target_words: int = 20, detailed_target_words: int = 60
) -> dict[str, Callable[[str], float]]:
    """``{group: scorer}`` for a style (``length`` or ``formality``)."""
    if style == "length":
        return {
            "concise": lambda y: concise_score(y, concise_target_words),
            "detailed": lambda y: detailed_score(y, detailed_target_words),
        }
    if style == "formality":
        return {"formal": formal_score, "casual": casual_score}
    raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLE_GROUPS)}")
