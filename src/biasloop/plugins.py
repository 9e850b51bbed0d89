"""User plug-ins: modules that register tasks, evaluations, mitigations, … without editing biasloop.

Two ways in, both loaded before a config is checked:

* the config key ``plugins: [my_package.module, ./my_plugin.py]``: a module name is
  imported; a path (ending in ``.py``) is loaded from that file. A relative path in a
  YAML file is relative to that file's folder; typed on the command line, to the
  working directory;
* the entry-point group ``biasloop.plugins`` of an installed package::

      [project.entry-points."biasloop.plugins"]
      my_plugins = "my_package.plugins"

A plug-in module registers what it brings with the registries' decorators, e.g.
``@register_curation("my_rule")`` or ``@TASKS.register("my_task")``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from biasloop.errors import ConfigError
from biasloop.registry import ENTRY_POINT_GROUP, PluginInfo, load_entry_points  # noqa: F401



def is_path(spec: str) -> bool:
    """A plug-in given as a file (``./x.py``, ``dir/x.py``) rather than a module name."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def resolve_paths(specs: Sequence[str], base: Path) -> list[str]:
    """``specs`` with relative file paths made absolute against ``base`` (a config's folder)."""
    return [str((base / s).resolve()) if is_path(s) and not Path(s).is_absolute() else s
            for s in specs]


def module_name(spec: str) -> str:
    """The module a plug-in spec loads as: the name itself, or one derived from a file path.

    A file gets one module, named after its resolved path, so two files called
    ``plugin.py`` do not collide and loading the same file twice is a no-op.
    """
    if not is_path(spec):
        return spec
    path = Path(spec)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return f"biasloop_user_plugin_{path.stem}_{digest}"


def active_modules(specs: Sequence[str]) -> set[str]:
    """The plug-in modules a config uses: its ``plugins`` and the installed entry points.

    Plug-ins another config loaded earlier in the same process are not among them.
    """
    from importlib.metadata import entry_points

    installed = {entry.value.split(":")[0] for entry in entry_points(group=ENTRY_POINT_GROUP)}
    return {module_name(s) for s in specs} | installed


def _load_file(path: Path, where: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{where}: {str(path)!r}: no such plug-in file")
    name = module_name(str(path))
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: {str(path)!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a user's module may raise anything; say which and why
        del sys.modules[name]
        raise ConfigError(f"{where}: {str(path)!r} failed to load: {type(err).__name__}: {err}") from None


def load_plugins(specs: Sequence[str], *, field: str = "plugins") -> None:
    """Import every plug-in module of ``specs`` (module names or ``.py`` paths), once each."""
    load_entry_points()
    for index, spec in enumerate(specs):
        where = f"{field}[{index}]"
        if is_path(spec):
            _load_file(Path(spec), where)
            continue
        try:
            importlib.import_module(spec)
        except ImportError as err:
            raise ConfigError(f"{where}: cannot import plug-in module {spec!r}: {err}") from None
        except Exception as err:
            raise ConfigError(
                f"{where}: plug-in module {spec!r} failed to load: {type(err).__name__}: {err}"
            ) from None


#: The modules that define each plug-in kind's registry (imported by ``biasloop list``).
REGISTRY_MODULES = (
    "biasloop.studies.base",
    "biasloop.tasks.base",
    "biasloop.inherit.evaluations.base",
    "biasloop.mitigate.base",
    "biasloop.loop.feedback",
    "biasloop.metrics.loop.base",
    "biasloop.models.loading",
    "biasloop.resources.cues",
    "biasloop.runner.executors",
)


def registered(kind: str | None = None) -> list[PluginInfo]:
    """Every registered plug-in (of one ``kind``), built-ins and loaded plug-ins alike."""
    from biasloop.registry import REGISTRIES

    for module in REGISTRY_MODULES:
        importlib.import_module(module)
    load_entry_points()
    if kind is not None:
        kind = kind.replace("_", " ").replace("-", " ")  # `feedback-rule` or `feedback_rule`
    if kind is not None and kind not in REGISTRIES:
        import difflib

        nearest = difflib.get_close_matches(kind, list(REGISTRIES), n=1)
        hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
        raise ConfigError(
            f"biasloop list: unknown plug-in kind {kind!r}{hint}; valid: {', '.join(REGISTRIES)}"
        )
    kinds = [kind] if kind is not None else list(REGISTRIES)
    return [REGISTRIES[k].info(name) for k in kinds for name in REGISTRIES[k].names()]
