"""The streamed-metric protocol and the metric registry: one declaration (`MetricInfo`) per metric.

A metric is built once per method by its factory `(MetricContext) -> Metric`, fed batches with
`update(sr, hr, lr, ids)`, and asked for dataset-level values with `compute()`. Per-image metrics return
their values from `update` (one tensor of shape (B,) per column); dataset-level metrics (FID, KID, IS)
accumulate statistics and return values from `compute`. A factory that cannot get its weights raises
`evalsuite.weights.MissingWeightsError`: the runner leaves the columns empty with the message as a note.
A per-image metric that cannot score an image (too small, say) raises a ValueError that names the reason.
A metric running on weights that are not the official ones sets `nonstandard` to the NON-STANDARD note
(`nonstandard_note`); the runner then marks every value it stores (summary notes, per-image flag column,
manifest, report).

Every fact about a metric (its columns with their titles, help and direction, per image or not, full- or
no-reference, whether it needs a reference set, drives the method or scores the HR images too, the smallest
image it can score, its options dataclass, its source and what it needs) is declared once, in the metric's
own module, by `register(MetricInfo(...))`. Every module of this package is imported on the first lookup,
so adding a metric is one new module (plus its test). Prefixes such as `pyiqa:` resolve names on demand
(`register_prefix`). The runner, the summary, the report and the CLI's `--metrics` help read `metric_info`.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from evalsuite.options import OptionError, build_options, check_keys, option_names
from evalsuite.plugins import load_providers


@dataclass(frozen=True)
class MetricValue:
    """A dataset-level value with an optional confidence interval and a note."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""


@dataclass(frozen=True)
class MetricContext:
    """Settings a metric may need: device, scale, Y-channel/border conventions, run folder, options."""

    device: torch.device
    scale: int
    y_channel: bool = False
    crop_border: int = 0
    run_dir: Path | None = None
    # The spec's metric_options (flat: lpips_net, fid_ref, labels, ...) plus `seed`, set by the runner.
    options: dict[str, Any] = field(default_factory=dict)
    # Where a metric says what the reader must know (few images, non-standard weights): the run's logger,
    # silent on ranks other than 0 (the runner sets it); by default the `evalsuite.metrics` logger, never print.
    log: Callable[[str], None] = logging.getLogger("evalsuite.metrics").warning

    def options_of(self, cls: type) -> Any:
        """The options dataclass `cls` filled from the keys of `options` it declares (values checked)."""
        names = set(option_names(cls))
        return build_options(cls, {k: v for k, v in self.options.items() if k in names and v is not None}, "metric")

    @property
    def seed(self) -> int:
        """The run's seed (the spec's `seed`), for metrics that draw subsets or resamples."""
        return int(self.options.get("seed") or 0)


class Metric(Protocol):
    """A streamed metric (its columns are set from its declaration by `build_metric`)."""

    columns: tuple[str, ...]

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor] | None:
        """Consume a batch (B,3,H,W) in [0,1]; per-image metrics return {column: (B,)}."""
        ...

    def compute(self) -> dict[str, MetricValue]:
        """Dataset-level values by column (per-image metrics may return {})."""
        ...


@dataclass(frozen=True)
class Column:
    """One output column of a metric: its name in the CSVs, its titles and help, and its direction."""

    name: str
    title: str  # the report's table header, with the unit: "PSNR (dB)"
    short: str  # headlines and plots: "PSNR"
    help: str  # one line for the report's header tooltip
    higher_is_better: bool | None  # None: neither direction is better (detail: 0 dB is ideal)
    # Without a direction: the ground truth's own value, to which closer is better (detail: 0.0); None: unknown.
    ideal: float | None = None

    @property
    def direction(self) -> str:
        """'higher is better', 'lower is better' or 'no direction'."""
        return {True: "higher is better", False: "lower is better"}.get(self.higher_is_better, "no direction")

    @property
    def arrow(self) -> str:
        """'↑' (higher is better), '↓' (lower is better) or '' (no direction), for table headers."""
        return {True: "\u2191", False: "\u2193"}.get(self.higher_is_better, "")


@dataclass(frozen=True)
class NoOptions:
    """The options of a metric that takes none."""


def border_window(side: int) -> Callable[[MetricContext], int]:
    """min_size for a metric that needs `side` px after cropping the border from each side."""
    return lambda ctx: side + 2 * ctx.crop_border


