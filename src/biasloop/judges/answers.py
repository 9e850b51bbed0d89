"""Final-answer parsing and exact-match scoring for math responses.

:func:`parse_final_number` reads the number a response commits to, in this order:

1. the last ``\\boxed{...}``: the last number inside it;
2. the last ``####`` (GSM8K style): the first number after it;
3. the last "answer is" / "answer:" / "answer =" (case-insensitive): the first number
   after it;
4. otherwise the last number anywhere in the text.

A number may carry a leading ``-`` (not when it follows a letter or digit, so
``5-3`` reads as 5 and 3), a ``$`` or ``\\$`` before it, thousands commas (``1,234``), a
decimal part (``2.50``), a trailing ``%``, or be a fraction ``3/4`` or ``\\frac{3}{4}``.
Values are exact :class:`fractions.Fraction` objects, so ``18``, ``18.0`` and
``36/2`` are all equal.
"""

from __future__ import annotations

import re
from fractions import Fraction

_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_MONEY = re.compile(r"\\?\$\s*")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")
_HASHES = "####"
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*(?:is\s*)?:?", re.IGNORECASE)


def _normalise(text: str) -> str:
    """Rewrite ``\\frac{a}{b}`` as ``a/b``, drop ``$`` and thousands commas."""
    text = _FRAC.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
    text = _MONEY.sub("", text)
    return _THOUSANDS.sub("", text)


def _to_fraction(token: str) -> Fraction | None:
    token = token.replace(" ", "")
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _numbers(text: str) -> list[Fraction]:
    values = []
    for match in _NUMBER.finditer(text):
        value = _to_fraction(match.group(0))
        if value is not None:
            values.append(value)
    return values


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces matched), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return text[i + 1 :]


def parse_number(text: str | int | float) -> Fraction | None:
    """The first number in ``text`` (an answer-key cell such as ``"1,234"`` or ``"$5"``)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if isinstance(text, float):
            return Fraction(text).limit_denominator(10**9)
        return Fraction(text)
    values = _numbers(_normalise(str(text)))
    return values[0] if values else None


def parse_final_number(response: str) -> Fraction | None:
    """The response's final answer as a Fraction, or None when it holds no number.

    Order: last ``\\boxed{}`` (its last number), then last ``####`` (first number after
    it), then last "answer is/answer:" (first number after it), else the last number.
    """
    boxed = _last_boxed(response)
    if boxed is not None:
        values = _numbers(_normalise(boxed))
        if values:
            return values[-1]
    text = _normalise(response)
    if _HASHES in text:
        values = _numbers(text[text.rindex(_HASHES) + len(_HASHES) :])
        if values:
            return values[0]
    markers = list(_ANSWER_IS.finditer(text))
    if markers:
        values = _numbers(text[markers[-1].end() :])
        if values:
            return values[0]
    values = _numbers(text)
    return values[-1] if values else None


def answers_match(response: str, answer: str | int | float) -> bool:
    """True when :func:`parse_final_number` of ``response`` equals ``answer`` exactly."""
    expected = parse_number(answer)
    got = parse_final_number(response)
    return expected is not None and got is not None and got == expected


def exact_match(response: str, answer: str | int | float) -> float:
    """Exact-match pass@1: 1.0 if ``answers_match(response, answer)`` else 0.0."""
    return 1.0 if answers_match(response, answer) else 0.0
