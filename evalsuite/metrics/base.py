"""The streamed-metric protocol and the metric registry.

A metric is built once per method by its factory `(MetricContext) -> Metric`, fed batches with
`update(sr, hr, lr, ids)`, and asked for dataset-level values with `compute()`. Per-image metrics return
their values from `update` (one tensor of shape (B,) per column); dataset-level metrics (FID, KID, IS)
accumulate statistics and return values from `compute`. A factory that cannot get its weights raises
`evalsuite.weights.MissingWeightsError`: the runner leaves the columns empty with the message as a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from evalsuite.lazy import load_object


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
    options: dict[str, Any] = field(default_factory=dict)  # e.g. lpips_net, fid_ref, labels

    def option(self, key: str, default: Any = None) -> Any:
        """An option from the spec, or the default when unset."""
        value = self.options.get(key)
        return default if value is None else value


class Metric(Protocol):
    """A streamed metric."""

    name: str
    columns: tuple[str, ...]
    per_image: bool

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor] | None:
        """Consume a batch (B,3,H,W) in [0,1]; per-image metrics return {column: (B,)}."""
        ...

    def compute(self) -> dict[str, MetricValue]:
        """Dataset-level values by column (per-image metrics may return {})."""
        ...


@dataclass(frozen=True)
class MetricEntry:
    """A registered metric: its factory, columns and whether it is per image."""

    target: str  # "module:function" -> factory(ctx) -> Metric
    columns: tuple[str, ...]
    per_image: bool
    help: str


METRICS: dict[str, MetricEntry] = {}


def register_metric(name: str, target: str, columns: Sequence[str], per_image: bool, help: str) -> None:
    """Register a metric under its `--metrics` name."""
    METRICS[name] = MetricEntry(target, tuple(columns), per_image, help)


register_metric("psnr", "evalsuite.metrics.pixel:PSNR", ["psnr"], True, "PSNR in dB against HR (higher is better)")
register_metric("ssim", "evalsuite.metrics.pixel:SSIM", ["ssim"], True, "SSIM against HR (higher is better)")
register_metric(
    "consistency",
    "evalsuite.metrics.pixel:Consistency",
    ["consistency"],
    True,
    "MSE(degrade(SR), LR) x1e5 on [0,1] (lower is better)",
)
register_metric(
    "detail",
    "evalsuite.metrics.pixel:Detail",
    ["detail"],
    True,
    "fine-detail energy above the LR band, SR vs HR in dB (0 = as the truth; <0 blurry, >0 noisy)",
)
register_metric(
    "detail_fidelity",
    "evalsuite.metrics.pixel:DetailFidelity",
    ["detail_fidelity"],
    True,
    "SSIM-like index of SR vs HR fine detail above the LR band (1 = the true detail; 0 = noise, shift or blur)",
)
register_metric("lpips", "evalsuite.metrics.perceptual:LPIPS", ["lpips"], True, "LPIPS distance to HR (lower)")
register_metric(
    "diversity",
    "evalsuite.metrics.diversity:Diversity",
    ["diversity"],
    True,
    "mean per-pixel std across --samples K outputs on [0,1] (0 = one output for every draw)",
)
register_metric(
    "lpips_diversity",
    "evalsuite.metrics.diversity:LPIPSDiversity",
    ["lpips_diversity"],
    True,
    "mean pairwise LPIPS between the --samples K outputs (0 = identical samples)",
)
register_metric("fid", "evalsuite.metrics.distribution:FID", ["fid"], False, "clean-fid FID vs references (lower)")
register_metric("kid", "evalsuite.metrics.distribution:KID", ["kid"], False, "clean-fid KID vs references (lower)")
register_metric("is", "evalsuite.metrics.distribution:InceptionScore", ["is"], False, "Inception Score (higher)")
register_metric(
    "classification",
    "evalsuite.metrics.classification:Classification",
    ["top1_error", "top5_error"],
    False,
    "ResNet-50 top-1/top-5 error, SR3 Table 3 protocol (lower)",
)

# Whether higher values are better, per column (for reports and tables).
HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "consistency": False,
    "detail": None,  # 0 dB is ideal: neither direction is better
    "detail_fidelity": True,
    "lpips": False,
    "diversity": None,  # more spread is not better in itself (noise spreads too)
    "lpips_diversity": None,
    "fid": False,
    "kid": False,
    "is": True,
    "top1_error": False,
    "top5_error": False,
}


def column_metric(col: str) -> str:
    """The registered metric that owns a column (classification owns top1_error and top5_error)."""
    for name, entry in METRICS.items():
        if col in entry.columns:
            return name
    return col


def resolve_metrics(names: Sequence[str]) -> list[str]:
    """Validate metric names (aliases: top1_error/top5_error -> classification), keep order, no repeats."""
    out: list[str] = []
    for n in names:
        n = n.strip().lower()
        if n in ("top1_error", "top5_error", "top1", "top5"):
            n = "classification"
        if n not in METRICS:
            raise ValueError(f"unknown metric {n!r}; known metrics: {', '.join(METRICS)}")
        if n not in out:
            out.append(n)
    return out


def build_metric(name: str, ctx: MetricContext) -> Metric:
    """Build a registered metric."""
    entry = METRICS[name]
    return load_object(entry.target)(ctx)
