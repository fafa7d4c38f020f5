"""The Method protocol and the registry that turns names like `bicubic` or `sr3:CKPT` into methods.

A method maps an LR batch (B,3,h,w) in [0,1] to an SR batch (B,3,h*s,w*s). Every factory takes the
method's argument (the part after `prefix:`, or None), a `MethodContext`, and returns a `Method`.
Factories are named as "module:function" strings, imported only when used, so heavy methods cost nothing
until they are asked for. Methods are registered by plugins (`evalsuite.plugins`): the entry point group
`evalsuite.methods`, the project's own methods included, and modules named in $EVALSUITE_PLUGINS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from evalsuite.hub import HubError, hub_label, is_hub_ref, resolve_hub_ref
from evalsuite.lazy import load_object
from evalsuite.options import OptionError, build_options, check_keys, option_names
from evalsuite.plugins import load_providers
from evalsuite.variants import split_variant, typed_settings, variant_label

T = TypeVar("T")


@runtime_checkable
class Method(Protocol):
    """An SR method under test."""

    name: str
    scale: int

    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """(B,3,h,w) in [0,1] -> (B,3,h*scale,w*scale); `ids` name the images (for per-image seeds)."""
        ...


@dataclass(frozen=True)
class MethodContext:
    """What a factory may need: the task's scale, the device, and the method's options from the spec."""

    scale: int
    device: torch.device = torch.device("cpu")
    seed: int = 0
    # The method's options dataclass instance (e.g. SR3 sampler options); a plain dict for methods
    # registered without one (users' plugins).
    options: Any = field(default_factory=dict)

    def options_of(self, cls: type[T]) -> T:
        """The method's options as its dataclass `cls` (a plain dict, as tests and callers may pass, is checked)."""
        if isinstance(self.options, cls):
            return self.options
        if isinstance(self.options, Mapping):
            return build_options(cls, self.options, f"method options {cls.__name__}")
        raise TypeError(f"method options are a {type(self.options).__name__}, expected {cls.__name__}")


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its factory and, optionally, a check that says whether it can run here."""

    target: str  # "module:function" -> factory(arg, ctx) -> Method
    help: str
    takes_arg: bool = False  # True for prefixes such as `folder:DIR`
    available: str | None = None  # "module:function" -> () -> (bool, reason)
    options: str | None = None  # "module:Class": the frozen options dataclass (None: takes no options)
    free_options: bool = False  # a plugin without an options class: its dict is passed as given
    # The scales it can run at: a tuple, or "module:function" -> (arg) -> tuple | None; None: any (or unknown).
    scales: tuple[int, ...] | str | None = None

    def options_class(self) -> type | None:
        """The options dataclass, imported on first use."""
        return load_object(self.options) if self.options else None


REGISTRY: dict[str, MethodEntry] = {}


def register(
    name: str,
    target: str,
    help: str,
    takes_arg: bool = False,
    available: str | None = None,
    options: str | None = None,
    free_options: bool = False,
    scales: tuple[int, ...] | str | None = None,
) -> None:
    """Register a method name (or a `prefix` for `prefix:ARG` names) with its options dataclass, if any."""
    REGISTRY[name] = MethodEntry(target, help, takes_arg, available, options, free_options, scales)


def registered_methods() -> dict[str, MethodEntry]:
    """Every method name or prefix, its provider plugins (entry points, $EVALSUITE_PLUGINS) loaded first."""
    load_providers("evalsuite.methods")
    return REGISTRY


def split_name(spec: str) -> tuple[str, str | None]:
    """'sr3:path/ckpt' -> ('sr3', 'path/ckpt'); 'bicubic' -> ('bicubic', None); settings (`@steps=10`) dropped."""
    spec = split_variant(spec)[0]
    registry = registered_methods()
    if spec in registry:
        return spec, None
    prefix, sep, arg = spec.partition(":")
    if sep and prefix in registry and registry[prefix].takes_arg:
        return prefix, arg
    known = ", ".join(k + (":ARG" if v.takes_arg else "") for k, v in sorted(registry.items()))
    raise ValueError(f"unknown method {spec!r}; known methods: {known}")


ALL_METHODS = "*"  # method_options key: options for every method that has them


def normalize_method_options(method_options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Check `method_options` (keyed by method name, or `*`) and return it as {key: {option: value}}.

    A flat dict of options (the older form, `{steps: 50}`) means `*`. Under `*` every key must be an option
    of some method; under a method's name, an option of that method. Typos fail with the valid keys.
    """
    opts = dict(method_options or {})
    if opts and not any(isinstance(v, Mapping) for v in opts.values()):
        opts = {ALL_METHODS: opts}
    out: dict[str, dict[str, Any]] = {}
    for key, values in opts.items():
        if not isinstance(values, Mapping):
            raise OptionError(
                f"method_options[{key!r}] must be a mapping of options, got {values!r}; "
                "key method_options by method name (e.g. {'sr3:model.safetensors': {'steps': 50}}) or '*'"
            )
        if key == ALL_METHODS:
            known = {n for e in registered_methods().values() if e.options for n in option_names(e.options_class())}
            check_keys(values, known, "method")
        else:
            entry = registered_methods()[split_name(key)[0]]
            cls = entry.options_class()
            if cls is not None:
                build_options(cls, values, f"method {key!r}")
            elif not entry.free_options:
                check_keys(values, [], f"method {key!r}")
        out[key] = dict(values)
    return out


