"""Sensitive cues: the words and names that tell a reader a person's gender or culture.

A :class:`CueLexicon` maps each term to the groups it signals (``{"gender":
"female"}``, ``{"gender": "male", "culture": "arabic"}`` for a name) and to a
neutral replacement. Two consumers read them:

* the ``mask`` mitigation hides cues in augmented text (:class:`Masker`);
* the group-data misalignment analysis counts which groups a text is about
  (:func:`detect_groups`).

Built-in lexicons (registered in :data:`CUE_LEXICONS`):

* ``gender_terms``: the packaged gender words (pronouns, StereoSet and WinoBias
  word pairs), matched case-insensitively;
* ``names``: every first name of the name table, matched case-sensitively (so
  ``Rosa`` is a name and ``rosa`` is not);
* ``culture_terms``: demonyms, countries, cities and languages of the four
  built-in cultures (``culture_terms.json``), matched case-insensitively.

Users add their own as files: JSON (``{term: neutral}`` or ``[term, ...]``) or
text (one term per line, optionally ``term<TAB>neutral``; ``#`` starts a comment).

Terms match whole words only: ``he`` matches in "he said" and "he's" but not in
"the" or "helper"; ``man`` does not match inside "manager" or "woman".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from biasloop.errors import ConfigError, DataError
from biasloop.resources.lexicons import gender_terms
from biasloop.resources.names import load_names
from biasloop.resources.files import packaged_json
from biasloop.registry import Registry

#: Neutral words for common gendered terms; other gendered terms become
#: ``person``/``people`` (by a plural ``-s``/``-men`` ending).
GENDER_NEUTRAL = {
    "she": "they", "he": "they", "her": "their", "him": "them", "his": "their",
    "hers": "theirs", "herself": "themself", "himself": "themself",
    "woman": "person", "man": "person", "women": "people", "men": "people",
    "girl": "child", "boy": "child", "girls": "children", "boys": "children",
    "mother": "parent", "father": "parent", "mothers": "parents", "fathers": "parents",
    "mom": "parent", "dad": "parent", "daughter": "child", "son": "child",
    "daughters": "children", "sons": "children", "sister": "sibling", "brother": "sibling",
    "sisters": "siblings", "brothers": "siblings", "wife": "spouse", "husband": "spouse",
    "wives": "spouses", "husbands": "spouses", "lady": "person", "gentleman": "person",
    "ladies": "people", "gentlemen": "people", "female": "", "male": "",
    "actress": "actor", "waitress": "server", "mrs": "", "mr": "", "ms": "",
}  # fmt: skip
NAME_NEUTRAL = "the person"


@dataclass(frozen=True, kw_only=True)
class Cue:
    """One term, the groups it signals (axis -> group) and its neutral replacement."""

    term: str
    groups: Mapping[str, str] = field(default_factory=dict)
    neutral: str = "person"


@dataclass(frozen=True, kw_only=True)
class CueLexicon:
    """Named cues matched as whole words, case-sensitively or not."""

    name: str
    cues: tuple[Cue, ...]
    case_sensitive: bool = False

    def _key(self, text: str) -> str:
        return text if self.case_sensitive else text.lower()

    @cached_property
    def by_term(self) -> dict[str, Cue]:
        return {self._key(c.term): c for c in self.cues}

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        # Longest first so "Saudi Arabia" wins over "Saudi"; \s+ lets multi-word
        # terms match across any spacing; (?<!\w)/(?!\w) keep matches to whole words.
        terms = sorted(self.by_term, key=len, reverse=True)
        alternation = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in terms)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", flags)

    def cue_of(self, matched: str) -> Cue:
        return self.by_term[self._key(" ".join(matched.split()))]

    def find(self, text: str) -> list[tuple[re.Match[str], Cue]]:
        """Every cue occurrence in ``text``, left to right, without overlaps."""
        if not self.cues:
            return []
        return [(m, self.cue_of(m.group(0))) for m in self.pattern.finditer(text)]


# --------------------------------------------------------------------------- lexicons

LexiconBuilder = Callable[["LexiconSources"], CueLexicon]
CUE_LEXICONS: Registry[LexiconBuilder] = Registry("cue lexicon", field="mitigation.params.mask.lexicons")


@dataclass(frozen=True, kw_only=True)
class LexiconSources:
    """Where built-in lexicons read from: the name table file (None: the packaged one)."""

    names_file: str | None = None


def _gender_neutral(term: str) -> str:
    if term in GENDER_NEUTRAL:
        return GENDER_NEUTRAL[term]
    return "people" if term.endswith(("s", "men")) else "person"


@CUE_LEXICONS.register("gender_terms")
def gender_lexicon(sources: LexiconSources) -> CueLexicon:
    """Gendered words (woman, he, actress …), each masked to a neutral word."""
    return CueLexicon(
        name="gender_terms",
        cues=tuple(
            Cue(term=term, groups={"gender": group}, neutral=_gender_neutral(term))
            for group, terms in sorted(gender_terms().items())
            for term in sorted(terms)
        ),
    )


@CUE_LEXICONS.register("names")
def name_lexicon(sources: LexiconSources) -> CueLexicon:
    """First names of the name table, by gender and culture (case-sensitive)."""
    people = load_names(sources.names_file).people
    # A name listed under two cells signals only the axes on which they agree.
    groups: dict[str, dict[str, str]] = {}
    for person in people:
        signal = {"gender": person.gender, "culture": person.culture}
        seen = groups.setdefault(person.name, signal)
        groups[person.name] = {k: v for k, v in seen.items() if signal.get(k) == v}
    return CueLexicon(
        name="names",
        cues=tuple(Cue(term=n, groups=g, neutral=NAME_NEUTRAL) for n, g in groups.items()),
        case_sensitive=True,
    )


@CUE_LEXICONS.register("culture_terms")
def culture_lexicon(sources: LexiconSources) -> CueLexicon:
    """Culture and nationality terms (Arabic, Chinese, Portuguese, Spanish …)."""
    data = packaged_json("culture_terms.json")["cultures"]
    return CueLexicon(
        name="culture_terms",
        cues=tuple(
            Cue(term=term, groups={"culture": culture}, neutral=neutral)
            for culture, terms in data.items()
            for term, neutral in terms.items()
        ),
    )


def lexicon_from_file(path: Path, *, field_name: str) -> CueLexicon:
    """A user lexicon: JSON ``{term: neutral}`` / ``[terms]``, or text ``term[<TAB>neutral]``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{field_name}: {str(path)!r} is not UTF-8 text") from None
    except OSError as err:
        raise DataError(f"{field_name}: cannot read {str(path)!r} ({err.strerror})") from None
    entries: list[tuple[str, str]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        if isinstance(data, Mapping) and all(isinstance(v, str) for v in data.values()):
            entries = [(str(k), v) for k, v in data.items()]
        elif isinstance(data, list) and all(isinstance(v, str) for v in data):
            entries = [(v, "person") for v in data]
        else:
            raise DataError(
                f"{path}: a lexicon is a JSON object of term -> neutral word or a list of terms"
            )
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            term, _, neutral = line.partition("\t")
            if not term.strip():
                raise DataError(f"{path}:{number}: empty term before the tab")
            entries.append((term.strip(), neutral.strip() if _ else "person"))
    entries = [(t.strip(), n) for t, n in entries if t.strip()]
    if not entries:
        raise DataError(f"{field_name}: {str(path)!r} holds no terms")
    return CueLexicon(
        name=path.stem, cues=tuple(Cue(term=t, neutral=n) for t, n in entries)
    )


def load_lexicons(
    specs: Sequence[str], *, sources: LexiconSources, field_name: str = "mitigation.params.mask.lexicons"
) -> list[CueLexicon]:
    """Each spec is a built-in lexicon name or a path to a lexicon file."""
    lexicons = []
    for spec in specs:
        if spec in CUE_LEXICONS:
            lexicons.append(CUE_LEXICONS.get(spec)(sources))
            continue
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{field_name}: {spec!r} is neither a built-in lexicon "
                f"({', '.join(CUE_LEXICONS.names())}) nor an existing file"
            )
        lexicons.append(lexicon_from_file(path, field_name=field_name))
    return lexicons


