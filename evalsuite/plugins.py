"""Plugins: what the engine finds through Python entry points, the project's own packages included.

One style for every extension point, the one pytest and other plugin ecosystems use: a distribution declares
entry points in its metadata (`[project.entry-points."evalsuite.methods"]` in pyproject.toml) and the engine
loads them when it first needs that kind of thing. The engine never names the packages above it.

Groups:
- provider groups (`evalsuite.methods`, `evalsuite.metrics`, `evalsuite.weights`, `evalsuite.testsets`): each
  entry point names a module, or a `module:function` called with no argument, that registers its declarations
  through the engine's public `register` functions (`evalsuite.methods.register`, `evalsuite.metrics.register`,
  `evalsuite.weights.register_weight`, `evalsuite.testsets.register_set`);
- named groups (`evalsuite.recipes`, `evalsuite.hooks`, `evalsuite.lr_sources`): the entry point's name is the
  thing's name (`sr3`, `report`, `cascade`) and its object is the thing itself;
- `evalsuite.commands`: functions `add_parsers(subparsers)` that add sub-commands to the command line.

`$EVALSUITE_PLUGINS` (comma-separated module names) still adds single modules that register on import.

A source checkout that is not installed (the GPU machine runs the tree with `PYTHONPATH=.`) has no metadata:
the project's own entry points are then read from the pyproject.toml beside the package, and the same file is
preferred in a checkout, so editing it never needs a reinstall.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIST = "evalsuite"
PROVIDER_GROUPS = ("evalsuite.methods", "evalsuite.metrics", "evalsuite.weights", "evalsuite.testsets")
NAMED_GROUPS = ("evalsuite.recipes", "evalsuite.hooks", "evalsuite.lr_sources")
COMMAND_GROUP = "evalsuite.commands"
RECIPE_GROUP = "evalsuite.recipes"  # name: the model kind (sr3, ...); object: make_recipe(TrainConfig, options)
PLUGINS_ENV = "EVALSUITE_PLUGINS"


class PluginError(RuntimeError):
    """An entry point that cannot be loaded, or a name no plugin provides."""


def _source_pyproject() -> Path | None:
    """The pyproject.toml of the checkout this package was imported from, if it is evalsuite's."""
    path = Path(__file__).resolve().parent.parent / "pyproject.toml"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _own_entry_points() -> tuple[md.EntryPoint, ...] | None:
    """The project's own entry points from the checkout's pyproject.toml (None: not a checkout)."""
    path = _source_pyproject()
    if path is None:
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: use the installed metadata
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    project = data.get("project", {})
    if project.get("name") != DIST:
        return None
    return tuple(
        md.EntryPoint(name=name, value=value, group=group)
        for group, entries in project.get("entry-points", {}).items()
        for name, value in entries.items()
    )


@functools.cache
def entry_points(group: str) -> tuple[md.EntryPoint, ...]:
    """Every entry point of `group`: the project's own first, then installed distributions' (deduplicated)."""
    own = _own_entry_points()
    found: list[md.EntryPoint] = [ep for ep in own if ep.group == group] if own is not None else []
    seen = {(ep.name, ep.value) for ep in found}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if own is not None and name == DIST:
            continue  # the checkout's own file wins over a stale installed copy of it
        for ep in dist.entry_points:
            if ep.group == group and (ep.name, ep.value) not in seen:
                seen.add((ep.name, ep.value))
                found.append(ep)
    return tuple(found)


def _load(ep: md.EntryPoint) -> Any:
    """An entry point's object, with an error that names the plugin and its target."""
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(
            f"plugin {ep.name!r} ({ep.group} = {ep.value!r}) failed to load: {type(exc).__name__}: {exc}; "
            "reinstall or uninstall the package that declares it"
        ) from exc


_loaded: set[str] = set()


def load_providers(group: str) -> None:
    """Load a provider group once: import each entry point (calling it when it names a function)."""
    if group in _loaded:
        return
    _loaded.add(group)
    for ep in entry_points(group):
        obj = _load(ep)
        if callable(obj) and ep.attr:
            obj()
    if group == "evalsuite.methods":
        load_env_plugins()


def load_env_plugins() -> None:
    """Import the modules named in $EVALSUITE_PLUGINS (comma-separated); they register on import."""
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(module)


def names(group: str) -> list[str]:
    """The names declared in a named group, sorted."""
    return sorted({ep.name for ep in entry_points(group)})


def find(group: str, name: str) -> Any | None:
    """The object registered as `name` in a named group, or None."""
    for ep in entry_points(group):
        if ep.name == name:
            return _load(ep)
    return None


def get(group: str, name: str, what: str) -> Any:
    """The object registered as `name` in a named group; PluginError naming the known ones otherwise."""
    obj = find(group, name)
    if obj is None:
        known = ", ".join(names(group)) or "none"
        raise PluginError(f"unknown {what} {name!r}; known: {known} (entry point group {group!r})")
    return obj


def hook(target: str) -> Callable[..., Any]:
    """A post-run hook: "module:function", or the name of a hook plugin (group `evalsuite.hooks`)."""
    if ":" in target:
        from evalsuite.lazy import load_object

        return load_object(target)
    return get("evalsuite.hooks", target, "post-run hook")


def command_adders() -> list[Callable[[Any], None]]:
    """The `add_parsers(subparsers)` functions of every installed command plugin."""
    return [_load(ep) for ep in entry_points(COMMAND_GROUP)]


def reset() -> None:
    """Forget what was found and loaded (tests that install a plugin at run time)."""
    _own_entry_points.cache_clear()
    entry_points.cache_clear()
    _loaded.clear()
