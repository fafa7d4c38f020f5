"""Typed option sets: frozen dataclasses filled from a spec's plain dicts, rejecting typos by name.

A method or metric declares its options as a frozen dataclass; `build_options` turns the spec's dict into
an instance, and an unknown key fails with the valid keys and the closest match (`{step: 50}` ->
"did you mean 'steps'?") instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any


class OptionError(ValueError):
    """An option key or value that the option set does not accept."""


def unknown_key_message(key: str, valid: Iterable[str], what: str) -> str:
    """'unknown <what> option 'step'; valid: a, b; did you mean 'steps'?'"""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(valid) if valid else "(none: this takes no options)"
    return f"unknown {what} option {key!r}; valid: {listed}{hint}"


def option_names(cls: type) -> list[str]:
    """The option names of an options dataclass."""
    return [f.name for f in dataclasses.fields(cls)]


def _accepts(tp: Any, value: Any) -> bool:
    """Whether `value` fits the annotation `tp` (int, float, bool, str, their optionals and unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(t, value) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # containers and other annotations: accepted as given


def build_options(cls: type, values: Mapping[str, Any] | None, what: str) -> Any:
    """An instance of the options dataclass `cls` from a dict; unknown keys or ill-typed values are errors."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = option_names(cls)
    for key, value in values.items():
        if key not in names:
            raise OptionError(unknown_key_message(key, names, what))
        if not _accepts(hints[key], value):
            raise OptionError(f"{what} option {key}={value!r}: expected {hints[key]}")
    return cls(**values)