def method_settings(base: str, fixed: dict[str, str]) -> dict[str, Any]:
    """A name's settings (`@steps=10`) typed and checked against the options of the method `base` names."""
    entry = registered_methods()[split_name(base)[0]]
    return typed_settings(entry.options_class(), entry.free_options, base, fixed)


def method_options(spec: str, method_options: Mapping[str, dict[str, Any]]) -> Any:
    """The options of one method: `*` values it knows, then its registry key's, then its full name's."""
    key, _ = split_name(spec)
    entry = registered_methods()[key]
    cls = entry.options_class()
    base, fixed = split_variant(spec)
    merged: dict[str, Any] = {}
    for k in dict.fromkeys((ALL_METHODS, key, base, spec)):
        values = dict(method_options.get(k) or {})
        if k == ALL_METHODS:
            values = {n: v for n, v in values.items() if cls is not None and n in option_names(cls)}
        merged.update(values)
    merged.update(method_settings(base, fixed))  # a sweep's settings (`@steps=10`) win
    if cls is None:
        return merged
    return build_options(cls, merged, f"method {spec!r}")


def options_dict(options: Any) -> dict[str, Any]:
    """An options instance (or plugin dict) as a plain dict, for hashing and manifests."""
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)


def build_method(spec: str, ctx: MethodContext) -> Method:
    """Build a method from its name in `--methods`."""
    key, arg = split_name(spec)
    entry = registered_methods()[key]
    spec = split_variant(spec)[0]  # its settings reached the factory through ctx.options
    if entry.takes_arg and not arg:
        raise ValueError(f"method {key!r} needs an argument: {key}:PATH")
    factory = load_object(entry.target)
    hub = None
    if entry.takes_arg and is_hub_ref(arg):
        # hf:ORG/REPO[/FILE][@REV]: the file (or the repository's folder) from the Hugging Face cache.
        path, hub = resolve_hub_ref(arg)
        arg = str(path)
    try:
        method = factory(arg, ctx) if entry.takes_arg else factory(key, ctx)
    except Exception as exc:
        files = sorted((hub or {}).get("files_sha256") or {})
        if hub is None or hub.get("file") or "model_index.json" in files:  # a file, or a pipeline folder
            raise
        # A whole repository (not a pipeline) given to a method that reads one file: say which files there are.
        listed = ", ".join(files[:12]) + (f" and {len(files) - 12} more" if len(files) > 12 else "")
        raise HubError(
            f"{spec}: {type(exc).__name__}: {exc}. A method that reads one file needs it named, "
            f"hf:ORG/REPO/FILE; the repository holds: {listed or 'no files'}"
        ) from exc
    if hub is not None:
        # Recorded in the manifest (repository, commit, sha256); set even on a frozen dataclass of a plugin.
        object.__setattr__(method, "hub_source", hub)
    if method.scale != ctx.scale:
        raise ValueError(f"method {spec!r} upscales {method.scale}x but the task needs {ctx.scale}x")
    return method


def method_available(spec: str) -> tuple[bool, str]:
    """Whether a registered method can run here (weights present or obtainable), with the reason."""
    key, _ = split_name(spec)
    entry = registered_methods()[key]
    if entry.available is None:
        return True, ""
    try:
        return load_object(entry.available)()
    except Exception as exc:  # a broken optional dependency means "not available", with the reason
        return False, f"{type(exc).__name__}: {exc}"


def method_label(spec: str) -> str:
    """A short, file-name-safe label for a method spec (the `method` column and outputs/<label>/)."""
    key, arg = split_name(spec)
    if arg is None:
        return variant_label(spec, key)
    if is_hub_ref(arg):
        return variant_label(spec, re.sub(r"[^A-Za-z0-9._-]+", "_", f"{key}-{hub_label(arg)}"))
    stem = re.sub(r"\.(safetensors|pth|pt|ckpt|bin)$", "", arg.rstrip("/\\").replace("\\", "/").split("/")[-1])
    return variant_label(spec, re.sub(r"[^A-Za-z0-9._-]+", "_", f"{key}-{stem}"))


def method_scales(spec: str) -> tuple[int, ...] | None:
    """The scales a method can run at (from its registration or its checkpoint), or None: any, or unknown."""
    key, arg = split_name(spec)
    scales = registered_methods()[key].scales
    if isinstance(scales, str):
        try:
            scales = load_object(scales)(arg)
        except Exception:  # unreadable checkpoint: unknown here; building it says why
            return None
    return tuple(scales) if scales else None


def image_seed(seed: int, image_id: str) -> int:
    """A stable 63-bit seed for one image, so image k gets the same noise at any batch size or rank."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def image_generators(seed: int, ids: Sequence[str], device: torch.device) -> list[torch.Generator]:
    """One torch.Generator per image, seeded by `image_seed`."""
    gens = []
    for image_id in ids:
        g = torch.Generator(device=device)
        g.manual_seed(image_seed(seed, image_id))
        gens.append(g)
    return gens
