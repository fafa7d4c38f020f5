"""`run benchmark --lr-source cascade:BASE`: SR methods compared on the same *generated* LR images.

The LR images are a cascade base's samples (`cascade:ddpm:CKPT` or `cascade:folder:DIR`, made by
the `cascade` LR-source plugin, cached and seeded per image id like a cascade's base level). No HR exists for them, so
the run is a paired run whose HR folder holds placeholders (the bicubic upsampled LR, in
RUN/generated/hr-absent/) that no metric may read: only metrics that need no HR are allowed (consistency, FID
and KID against `--fid-ref`, IS, the diversity metrics), there is no HR reference row, and the report shows
no HR panel and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from evalsuite import plugins
from evalsuite.datasets import load_rgb
from evalsuite.degrade import to_image, to_tensor, upsample
from evalsuite.io import save_png
from evalsuite.spec import BenchmarkSpec
from evalsuite.tasks import Task

LR_SOURCE_GROUP = "evalsuite.lr_sources"  # name: the prefix (cascade), object: the generator
NO_HR_METRICS = ("consistency", "fid", "kid", "is", "diversity", "lpips_diversity")
NO_HR_NOTE = (
    "generated LR (--lr-source {src}): no HR exists, so only no-reference metrics, consistency (with the "
    "generated LR itself) and FID/KID against --fid-ref apply; there is no HR reference row"
)
HR_ABSENT_DIR = ("generated", "hr-absent")


def hr_absent(run_dir: Path) -> bool:
    """Whether a run folder's HR images are placeholders (a `--lr-source` run): reports show no HR panel."""
    return Path(run_dir, *HR_ABSENT_DIR).is_dir()


def check_metrics(spec: BenchmarkSpec, metrics: list[str]) -> None:
    """Refuse, before any work, a metric that needs HR, and FID/KID without a reference set."""
    bad = [m for m in metrics if m not in NO_HR_METRICS]
    if bad:
        raise ValueError(
            f"--lr-source {spec.lr_source}: no HR exists for generated images, so {', '.join(bad)} cannot be "
            f"computed; choose --metrics from {', '.join(NO_HR_METRICS)}"
        )
    if {"fid", "kid"} & set(metrics) and not spec.metric_options.get("fid_ref"):
        raise ValueError(f"--lr-source {spec.lr_source}: FID/KID need --fid-ref (a reference folder or .npz)")


def generated_inputs(
    spec: BenchmarkSpec, task: Task, device: torch.device, say: Callable[[str], None]
) -> tuple[Path, Path]:
    """Make (or reuse) the generated LR images and their HR placeholders -> (hr dir, lr dir).

    The generator is the plugin registered under the source's prefix (`cascade:` -> entry point `cascade` of group
    `evalsuite.lr_sources`), called with (spec, task, device, say, hr_dir) and returning the LR folder.
    """
    prefix = str(spec.lr_source).partition(":")[0]
    generate = plugins.get(LR_SOURCE_GROUP, prefix, "LR source")
    hr_dir = Path(spec.out_dir, *HR_ABSENT_DIR)
    lr_dir = generate(spec, task, device, say)
    # Placeholders where the runner expects HR files (paired data: HR = scale x LR); never scored.
    hr_dir.mkdir(parents=True, exist_ok=True)
    for p in sorted(lr_dir.glob("*.png")):
        if not (hr_dir / p.name).exists():
            save_png(to_image(upsample(to_tensor(load_rgb(p))[None], task.scale)[0]), hr_dir / p.name)
    return hr_dir, lr_dir
