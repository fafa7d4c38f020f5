"""A registry of named declarations (test sets, weights files), filled by the plugins of its entry point group."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from evalsuite.plugins import load_providers


class Named(Protocol):
    """A declaration with a registry name."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Declarations of one kind by name; the plugins of entry point `group` register theirs when first needed."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind  # "data set", "weights": how errors name an entry
        self.group = group  # e.g. "evalsuite.weights" (evalsuite.plugins)
        self.entries: dict[str, T] = {}

    def add(self, entry: T) -> T:
        """Register `entry` under its name (idempotent: a second declaration of the name replaces the first)."""
        self.entries[entry.name] = entry
        return entry

    def all(self) -> dict[str, T]:
        """Every registered entry by name, the group's plugins loaded first."""
        load_providers(self.group)
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
