"""Method sweeps: `sr3:CKPT@steps=10,25,50`, `@sampler=ddim,ancestral`, checkpoint globs -> labelled methods.

A method name may carry settings after `@`: `NAME@KEY=V1,V2[@KEY2=W1,W2]`. Each KEY is an option of the
method's options dataclass (e.g. SR3's sampler options), each value is parsed to the field's
type, and a list of values expands into one method per value (several keys: every combination). A `*` or
`?` in a checkpoint argument (`sr3:runs/x/ckpt-*.safetensors`) expands into one method per matching file,
sorted by the number in its name (the training step). The expanded names keep one value per key
(`sr3:m@steps=10`); `split_variant` gives back the base name and its fixed options, which `method_options`
applies last, so they win over `method_options` and `--steps`.

`sweeps.json` in a run folder records, per method label, the sweep it belongs to and the swept value, for
the report's plots of each metric against the swept value.
"""

from __future__ import annotations

import glob
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalsuite.io import atomic_write_text
from evalsuite.variants import _SETTING, parse_typed, split_variant, variant_label  # noqa: F401  (re-exported)

SWEEPS_FILE = "sweeps.json"
CHECKPOINT_KEY = "checkpoint"  # the swept "key" of a checkpoint glob (its value: the step in the file name)


@dataclass(frozen=True)
class Variant:
    """One expanded method: its full name, the sweep it comes from, and the swept key and value."""

    name: str  # e.g. "sr3:m.safetensors@steps=10"
    sweep: str | None = None  # the name as given, e.g. "sr3:m.safetensors@steps=10,25"; None: not swept
    key: str | None = None  # the swept key ("steps", "sampler", "checkpoint"; several: "steps,sampler")
    value: Any = None  # the swept value (int/float/str; a checkpoint's training step, else its file name)


def split_methods(text: str) -> tuple[str, ...]:
    """Split a `--methods` list on commas, keeping `@key=v1,v2` value lists with their method."""
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        # A piece continues the previous method's value list when that one has a setting and this piece is
        # a bare value (`25`, `ancestral`), possibly followed by another setting (`25@sampler=ddim`).
        if out and _SETTING.search(out[-1]) and _continues(piece):
            out[-1] += "," + piece
        else:
            out.append(piece)
    return tuple(out)


def _continues(piece: str) -> bool:
    from evalsuite.methods import registered_methods

    registry = registered_methods()
    head = piece.split("@", 1)[0]
    prefix = head.partition(":")[0]
    return head not in registry and prefix not in registry


def _step_of(path: str) -> int | None:
    """The training step in a checkpoint's file name (its last number), or None."""
    nums = re.findall(r"\d+", Path(path).name.removesuffix(".safetensors"))
    return int(nums[-1]) if nums else None


def _expand_glob(base: str, given: str) -> list[tuple[str, Any]]:
    """`prefix:pattern` -> [(prefix:file, step or file name)], sorted by step; an empty match is an error."""
    prefix, _, pattern = base.partition(":")
    files = sorted(glob.glob(pattern, recursive=True))
    files = [f for f in files if not f.endswith(".state.pt")]  # training state beside checkpoints
    if not files:
        raise FileNotFoundError(f"method {given!r}: no file matches {pattern!r}; check the path and the pattern")
    steps = {f: _step_of(f) for f in files}
    if all(s is not None for s in steps.values()):
        files.sort(key=lambda f: (steps[f], f))
        return [(f"{prefix}:{f}", steps[f]) for f in files]
    return [(f"{prefix}:{f}", Path(f).name) for f in files]


def expand_method(name: str) -> list[Variant]:
    """One `--methods` entry -> its variants (a plain name: itself); settings are validated here, before any work."""
    from evalsuite.methods import method_settings, split_name

    base, settings = split_variant(name)
    key, arg = split_name(base)
    bases: list[tuple[str, Any]] = [(base, None)]
    if arg and any(ch in arg for ch in "*?["):
        bases = _expand_glob(base, name)
    values = {k: [x.strip() for x in v.split(",") if x.strip()] for k, v in settings.items()}
    for k, vs in values.items():
        for v in vs:
            method_settings(base, {k: v})  # every value typed and checked against the options dataclass
    swept = [k for k, vs in values.items() if len(vs) > 1]
    out: list[Variant] = []
    for b, ckpt_value in bases:
        for combo in itertools.product(*values.values()):
            fixed = dict(zip(values, combo, strict=True))
            full = b + "".join(f"@{k}={v}" for k, v in fixed.items())
            typed = method_settings(b, fixed)
            if len(bases) > 1 and not swept:
                out.append(Variant(full, name, CHECKPOINT_KEY, ckpt_value))
            elif swept and len(bases) == 1:
                value = typed[swept[0]] if len(swept) == 1 else ",".join(str(typed[k]) for k in swept)
                out.append(Variant(full, name, ",".join(swept), value))
            elif swept:  # a glob and a value list: one sweep per checkpoint, over the values
                value = typed[swept[0]] if len(swept) == 1 else ",".join(str(typed[k]) for k in swept)
                out.append(Variant(full, f"{b}@" + "@".join(f"{k}={settings[k]}" for k in swept), ",".join(swept),
                                   value))
            else:
                out.append(Variant(full))
    return out


def expand_methods(names: Iterable[str]) -> list[Variant]:
    """Every `--methods` entry expanded (sweeps and globs), in order."""
    return [v for n in names for v in expand_method(n)]


def write_sweeps(run_dir: Path, variants: Sequence[tuple[Variant, str]]) -> None:
    """Write sweeps.json ({label: {sweep, key, value, name}}) when any method comes from a sweep; else remove it."""
    path = Path(run_dir) / SWEEPS_FILE
    rows = {label: asdict(v) for v, label in variants if v.sweep is not None}
    if rows:
        atomic_write_text(path, json.dumps(rows, indent=1, default=str))
    elif path.exists():
        path.unlink()


def read_sweeps(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """A run's sweeps.json ({label: {sweep, key, value, name}}), empty when the run swept nothing."""
    path = Path(run_dir) / SWEEPS_FILE
    return json.loads(path.read_text()) if path.exists() else {}
