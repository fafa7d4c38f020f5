"""Typed options that reject typos: frozen dataclasses filled from dicts of (often string) values.

`check_keys` is the one place that turns an unknown key into an error listing the valid keys and the
closest match (difflib); `config_from_options` builds a frozen dataclass from `--set KEY=VALUE` strings;
`build_options` from a spec's typed values (methods' and metrics' options); `SuggestingParser` does the
same for command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class OptionError(ValueError):
    """An option key or value that the option set does not accept."""


def check_keys(given: Iterable[str], valid: Iterable[str], what: str, noun: str = "option") -> None:
    """Raise OptionError for keys not in `valid`, naming each with its closest valid key and listing them all."""
    valid = sorted(valid)
    unknown = sorted(set(given) - set(valid))
    if not unknown:
        return
    named = []
    for key in unknown:
        # The closest valid spelling, if any is close enough to be a typo of it.
        close = difflib.get_close_matches(key, valid, n=1)
        named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    known = ", ".join(valid) if valid else "none (this takes no options)"
    raise OptionError(f"unknown {what} {noun}{plural} {', '.join(named)}; known: {known}")


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


def build_options(cls: type[T], values: Mapping[str, Any] | None, what: str) -> T:
    """An instance of the options dataclass `cls` from a spec's dict; unknown keys or ill-typed values fail."""
    values = dict(values or {})
    check_keys(values, option_names(cls), what)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _accepts(hints[key], value):
            raise OptionError(f"{what} option {key}={value!r}: expected {hints[key]}")
    return cls(**values)


def config_from_options(cls: type[T], options: Mapping[str, Any], what: str) -> T:
    """Build the frozen dataclass `cls` from a dict; string values are parsed to the type of the field's default."""
    check_keys(options, [f.name for f in dataclasses.fields(cls)], what)
    base = cls()
    typed = {}
    for key, value in options.items():
        current = getattr(base, key)
        typed[key] = parse_value(value, current) if isinstance(value, str) and not isinstance(current, str) else value
    return dataclasses.replace(base, **typed)


def parse_value(text: str, like: Any) -> Any:
    """Parse `text` to the type of `like` (bool, int, float, tuple); None-like defaults take a float or the text."""
    if isinstance(like, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float) or like is None:
        try:
            return float(text)
        except ValueError:
            return text
    if isinstance(like, tuple):
        return tuple(type(like[0])(x) for x in text.split(",")) if like else tuple(text.split(","))
    return text


class SuggestingParser(argparse.ArgumentParser):
    """An ArgumentParser (and, through add_subparsers, its sub-commands) whose unknown flags fail naming the closest."""

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse as argparse does, then reject a leftover `--flag` with the valid flags and the closest one."""
        namespace, extra = super().parse_known_args(args, namespace)
        unknown = [a.split("=", 1)[0] for a in extra if a.startswith("--")]
        if unknown:
            flags = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
            try:
                check_keys(unknown, flags, f"`{self.prog}`")
            except ValueError as exc:
                self.error(str(exc))
        return namespace, extra


def csv_names(text: str) -> tuple[str, ...]:
    """A comma-separated flag value -> its non-empty items, stripped (`--methods a,b`)."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def config_field(default: Any = dataclasses.MISSING, doc: str = "", **cli: Any) -> Any:
    """A config dataclass field whose metadata carries its command-line help (and `flag`, `choices`, `type`,
    `cli=False`): `add_config_arguments` makes its flag, so a key and its flag cannot drift apart."""
    metadata = {"help": doc, **cli}
    return dataclasses.field(metadata=metadata) if default is dataclasses.MISSING else dataclasses.field(
        default=default, metadata=metadata)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = ()) -> tuple[str, ...]:
    """Add one flag per field of the dataclass `cls` (its metadata holds the help) but `skip`; returns their dests.

    Flags: `--batch-size` for `batch_size` (or the field's `flag`); a bool field that defaults to False is
    `--NAME`, one that defaults to True is `--no-NAME`. Nothing is stored for a flag that is not given
    (argparse.SUPPRESS), so the dataclass keeps the only copy of the defaults.
    """
    hints = typing.get_type_hints(cls)
    dests = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        if not meta or not meta.pop("cli", True) or f.name in skip:  # a field without metadata has no flag
            continue
        flag, doc = meta.pop("flag", "--" + f.name.replace("_", "-")), meta.pop("help", "").replace("%", "%%")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            parser.add_argument(flag, dest=f.name, required=True, help=doc, **meta)
        elif isinstance(f.default, bool):
            flag = flag if not f.default else "--no-" + flag.removeprefix("--")
            action = "store_false" if f.default else "store_true"
            doc = f"turn off {doc}" if f.default else doc
            parser.add_argument(flag, dest=f.name, action=action, default=argparse.SUPPRESS, help=doc)
        else:
            # `float | None` -> float: the value type of an optional field (a field's own `type` parses lists).
            kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
            meta.setdefault("type", kind)
            shown = f" (default: {f.default})" if f.default not in (None, (), "") else ""
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=doc + shown, **meta)
        dests.append(f.name)
    return tuple(dests)