@dataclass(frozen=True)
class MetricInfo:
    """Everything about one metric, declared once in its own module and registered with `register`."""

    name: str  # the `--metrics` name
    factory: Callable[[MetricContext], Any]  # builds the metric (raises MissingWeightsError without weights)
    columns: tuple[Column, ...]
    help: str  # one line: the `--metrics` help and the manifest
    source: str  # the implementation it follows or wraps (docs/metrics.md)
    needs: str = ""  # weights files or extras it needs ("" = nothing beyond the base install)
    per_image: bool = True  # False: a dataset-level value from compute() (FID, KID, IS, classification)
    full_reference: bool = True  # needs the HR image; False: scores the output alone or against the LR input
    needs_reference_set: bool = False  # compares with a set of reference images (FID, KID)
    drives_method: bool = False  # calls the method on its own inputs through `evaluate` (classification)
    hr_row: bool = False  # scores the HR images too, for the summary's "reference (HR)" row (`reference()`)
    options: type = NoOptions  # frozen dataclass of its metric_options keys
    min_size: Callable[[MetricContext], int] = border_window(1)  # smallest HR side (px) it can score
    uses_samples: bool = False  # scores the K samples of an image together (`update_samples`, --samples K)
    aliases: tuple[str, ...] = ()  # other names `--metrics` accepts (top1_error -> classification)
    version: str = ""  # the version of the library it wraps, where that matters (pyiqa)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The names of its columns, in order."""
        return tuple(c.name for c in self.columns)


_REGISTRY: dict[str, MetricInfo] = {}
_ALIASES: dict[str, str] = {}
_PREFIXES: dict[str, Callable[[str], MetricInfo]] = {}  # "pyiqa" -> resolver("musiq") -> MetricInfo
_DYNAMIC: dict[str, MetricInfo] = {}  # resolved prefixed names, by full name
_SKIP = {"base", "weights", "rows"}
_FIRST = ("pixel", "perceptual")  # listed first in help and docs; the other modules follow by name


def register(info: MetricInfo) -> MetricInfo:
    """Register a metric declaration under its name and aliases (once per name)."""
    if info.name in _REGISTRY and _REGISTRY[info.name] is not info:
        raise ValueError(f"metric {info.name!r} is declared twice")
    _REGISTRY[info.name] = info
    for a in info.aliases:
        _ALIASES[a] = info.name
    return info


def register_prefix(prefix: str, resolver: Callable[[str], MetricInfo]) -> None:
    """Let `prefix:NAME` metric names resolve on demand to the declaration `resolver(NAME)` returns."""
    _PREFIXES[prefix] = resolver


def register_builtin() -> None:
    """Import every module of evalsuite.metrics, so their declarations are registered (the engine's own plugin)."""
    import evalsuite.metrics as pkg

    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
    for name in sorted(names, key=lambda n: (n not in _FIRST, _FIRST.index(n) if n in _FIRST else 0, n)):
        if name not in _SKIP and not name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{name}")


def _discover() -> None:
    """Load the metric plugins once (entry point group `evalsuite.metrics`, the engine's own first)."""
    load_providers("evalsuite.metrics")


def registered_metrics() -> dict[str, MetricInfo]:
    """Every statically declared metric, by name, in declaration order."""
    _discover()
    return dict(_REGISTRY)


def metric_prefixes() -> tuple[str, ...]:
    """The prefixes that resolve names on demand (e.g. `pyiqa`)."""
    _discover()
    return tuple(_PREFIXES)


