"""A registry of named declarations (test sets, weights files) that the modules declaring them fill on import."""

from __future__ import annotations

import importlib
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    """A declaration with a registry name."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Declarations of one kind by name; `providers` are modules that register theirs when imported."""

    def __init__(self, kind: str, providers: tuple[str, ...] = ()) -> None:
        self.kind = kind  # "data set", "weights": how errors name an entry
        self.providers = providers
        self.entries: dict[str, T] = {}

    def add(self, entry: T) -> T:
        """Register `entry` under its name (idempotent: a second declaration of the name replaces the first)."""
        self.entries[entry.name] = entry
        return entry

    def all(self) -> dict[str, T]:
        """Every registered entry by name, the providers imported first."""
        for module in self.providers:
            importlib.import_module(module)
        return dict(self.entries)

    def find(self, name: str) -> T | None:
        """The entry registered as `name`, else the one whose name or alias it is (case-insensitive), else None."""
        entries = self.all()
        if name in entries:
            return entries[name]
        key = name.strip().lower()
        for entry in entries.values():
            if key == entry.name.lower() or key in getattr(entry, "aliases", ()):
                return entry
        return None

    def get(self, name: str) -> T:
        """The entry `name` refers to (see `find`); KeyError listing the known names otherwise."""
        entry = self.find(name)
        if entry is None:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self.all()))}")
        return entry