# --------------------------------------------------------------------------- using them


def _at_sentence_start(text: str, position: int) -> bool:
    before = text[:position].rstrip(" \t\"'“‘(")
    return not before or before[-1] in ".!?\n"


class Masker:
    """Replaces every cue of ``lexicons`` with ``mask_token`` or the cue's neutral word.

    Case-sensitive lexicons (names) are applied first, then the others. A neutral
    word is capitalised at the start of a sentence; a dropped word (empty neutral)
    takes one adjacent space with it.
    """

    def __init__(
        self,
        lexicons: Sequence[CueLexicon],
        *,
        replacement: str = "mask",
        mask_token: str = "[MASK]",
    ) -> None:
        self.lexicons = sorted(lexicons, key=lambda lexicon: not lexicon.case_sensitive)
        self.replacement = replacement
        self.mask_token = mask_token

    def mask(self, text: str) -> tuple[str, int]:
        """``(masked text, number of cues replaced)``."""
        replaced = 0
        for lexicon in self.lexicons:
            pieces: list[str] = []
            last = 0
            for match, cue in lexicon.find(text):
                word = self.mask_token if self.replacement == "mask" else cue.neutral
                if word and _at_sentence_start(text, match.start()):
                    word = word[0].upper() + word[1:]
                pieces += [text[last : match.start()], word]
                last = match.end()
                replaced += 1
            text = "".join(pieces) + text[last:]
        if self.replacement == "neutral":
            text = re.sub(r"[ \t]{2,}", " ", text)
            text = re.sub(r"(?m)^[ \t]+|[ \t]+(?=[,.;:!?])", "", text)
        return text, replaced


def detect_groups(text: str, lexicons: Iterable[CueLexicon]) -> dict[str, Counter[str]]:
    """Per axis, how many cues of each group ``text`` contains."""
    found: dict[str, Counter[str]] = {}
    for lexicon in lexicons:
        for _, cue in lexicon.find(text):
            for axis, group in cue.groups.items():
                found.setdefault(axis, Counter())[group] += 1
    return found


def dominant_group(counts: Counter[str] | None) -> str:
    """The one group a text's cues point to: that group, ``mixed`` or ``none``."""
    if not counts:
        return "none"
    return next(iter(counts)) if len(counts) == 1 else "mixed"