def metric_info(name: str) -> MetricInfo:
    """The declaration of a metric by name, alias or `prefix:NAME`; ValueError listing the known ones."""
    _discover()
    key = name.strip()
    low = key.lower()
    if low in _REGISTRY:
        return _REGISTRY[low]
    if low in _ALIASES:
        return _REGISTRY[_ALIASES[low]]
    prefix, sep, rest = key.partition(":")
    if sep and prefix.lower() in _PREFIXES and rest:
        full = f"{prefix.lower()}:{rest}"
        if full not in _DYNAMIC:
            _DYNAMIC[full] = _PREFIXES[prefix.lower()](rest)
        return _DYNAMIC[full]
    import difflib

    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(low, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join([*names, *(f"{p}:NAME" for p in sorted(_PREFIXES))])
    raise ValueError(f"unknown metric {name!r}{hint}; known metrics: {known}")


def dynamic_column_metric(col: str) -> str | None:
    """The `prefix:NAME` metric a column such as `pyiqa_musiq` belongs to (None when no prefix matches)."""
    _discover()
    for p in _PREFIXES:
        if col.startswith(f"{p}_") and len(col) > len(p) + 1:
            return f"{p}:{col[len(p) + 1 :]}"
    return None


def column_metric(col: str) -> str:
    """The metric that owns a column (classification owns top1_error and top5_error)."""
    for name, info in registered_metrics().items():
        if col in info.column_names:
            return name
    return dynamic_column_metric(col) or col


def column_info(col: str) -> Column:
    """A column's declaration; an undeclared column gets its own name as title and no direction."""
    for info in registered_metrics().values():
        for c in info.columns:
            if c.name == col:
                return c
    name = dynamic_column_metric(col)
    if name is not None:
        try:
            return next(c for c in metric_info(name).columns if c.name == col)
        except (ValueError, StopIteration):
            pass
    return Column(col, col, col, "", None)


class _Directions(Mapping):
    """Read-only view {column: higher_is_better} over the declarations (for callers that want a mapping)."""

    def __getitem__(self, col: str) -> bool | None:
        return column_info(col).higher_is_better

    def __iter__(self) -> Iterator[str]:
        return iter([c.name for info in registered_metrics().values() for c in info.columns])

    def __len__(self) -> int:
        return sum(len(info.columns) for info in registered_metrics().values())


# Whether higher values are better, per column, as the declarations say.
HIGHER_IS_BETTER: Mapping[str, bool | None] = _Directions()


def resolve_metrics(names: Sequence[str]) -> list[str]:
    """Validate metric names (aliases -> their metric), keep order, no repeats."""
    out: list[str] = []
    for n in names:
        info = metric_info(n)
        if info.name not in out:
            out.append(info.name)
    return out


def nonstandard_note(metric: Any) -> str:
    """The NON-STANDARD weights note of a built metric ('' when its weights are the official ones, or it has none)."""
    return str(getattr(metric, "nonstandard", "") or "")


def build_metric(name: str, ctx: MetricContext) -> Any:
    """Build a metric from its declaration; its `columns` are the declared ones."""
    info = metric_info(name)
    metric = info.factory(ctx)
    metric.columns = info.column_names
    return metric


# Keys every metric accepts (read by evalsuite.metrics.weights), besides the metrics' own options.
COMMON_OPTIONS = ("allow_nonstandard_weights",)


def metric_option_names() -> set[str]:
    """Every key `metric_options` may hold: the declared metrics' option fields and the common keys."""
    return {n for info in registered_metrics().values() for n in option_names(info.options)} | set(COMMON_OPTIONS)


def validate_metric_options(metrics: Sequence[str], options: Mapping[str, Any]) -> None:
    """Check a spec's `metric_options` (flat) when it is loaded: unknown keys and bad values are errors."""
    if "seed" in options:
        raise OptionError("metric option 'seed' is the spec's own `seed`: set that instead")
    check_keys(options, sorted(metric_option_names()), "metric")
    # Each static metric of the spec builds its options now, so a bad value fails before any work.
    for name in metrics:
        info = _REGISTRY.get(name.strip().lower()) or _REGISTRY.get(_ALIASES.get(name.strip().lower(), ""))
        if info is not None and info.options is not NoOptions:
            own = set(option_names(info.options))
            build_options(info.options, {k: v for k, v in options.items() if k in own and v is not None}, "metric")


def metrics_help() -> str:
    """One line per metric for the CLI's `--metrics` help."""
    lines = [f"{info.name}: {info.help}" for info in registered_metrics().values()]
    lines += [f"{p}:NAME: {_PREFIXES[p].__doc__ or ''}".strip() for p in metric_prefixes()]
    return "; ".join(lines)


def describe(info: MetricInfo) -> dict[str, Any]:
    """The declaration as plain data (the manifest's `metrics` entries)."""
    return {
        "help": info.help,
        "source": info.source,
        "needs": info.needs,
        "version": info.version,
        "per_image": info.per_image,
        "full_reference": info.full_reference,
        "columns": {c.name: dataclasses.asdict(c) for c in info.columns},
    }
