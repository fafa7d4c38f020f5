"""A method name's settings: `NAME@KEY=VALUE[@KEY2=VALUE2]` parsed, typed against its options, and labelled."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from evalsuite.options import OptionError, build_options, check_keys, option_names

# Where a name's settings start: `@KEY=` (an `@` without `KEY=`, as in `hf:org/repo@main`, is part of the name).
_SETTING = re.compile(r"@(?=[A-Za-z_][A-Za-z0-9_]*=)")


def split_variant(name: str) -> tuple[str, dict[str, str]]:
    """'sr3:m@steps=10@sampler=ddim' -> ('sr3:m', {'steps': '10', 'sampler': 'ddim'}) (values as text)."""
    m = _SETTING.search(name)
    if m is None:
        return name, {}
    base, settings = name[: m.start()], name[m.start() + 1 :].split("@")
    fixed: dict[str, str] = {}
    for s in settings:
        key, sep, value = s.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise OptionError(f"method {name!r}: setting {s!r} must be KEY=VALUE (e.g. {base}@steps=10,25)")
        if key in fixed:
            raise OptionError(f"method {name!r}: option {key!r} is given twice")
        fixed[key] = value.strip()
    return base, fixed


def parse_typed(text: str, hint: Any, what: str) -> Any:
    """`text` parsed to the type `hint` of an options field (int, float, bool, str and their optionals)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
            return None
        tries = args
    else:
        tries = [hint]
    for tp in tries:
        try:
            if tp is bool:
                low = text.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if tp in (int, float):
                return tp(text)
            if tp is str:
                return text
        except ValueError:
            continue
    names = " or ".join(getattr(t, "__name__", str(t)) for t in tries)
    raise OptionError(f"{what}: {text!r} is not a valid {names}")


def typed_settings(cls: type | None, free_options: bool, base: str, fixed: dict[str, str]) -> dict[str, Any]:
    """A variant's settings typed and checked against the method's options dataclass `cls` (typos name the valid
    keys); `free_options`: a plugin without a dataclass takes them as given."""
    if not fixed:
        return {}
    what = f"method {base!r}"
    if cls is None:
        if free_options:
            return dict(fixed)
        check_keys(fixed, [], what)
    check_keys(fixed, option_names(cls), what)
    hints = typing.get_type_hints(cls)
    typed = {k: parse_typed(v, hints[k], f"{what} option {k}") for k, v in fixed.items()}
    build_options(cls, typed, what)  # the full check, as a spec's method_options get
    return typed


def variant_label(name: str, base_label: str) -> str:
    """The label of a variant: its base method's label and its settings (`sr3-m@steps=10`)."""
    _, fixed = split_variant(name)
    suffix = "".join(f"@{k}={re.sub(r'[^A-Za-z0-9._-]+', '_', v)}" for k, v in fixed.items())
    return base_label + suffix
