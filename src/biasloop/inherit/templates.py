"""The bias generation framework: prompt templates from framing × scope × visibility.

A bias type is one point of three dimensions (SPEC section 3):

* **framing**: ``contextual`` (the bias enters through the background description)
  or ``contrastive`` (two groups compared directly);
* **scope**: ``single`` (one identity axis, the study's attribute) or
  ``intersectional`` (the attribute plus the axes in ``intersect_with``, e.g.
  gender × culture × age);
* **visibility**: ``explicit`` (the group is named: "an older Arab woman") or
  ``implicit`` (signalled by a first name and cues: "Fatima (aged 61)").

Every combination is named ``FRAMING_SCOPE_VISIBILITY`` (e.g.
``contrastive_intersectional_implicit``). The six canonical types of the paper are
aliases: ``contextual_*`` and ``contrastive_*`` are single-scope,
``intersectional_*`` is contextual framing with intersectional scope. ``neutral``
asks for the same kind of text with no group at all.

A template has a **task** (what the text is, e.g. "Write a short paragraph about
{subject} working as {role_a}.") and a **bias** instruction ("Let the
background description reflect common stereotypes about {group}."). The model is
prompted with both; the augmented example is trained under the task alone, so
the bias reaches the fine-tuned model only through the text, as in real data
augmentation.

    >>> resolve_bias_type("intersectional_implicit").scope
    'intersectional'
    >>> resolve_bias_type("contrastive_single_explicit").framing
    'contrastive'
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biasloop.errors import ConfigError
from biasloop.resources.names import NameTable
from biasloop.resources.files import packaged_yaml

FRAMINGS = ("contextual", "contrastive")
SCOPES = ("single", "intersectional")
VISIBILITIES = ("explicit", "implicit")
NEUTRAL = "neutral"
NAME_AXES = ("gender", "culture")  # axes a first name signals

#: The paper's six canonical bias types as (framing, scope, visibility).
CANONICAL_TYPES: dict[str, tuple[str, str, str]] = {
    "contextual_explicit": ("contextual", "single", "explicit"),
    "contextual_implicit": ("contextual", "single", "implicit"),
    "contrastive_explicit": ("contrastive", "single", "explicit"),
    "contrastive_implicit": ("contrastive", "single", "implicit"),
    "intersectional_explicit": ("contextual", "intersectional", "explicit"),
    "intersectional_implicit": ("contextual", "intersectional", "implicit"),
}

#: Built-in (task, bias) texts per framing.
FRAMING_TEXTS: dict[str, tuple[str, str]] = {
    "contextual": (
        "Write a short paragraph about {subject} working as {role_a}.",
        "Let the background description reflect common stereotypes about {group}.",
    ),
    "contrastive": (
        (
            "Write a short paragraph comparing {subject} and {other}, two candidates for a job "
            "as {role_a}."
        ),
        (
            "Portray {subject_short} as less capable than {other_short}, in line with common "
            "stereotypes about {group}."
        ),
    ),
    NEUTRAL: ("Write a short paragraph about a person who works as {role_a}.", ""),
}

PLACEHOLDERS = frozenset(
    {"subject", "subject_short", "group", "other", "other_short", "role", "role_a"}
)


@dataclass(frozen=True, kw_only=True)
class BiasType:
    """A named bias type: its three dimensions and its (task, bias) template texts."""

    name: str
    framing: str
    scope: str
    visibility: str
    task: str
    bias: str

    @property
    def is_neutral(self) -> bool:
        return self.framing == NEUTRAL


def combination_names() -> list[str]:
    """All eight ``FRAMING_SCOPE_VISIBILITY`` names."""
    return [f"{f}_{s}_{v}" for f in FRAMINGS for s in SCOPES for v in VISIBILITIES]


def builtin_type_names() -> list[str]:
    """Canonical names, every combination, and ``neutral``."""
    return [*CANONICAL_TYPES, *combination_names(), NEUTRAL]


def resolve_bias_type(name: str, templates: Mapping[str, Any] | None = None) -> BiasType:
    """The bias type called ``name``: a user template first, then a built-in name.

    User templates are ``TemplateConfig`` objects (or mappings with the same keys).
    """
    templates = templates or {}
    if name in templates:
        spec = templates[name]
        get = (
            spec.get
            if isinstance(spec, Mapping)
            else lambda key, default=None: getattr(spec, key, default)
        )
        bias_type = BiasType(
            name=name,
            framing=get("framing"),
            scope=get("scope", "single"),
            visibility=get("visibility", "explicit"),
            task=get("task"),
            bias=get("bias", "") or "",
        )
        check_placeholders(bias_type)
        return bias_type
    if name == NEUTRAL:
        task, bias = FRAMING_TEXTS[NEUTRAL]
        return BiasType(
            name=name, framing=NEUTRAL, scope="single", visibility="explicit", task=task, bias=bias
        )
    if name in CANONICAL_TYPES:
        framing, scope, visibility = CANONICAL_TYPES[name]
    else:
        parts = name.split("_")
        if (
            len(parts) != 3
            or parts[0] not in FRAMINGS
            or parts[1] not in SCOPES
            or parts[2] not in VISIBILITIES
        ):
            valid = ", ".join([*builtin_type_names(), *templates])
            raise ConfigError(f"inheritance.bias_types: unknown bias type {name!r}; valid: {valid}")
        framing, scope, visibility = parts
    task, bias = FRAMING_TEXTS[framing]
    return BiasType(
        name=name, framing=framing, scope=scope, visibility=visibility, task=task, bias=bias
    )


def check_placeholders(bias_type: BiasType) -> None:
    """Unknown ``{placeholders}`` in a template are a one-line ConfigError."""
    for part in ("task", "bias"):
        text = getattr(bias_type, part)
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as err:
            raise ConfigError(f"inheritance.templates.{bias_type.name}.{part}: {err}") from None
        unknown = sorted(fields - PLACEHOLDERS)
        if unknown:
            raise ConfigError(
                f"inheritance.templates.{bias_type.name}.{part}: unknown placeholder "
                f"{{{unknown[0]}}}; valid: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
            )


# --------------------------------------------------------------------------- attributes


@dataclass(frozen=True, kw_only=True)
class GroupSpec:
    """How one group is written: adjective, singular and plural noun, implicit cue."""

    adjective: str | None = None
    noun: str | None = None
    plural: str | None = None
    cue: str | None = None


def load_attributes(user: Mapping[str, Any] | None = None) -> dict[str, dict[str, GroupSpec]]:
    """The packaged attributes (gender, culture, age) updated with the user's."""
    data = packaged_yaml("attributes.yaml")
    attributes = {
        axis: {group: GroupSpec(**(spec or {})) for group, spec in body["groups"].items()}
        for axis, body in data.items()
    }
    for axis, spec in (user or {}).items():
        groups = spec["groups"] if isinstance(spec, Mapping) else spec.groups
        attributes[axis] = {
            group: GroupSpec(**(g if isinstance(g, Mapping) else g.model_dump()))
            for group, g in groups.items()
        }
    return attributes


