"""One small typed registry used for every plug-in kind.

Studies, tasks, evaluations, mitigations, feedback rules, model backends and the
rest each have a registry; a plug-in is a function or class registered under a
name::

    >>> from biasloop.registry import Registry
    >>> colours = Registry("colour", field="paint.colour")
    >>> @colours.register("red")
    ... def red():
    ...     "The colour of stop signs."
    ...     return "#f00"
    >>> colours.get("red")()
    '#f00'
    >>> colours.get("rde")
    Traceback (most recent call last):
    ...
    biasloop.errors.ConfigError: paint.colour: unknown colour 'rde' (did you mean 'red'?); valid: red
    >>> colours.info("red").summary
    'The colour of stop signs.'

A registry made with ``discover="package"`` imports every module of that
package the first time it is asked for a name, so a built-in plug-in is one
module and one registration, with no import list to edit. User plug-ins come
from the ``plugins:`` config key or the ``biasloop.plugins`` entry-point group
(:mod:`biasloop.plugins`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from biasloop.errors import ConfigError

T = TypeVar("T")

#: Every registry by its kind, for ``biasloop list``.
REGISTRIES: dict[str, Registry[Any]] = {}
#: Installed packages declare plug-in modules under this entry-point group.
ENTRY_POINT_GROUP = "biasloop.plugins"
_loaded_entry_points: set[str] = set()


def load_entry_points() -> None:
    """Import the modules installed packages declare under ``biasloop.plugins`` (once each)."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _loaded_entry_points:
            continue
        _loaded_entry_points.add(entry.name)
        try:
            entry.load()
        except Exception as err:  # a third-party module may raise anything; say which and why
            raise ConfigError(
                f"entry point {ENTRY_POINT_GROUP}:{entry.name} ({entry.value}) failed to load: "
                f"{type(err).__name__}: {err}"
            ) from None


@dataclass(frozen=True)
class PluginInfo:
    """What ``biasloop list`` shows of one plug-in."""

    kind: str
    name: str
    summary: str
    params: list[tuple[str, str, str]]  # (field, type and default, description)


def summary_of(obj: Any) -> str:
    """A plug-in's one-line description: its ``summary`` text, else its docstring's first line."""
    summary = getattr(obj, "summary", None)
    if isinstance(summary, str) and summary:
        return summary
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not doc and isinstance(obj, type):  # a class documented by its module (one per module)
        module = sys.modules.get(obj.__module__)
        doc = getattr(module, "__doc__", None)
    return inspect.cleandoc(doc).splitlines()[0] if doc else ""


def params_of(obj: Any) -> list[tuple[str, str, str]]:
    """``(name, "type = default", description)`` of the plug-in's ``Params`` model, if any."""
    params = getattr(obj, "Params", None)
    fields = getattr(params, "model_fields", None)
    if not fields:
        return []
    rows = []
    for name, field in fields.items():
        annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
        default = field.get_default(call_default_factory=True)
        rows.append((name, f"{annotation} = {default!r}", field.description or ""))
    return rows


class Registry(Generic[T]):
    """A name -> plug-in mapping with a one-line error for unknown names.

    ``field`` is the config field that names a plug-in of this kind (used in errors);
    ``discover`` a package whose modules hold the built-ins.
    """

    def __init__(self, kind: str, *, field: str | None = None, discover: str | None = None) -> None:
        self.kind = kind
        self.field = field
        self.discover = discover
        self._entries: dict[str, T] = {}
        self._discovered = discover is None
        REGISTRIES.setdefault(kind, self)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` (names are unique)."""

        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorate

    def _ensure_discovered(self) -> None:
        if self._discovered:
            return
        self._discovered = True  # first, so modules that look names up while importing don't loop
        package = importlib.import_module(self.discover or "")
        for module in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
            importlib.import_module(module.name)
        load_entry_points()

    def get(self, name: str, *, where: str | None = None) -> T:
        """The plug-in ``name``; an unknown name is a one-line ConfigError.

        The error names ``where`` (e.g. ``'my.yaml': mitigation.name``, else the
        registry's field), the valid names and the nearest one.
        """
        self._ensure_discovered()
        try:
            return self._entries[name]
        except KeyError:
            pass
        valid = sorted(self._entries)
        nearest = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
        place = where or self.field
        prefix = f"{place}: " if place else ""
        raise ConfigError(
            f"{prefix}unknown {self.kind} {name!r}{hint}; valid: {', '.join(valid)}"
        ) from None

    def info(self, name: str) -> PluginInfo:
        obj = self.get(name)
        return PluginInfo(self.kind, name, summary_of(obj), params_of(obj))

    def names(self) -> list[str]:
        self._ensure_discovered()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure_discovered()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
