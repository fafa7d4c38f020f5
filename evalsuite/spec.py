"""The benchmark spec: a frozen dataclass built from flags or a YAML file, saved as spec.yaml in the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from evalsuite import plugins
from evalsuite.datasets import BUILTIN
from evalsuite.methods import normalize_method_options
from evalsuite.options import check_keys, csv_names
from evalsuite.options import config_field as F
from evalsuite.sweep import split_methods

DEFAULT_TASK = "imagenet-64-256"
PROTOCOLS = (None, "basicsr")  # named metric conventions (--protocol)
DEFAULT_METRICS = ("psnr", "ssim", "consistency", "detail", "detail_fidelity", "lpips")
# With no --methods: the interpolations and every GAN whose weights are here or obtainable.
DEFAULT_METHOD_CANDIDATES = (
    "nearest",
    "bilinear",
    "bicubic",
    "lanczos",
    "realesrgan-x4plus",
    "esrgan-thick-x4",
    "regression-demo",
    "sr3-demo",
)
# The post-run hook that writes report.html, run when `report` is true: the function a plugin registers under
# this name in entry point group `evalsuite.hooks` (the project's report package registers it).
REPORT_HOOK = "report"


@dataclass(frozen=True)
class BenchmarkSpec:
    """Everything that defines a benchmark run."""

    # Each field with metadata is a `run benchmark` flag (evalsuite.options.add_config_arguments): one home for
    # a key, its flag and its help.
    name: str = F("demo", "run name; the run folder is runs/<name> unless --out")
    data: str = F(BUILTIN, "folder of HR images (recursive), or a set name (set5, div2k-val, ...: `evalsuite data "
                  "list`)")
    lr: str | None = F(None, "paired data: folder of given LR images named as the HR ones (or a set name)")
    lr_source: str | None = F(None, "cascade:ddpm:CKPT|cascade:folder:DIR: generated LR images, no HR (--limit N)")
    degradation: str = F("bicubic", "how LR is made from HR: bicubic (the paper's) or realesrgan (the Real-ESRGAN "
                         "second-order pipeline)", choices=["bicubic", "realesrgan"])
    task: str | None = F(None, "paper task: faces-16-128, faces-64-256, faces-64-512, faces-256-1024, imagenet-64-256")
    scale: int | None = F(None, "custom integer scale (HR images keep their size)")
    methods: tuple[str, ...] = F((), "comma-separated methods, e.g. bicubic,sr3:model.safetensors; sweeps: "
                                 "sr3:CKPT@steps=10,25@sampler=ddim,ancestral, sr3:'runs/x/ckpt-*.safetensors' "
                                 "(empty: every available default method)", type=split_methods)
    metrics: tuple[str, ...] = F(DEFAULT_METRICS, "comma-separated metric names (listed from their declarations)",
                                 type=csv_names)
    out: str | None = F(None, "run folder (default runs/<name>)")
    device: str = F("auto", "where methods and metrics run", choices=["auto", "cpu", "cuda"])
    batch_size: int = F(8, "images per batch")
    limit: int | None = F(None, "use only the first N usable images (sorted by id)")
    y_channel: bool = F(False, "PSNR/SSIM on the Y channel (BasicSR)")
    crop_border: int = F(0, "pixels cropped from each side before PSNR/SSIM")
    protocol: str | None = F(None, "basicsr: exactly --y-channel --crop-border SCALE", choices=["basicsr"])
    seed: int = F(0, "seed for samplers and bootstrap")
    workers: int = F(4, "image decoding threads")
    threads: int | None = F(None, "torch CPU threads (default: one per core other processes leave free, "
                                  "re-checked every 5 s while the run goes on)")
    bootstrap: int = F(2000, "bootstrap resamples of each confidence interval")
    samples: int = F(1, "K outputs per image for stochastic methods (diversity; the table shows sample 0)")
    # Options of methods, keyed by method name or `*` ({"sr3:m.safetensors": {"steps": 50}, "*": {"tile": 64}}),
    # and of metrics (LPIPS net, FID refs); unknown keys are errors that list the valid ones. Their flags are
    # the shortcuts in evalsuite.cli (--steps, --sampler, --tile; --lpips-net, --fid-ref, --labels).
    method_options: dict[str, Any] = field(default_factory=dict)
    metric_options: dict[str, Any] = field(default_factory=dict)
    report: bool = F(True, "writing report.html")  # run REPORT_HOOK after the run's files are written: --no-report
    post_run: tuple[str, ...] = ()  # more hooks: "module:function(run_dir)" or a hook plugin's name
    # {data: [set5, DIR, ...], scales: [2, 4]}: a suite, one sub-run per (set, scale) (evalsuite/suite.py)
    suite: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Normalize sequences so a spec from YAML equals one from flags.
        object.__setattr__(self, "methods", tuple(self.methods or ()))
        object.__setattr__(self, "metrics", tuple(self.metrics or ()))
        object.__setattr__(self, "method_options", normalize_method_options(self.method_options or {}))
        object.__setattr__(self, "post_run", tuple(self.post_run or ()))
        object.__setattr__(self, "metric_options", dict(self.metric_options or {}))
        if self.metric_options:
            from evalsuite.metrics.base import validate_metric_options  # typos fail here, at spec load

            validate_metric_options(self.metrics, self.metric_options)
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")
        if self.samples < 1:
            raise ValueError(f"--samples must be at least 1, got {self.samples}")
        if self.crop_border < 0:
            raise ValueError(f"--crop-border must be >= 0, got {self.crop_border}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"--protocol must be one of {', '.join(p for p in PROTOCOLS if p)}, got {self.protocol!r}")
        if self.lr_source is not None:
            sources = plugins.names("evalsuite.lr_sources")
            if self.lr_source.partition(":")[0] not in sources or self.lr is not None:
                raise ValueError(
                    f"--lr-source {self.lr_source}: give SOURCE:ARG with SOURCE one of {', '.join(sources)}, e.g. "
                    "cascade:ddpm:CKPT or cascade:folder:DIR (and no --lr)"
                )
        if self.degradation not in ("bicubic", "realesrgan"):
            raise ValueError(f"--degradation must be bicubic or realesrgan, got {self.degradation!r}")
        if self.degradation != "bicubic" and (self.lr is not None or self.lr_source is not None):
            raise ValueError(f"--degradation {self.degradation} makes LR from HR; it cannot apply to given LR (--lr)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def out_dir(self) -> Path:
        """The run folder."""
        return Path(self.out) if self.out else Path("runs") / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) for YAML/JSON."""
        d = dataclasses.asdict(self)
        d["methods"], d["metrics"], d["post_run"] = list(self.methods), list(self.metrics), list(self.post_run)
        if d["suite"] is None:
            del d["suite"]  # a plain run's spec.yaml stays as it was
        return d

    def to_yaml(self) -> str:
        """The spec as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchmarkSpec:
        """Build from a dict, rejecting unknown keys with their names."""
        check_keys(d, (f.name for f in fields(cls)), "spec", "key")
        d = dict(d)
        for key in ("metrics",):
            if isinstance(d.get(key), str):
                d[key] = tuple(x.strip() for x in d[key].split(",") if x.strip())
        if isinstance(d.get("methods"), str):

            d["methods"] = split_methods(d["methods"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> BenchmarkSpec:
        """Load a spec file."""
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read spec file {path}: {exc}") from exc
        if not isinstance(d, dict):
            raise ValueError(f"spec file {path} must hold a mapping of keys to values")
        return cls.from_dict(d)

    @property
    def hooks(self) -> tuple[str, ...]:
        """The post-run hooks to call: the report's when `report`, then `post_run`."""
        return ((REPORT_HOOK,) if self.report else ()) + self.post_run

    def with_protocol(self, scale: int) -> BenchmarkSpec:
        """The spec with its protocol's conventions set: `basicsr` means exactly y_channel and crop_border = scale."""
        if self.protocol != "basicsr":
            return self
        if self.crop_border not in (0, scale):
            raise ValueError(
                f"--protocol basicsr sets --crop-border {scale} (the scale); drop --crop-border {self.crop_border}"
            )
        return self.replace(y_channel=True, crop_border=scale)

    def replace(self, **changes: Any) -> BenchmarkSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def stable_hash(obj: Any) -> str:
    """Short sha256 of a JSON-serializable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