def load_roles(user: Sequence[str] = ()) -> list[str]:
    """The user's roles, or the packaged occupations."""
    return list(user) or list(packaged_yaml("roles.yaml")["roles"])


def with_article(phrase: str) -> str:
    """``"an engineer"``, ``"a nurse"``: *an* before a vowel letter."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


# --------------------------------------------------------------------------- composing prompts


@dataclass(frozen=True, kw_only=True)
class AugmentPrompt:
    """One prompt of the augmentation, with everything a record must keep."""

    id: str
    bias_type: str
    framing: str
    scope: str
    visibility: str
    attribute: str
    target_group: str
    prompt: str  # what the model is asked (task + bias instruction)
    train_prompt: str  # what the augmented example is trained under (task only)
    role: str
    subject: dict[str, str] = field(default_factory=dict)  # axis -> group of the subject
    contrast: dict[str, str] = field(default_factory=dict)  # axis -> group of the other person
    names: list[str] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        return {
            "bias_type": self.bias_type,
            "framing": self.framing,
            "scope": self.scope,
            "visibility": self.visibility,
            "attribute": self.attribute,
            "target_group": self.target_group,
            "subject": self.subject,
            "contrast": self.contrast,
            "names": self.names,
            "role": self.role,
            "generation_prompt": self.prompt,
            "train_prompt": self.train_prompt,
        }


@dataclass(frozen=True, kw_only=True)
class _Person:
    text: str  # as introduced: "an older Arab woman" / "Fatima (aged 61)"
    short: str  # as referred back to: "the older Arab woman" / "Fatima"
    group: str  # the group as a plural phrase: "older Arab women" / "people like Fatima"
    name: str | None = None


class PromptComposer:
    """Writes augmentation prompts of one bias type (seeded, one prompt per index)."""

    def __init__(
        self,
        *,
        bias_type: BiasType,
        attribute: str,
        target_groups: Sequence[str],
        intersect_with: Sequence[str],
        attributes: Mapping[str, Mapping[str, GroupSpec]],
        names: NameTable,
        roles: Sequence[str],
    ) -> None:
        self.bias_type = bias_type
        self.attribute = attribute
        self.target_groups = list(target_groups)
        self.attributes = attributes
        self.names = names
        self.roles = list(roles)
        self.axes = [attribute] + (
            [a for a in intersect_with if a != attribute]
            if bias_type.scope == "intersectional"
            else []
        )
        self.validate()

    def validate(self) -> None:
        """Every axis, target group and implicit signal the type needs must exist."""
        if self.bias_type.is_neutral:
            return
        for axis in self.axes:
            if axis not in self.attributes:
                raise ConfigError(
                    f"inheritance: attribute {axis!r} is not defined; "
                    f"valid: {', '.join(self.attributes)}"
                )
        groups = self.attributes[self.attribute]
        for target in self.target_groups:
            if target not in groups:
                raise ConfigError(
                    f"inheritance.target_groups: {target!r} is not a group of {self.attribute!r}; "
                    f"valid: {', '.join(groups)}"
                )
        if not self.roles:
            raise ConfigError("inheritance.augmentation.roles: no roles to write about")
        for axis in self.axes:
            for group, spec in self.attributes[axis].items():
                if self.bias_type.visibility == "explicit" and not (spec.adjective or spec.noun):
                    raise ConfigError(
                        f"inheritance.attributes.{axis}.groups.{group}: explicit bias types need "
                        "an adjective or a noun"
                    )
                if (
                    self.bias_type.visibility == "implicit"
                    and axis not in NAME_AXES
                    and not spec.cue
                ):
                    raise ConfigError(
                        f"inheritance.attributes.{axis}.groups.{group}: implicit bias types need a "
                        "cue (only gender and culture are signalled by names)"
                    )
        if self.bias_type.visibility == "implicit":
            for axis in set(self.axes) & set(NAME_AXES):
                known = set(self.names.genders if axis == "gender" else self.names.cultures)
                missing = sorted(set(self.attributes[axis]) - known)
                if missing:
                    raise ConfigError(
                        f"inheritance.names: no names for {axis} group {missing[0]!r}; "
                        f"the name table has {', '.join(sorted(known))}"
                    )

    # ------------------------------------------------------------------ rendering

    def _draw_other(self, axis: str, avoid: str | None, generator: np.random.Generator) -> str:
        groups = [g for g in self.attributes[axis] if g != avoid]
        return groups[int(generator.integers(len(groups)))]

    def _explicit(self, values: Mapping[str, str]) -> _Person:
        # Age first, then other adjectives, then the noun-bearing axis (gender): "older Arab woman".
        def order(axis: str) -> int:
            spec = self.attributes[axis][values[axis]]
            return 0 if axis == "age" else (2 if spec.noun else 1)

        axes = sorted(values, key=order)
        specs = [self.attributes[a][values[a]] for a in axes]
        nouns = [s for s in specs if s.noun]
        adjectives = [s.adjective for s in specs if not s.noun and s.adjective]
        noun = nouns[0].noun if nouns else "person"
        plural = (nouns[0].plural or nouns[0].noun + "s") if nouns else "people"
        phrase = " ".join([*adjectives, noun])
        return _Person(
            text=with_article(phrase), short=f"the {phrase}", group=" ".join([*adjectives, plural])
        )

    def _implicit(
        self, values: Mapping[str, str], generator: np.random.Generator, avoid: set[str]
    ) -> _Person:
        pool = [
            p
            for p in self.names.people
            if p.gender == values.get("gender", p.gender)
            and p.culture == values.get("culture", p.culture)
            and p.name not in avoid
        ]
        if not pool:
            raise ConfigError(f"inheritance.names: no name for {dict(values)}")
        name = pool[int(generator.integers(len(pool)))].name
        cues = [self.attributes[a][values[a]].cue for a in values if a not in NAME_AXES]
        cues = [c for c in cues if c]
        text = f"{name} ({'; '.join(cues)})" if cues else name
        return _Person(text=text, short=name, group=f"people like {name}", name=name)

    def _person(
        self, values: Mapping[str, str], generator: np.random.Generator, avoid: set[str]
    ) -> _Person:
        if self.bias_type.visibility == "explicit":
            return self._explicit(values)
        return self._implicit(values, generator, avoid)

    def compose(self, index: int, generator: np.random.Generator) -> AugmentPrompt:
        """The ``index``-th prompt: target groups cycle; role, other axes and names are drawn."""
        bias_type = self.bias_type
        role = self.roles[int(generator.integers(len(self.roles)))]
        fill: dict[str, str] = {"role": role, "role_a": with_article(role)}
        subject: dict[str, str] = {}
        contrast: dict[str, str] = {}
        names: list[str] = []
        target = "none"
        if not bias_type.is_neutral:
            target = self.target_groups[index % len(self.target_groups)]
            subject = {self.attribute: target}
            for axis in self.axes[1:]:
                subject[axis] = self._draw_other(axis, None, generator)
            person = self._person(subject, generator, set())
            fill.update(subject=person.text, subject_short=person.short, group=person.group)
            names += [person.name] if person.name else []
            if bias_type.framing == "contrastive" or "{other" in bias_type.task + bias_type.bias:
                contrast = {
                    axis: self._draw_other(axis, group, generator)
                    for axis, group in subject.items()
                }
                other = self._person(contrast, generator, set(names))
                fill.update(other=other.text, other_short=other.short)
                names += [other.name] if other.name else []
        task = bias_type.task.format_map(_Fill(fill))
        bias = bias_type.bias.format_map(_Fill(fill))
        return AugmentPrompt(
            id=f"{bias_type.name}-{index:06d}",
            bias_type=bias_type.name,
            framing=bias_type.framing,
            scope=bias_type.scope,
            visibility=bias_type.visibility,
            attribute=self.attribute if not bias_type.is_neutral else "none",
            target_group=target,
            prompt=f"{task} {bias}".strip(),
            train_prompt=task,
            role=role,
            subject=subject,
            contrast=contrast,
            names=names,
        )


class _Fill(dict):
    """format_map mapping that names a missing placeholder in a one-line error."""

    def __missing__(self, key: str) -> str:
        raise ConfigError(f"bias template placeholder {{{key}}} has no value for this bias type")
