"""The ``math`` task: problems with checkable answers, grouped by kind.

**Data (packaged): generated, not collected.** No PyPI package we could find ships a
suitable set of real math word problems with numeric answers and a permissive licence
(see ``docs/data.md`` for the candidates checked). The packaged problems are therefore
generated deterministically from the templates below. Item ``i`` of kind ``k`` is drawn
with ``random.Random("biasloop-math:{k}:{i}")``, so it is the same on every machine and
does not depend on how many problems are asked for. Item id: ``{kind}-{i:05d}``.

Kinds (the groups; default ``("arithmetic", "word")``):

* ``arithmetic`` — bare expressions: ``a + b``, ``a - b`` (a > b), ``a * b``, ``a / b``
  (exact) and ``a + b - c``.
* ``word`` — one-step word problems (buy more, give away, boxes of, share equally),
  with a name and an object.
* ``multistep`` — two-step word problems (wage minus spending, two sales, packs minus
  gifts, pages per day plus extra).

All answers are non-negative integers. Each reference is a short worked solution
ending ``The answer is N.``

**Quality** = exact-match pass@1: ``1.0`` if the final number of the response
(:func:`biasloop.judges.answers.parse_final_number`: last ``\\boxed{}``, else after the
last ``####``, else after the last "answer is", else the last number; commas, ``$``
and fractions handled) equals the answer, else ``0.0``. The reward is the same for
every group. There is no attribute function (``attribute`` returns None).

**hf source.** Rows ``group, prompt`` plus ``answer`` or a ``reference`` whose final
number is the answer (GSM8K's ``#### N`` works: ``hf_columns={prompt: question,
reference: answer}``, ``hf_group=gsm8k``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import cached_property

from pydantic import Field, field_validator

from biasloop.errors import DataError
from biasloop.judges.answers import exact_match, parse_final_number, parse_number
from biasloop.tasks.base import TASKS, PooledParams, PooledTask, Query
from biasloop.tasks.sources import data_groups, load_rows, resolve_groups, rows_to_queries

NAMES = ("Alex", "Sam", "Maria", "Wei", "Amina", "Carlos", "Priya", "John", "Fatima",
         "Kenji", "Olga", "Ahmed", "Lucy", "Tom", "Sofia", "Ravi")
OBJECTS = ("apples", "pencils", "marbles", "stickers", "books", "cookies", "stamps",
           "cards", "shells", "balloons")
MATH_KINDS: tuple[str, ...] = ("arithmetic", "word", "multistep")

Problem = tuple[str, str, int]  # prompt, reference, answer


def _arithmetic(rng: random.Random) -> Problem:
    form = rng.randrange(5)
    if form == 0:
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        return f"What is {a} + {b}?", f"{a} + {b} = {a + b}. The answer is {a + b}.", a + b
    if form == 1:
        a, b = sorted((rng.randint(10, 999), rng.randint(10, 999)), reverse=True)
        return f"What is {a} - {b}?", f"{a} - {b} = {a - b}. The answer is {a - b}.", a - b
    if form == 2:
        a, b = rng.randint(2, 99), rng.randint(2, 20)
        return f"What is {a} * {b}?", f"{a} * {b} = {a * b}. The answer is {a * b}.", a * b
    if form == 3:
        b, q = rng.randint(2, 20), rng.randint(2, 50)
        a = b * q
        return f"What is {a} / {b}?", f"{a} / {b} = {q}. The answer is {q}.", q
    a, b = rng.randint(10, 500), rng.randint(10, 500)
    c = rng.randint(1, a + b)
    ans = a + b - c
    return (f"Calculate {a} + {b} - {c}.",
            f"{a} + {b} = {a + b}, and {a + b} - {c} = {ans}. The answer is {ans}.", ans)


def _word(rng: random.Random) -> Problem:
    name, obj, form = rng.choice(NAMES), rng.choice(OBJECTS), rng.randrange(4)
    if form == 0:
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        return (f"{name} has {a} {obj}. {name} buys {b} more {obj}. "
                f"How many {obj} does {name} have now?",
                f"{name} has {a} + {b} = {a + b} {obj} now. The answer is {a + b}.", a + b)
    if form == 1:
        a = rng.randint(5, 90)
        b = rng.randint(1, a - 1)
        return (f"{name} had {a} {obj} and gave {b} of them to a friend. "
                f"How many {obj} does {name} have left?",
                f"{name} has {a} - {b} = {a - b} {obj} left. The answer is {a - b}.", a - b)
    if form == 2:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return (f"{name} buys {a} boxes of {obj}. Each box holds {b} {obj}. "
                f"How many {obj} does {name} buy in total?",
                f"{name} buys {a} * {b} = {a * b} {obj}. The answer is {a * b}.", a * b)
    b, q = rng.randint(2, 9), rng.randint(2, 12)
    a = b * q
    return (f"{name} shares {a} {obj} equally among {b} friends. "
            f"How many {obj} does each friend get?",
            f"Each friend gets {a} / {b} = {q} {obj}. The answer is {q}.", q)


def _multistep(rng: random.Random) -> Problem:
    name, obj, form = rng.choice(NAMES), rng.choice(OBJECTS), rng.randrange(4)
    if form == 0:
        a, b = rng.randint(8, 30), rng.randint(2, 8)
        c = rng.randint(1, a * b - 1)
        ans = a * b - c
        return (f"{name} earns ${a} per hour and works {b} hours. {name} then spends ${c} "
                f"on lunch. How many dollars does {name} have left?",
                f"{name} earns {a} * {b} = {a * b} dollars. After lunch {name} has "
                f"{a * b} - {c} = {ans} dollars. The answer is {ans}.", ans)
    if form == 1:
        a = rng.randint(30, 200)
        b = rng.randint(1, a // 2)
        c = rng.randint(1, a - b)
        ans = a - b - c
        return (f"A shop has {a} {obj}. It sells {b} in the morning and {c} in the "
                f"afternoon. How many {obj} are left?",
                f"The shop sells {b} + {c} = {b + c} {obj}, so {a} - {b + c} = {ans} are "
                f"left. The answer is {ans}.", ans)
    if form == 2:
        a, b = rng.randint(2, 10), rng.randint(3, 12)
        c = rng.randint(1, a * b - 1)
        ans = a * b - c
        return (f"{name} buys {a} packs of {obj} with {b} {obj} in each pack and gives "
                f"away {c}. How many {obj} does {name} keep?",
                f"{name} buys {a} * {b} = {a * b} {obj} and keeps {a * b} - {c} = {ans}. "
                f"The answer is {ans}.", ans)
    a, b, c = rng.randint(5, 40), rng.randint(2, 7), rng.randint(1, 30)
    ans = a * b + c
    return (f"{name} reads {a} pages a day for {b} days, then reads {c} more pages. "
            f"How many pages does {name} read in total?",
            f"{name} reads {a} * {b} = {a * b} pages, then {a * b} + {c} = {ans}. "
            f"The answer is {ans}.", ans)


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {
    "arithmetic": _arithmetic, "word": _word, "multistep": _multistep,
}


def generate_problem(kind: str, index: int) -> Problem:
    """Problem ``index`` of ``kind``: ``(prompt, reference, answer)``, the same everywhere."""
    return GENERATORS[kind](random.Random(f"biasloop-math:{kind}:{index}"))


class MathParams(PooledParams):
    """Options of the ``math`` task (``task.params``)."""

    groups: tuple[str, ...] | None = Field(
        None, description="Kinds used as groups, in order (packaged: from arithmetic, word, "
        "multistep; default arithmetic, word). hf: groups of the data (default all).",
    )
    problems_per_kind: int = Field(
        500, ge=10, le=1_000_000, description="Packaged problems generated per kind."
    )
    prompt_suffix: str = Field(
        "", description="Text appended to every prompt, e.g. ' Give the final number.'"
    )

    @field_validator("groups")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("must be a non-empty list of distinct group names")
        return value


@TASKS.register("math")
class MathTask(PooledTask):
    """Problems with numeric answers; quality is exact-match pass@1 (see module docstring)."""

    name = "math"
    Params = MathParams
    params: MathParams

    @cached_property
    def _rows(self) -> list[dict[str, str | None]]:
        p = self.params
        return load_rows(
            str(self.config.hf_dataset), required=("group", "prompt"), columns=p.hf_columns,
            default_group=p.hf_group, config=p.hf_config, split=p.hf_split,
        )

    @cached_property
    def groups(self) -> tuple[str, ...]:  # type: ignore[override]
        p = self.params
        if self.config.source == "hf":
            return resolve_groups(p.groups, data_groups(self._rows), source=self.source_label)
        return resolve_groups(p.groups or ("arithmetic", "word"), MATH_KINDS,
                              source="the packaged math task")

    def load_queries(self) -> list[Query]:
        suffix = self.params.prompt_suffix
        if self.config.source == "hf":
            return [self._with_answer(q, suffix) for q in rows_to_queries(self._rows)]
        queries = []
        for kind in self.groups:
            for index in range(self.params.problems_per_kind):
                prompt, reference, answer = generate_problem(kind, index)
                queries.append(Query(
                    id=f"{kind}-{index:05d}", group=kind, prompt=prompt + suffix,
                    reference=reference,
                    meta={"source": "biasloop templates", "kind": kind, "answer": str(answer)},
                ))
        return queries

    def _with_answer(self, query: Query, suffix: str) -> Query:
        """An hf query with ``meta["answer"]``: the answer column, else the reference's
        final number; a DataError naming the file when neither gives a number."""
        answer = query.meta.get("answer")
        if answer is not None and parse_number(answer) is None:
            raise DataError(f"{self.source_label}: answer {answer!r} of query {query.id!r} "
                            "holds no number; the 'answer' column must be numeric")
        if answer is None and query.reference:
            parsed = parse_final_number(query.reference)
            answer = None if parsed is None else str(parsed)
        if answer is None:
            raise DataError(
                f"{self.source_label}: query {query.id!r} has no 'answer' column value and "
                "no number in its 'reference'; give an answer column (or references ending "
                "in the answer, e.g. '#### 42')"
            )
        return Query(id=query.id, group=query.group, prompt=query.prompt + suffix,
                     reference=query.reference, meta={**query.meta, "answer": answer})

    def score(self, groups: Sequence[str], queries: Sequence[Query],
              responses: Sequence[str]) -> list[float]:
        """Exact-match pass@1: ``1.0`` if ``parse_final_number(y) == answer`` else ``0.0``."""
        return [exact_match(response, str(query.meta["answer"]))
                for query, response in zip(queries, responses)]
