"""`run benchmark --lr-source cascade:BASE`: SR methods compared on the same *generated* LR images.

The LR images are a cascade base's samples (`cascade:ddpm:CKPT` or `cascade:folder:DIR`, made by
`evalsuite.cascade`, cached and seeded per image id like a cascade's base level). No HR exists for them, so
the run is a paired run whose HR folder holds placeholders (the bicubic upsampled LR, in
RUN/generated/hr-absent/) that no metric may read: only metrics that need no HR are allowed (consistency, FID
and KID against `--fid-ref`, IS, the diversity metrics), there is no HR reference row, and the report shows
no HR panel and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from evalsuite.degrade import upsample
from evalsuite.spec import BenchmarkSpec
from evalsuite.tasks import Task

PREFIX = "cascade:"
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
    """Make (or reuse) the base's samples as LR images and their HR placeholders -> (hr dir, lr dir)."""
    from evalsuite.cascade import CascadeSpec, base_level, load_image, make_missing, prepare_level_folder, save_image

    base = str(spec.lr_source)[len(PREFIX) :]
    steps = spec.method_options.get("*", {}).get("steps")
    cspec = CascadeSpec(base=base, stages=(), out=str(spec.out_dir / "generated"), n=spec.limit or 16, steps=steps,
                        seed=spec.seed, batch_size=spec.batch_size, metrics=(), report=False)
    level, make, ids = base_level(cspec, spec.out_dir / "generated", device, say)
    level.folder = spec.out_dir / "generated" / "lr"
    prepare_level_folder(level, say)
    make_missing(level, ids, spec.batch_size, make, say)
    # Placeholders where the runner expects HR files (paired data: HR = scale x LR); never scored.
    hr_dir = Path(spec.out_dir, *HR_ABSENT_DIR)
    hr_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        if not (hr_dir / f"{i}.png").exists():
            save_image(upsample(load_image(level.folder / f"{i}.png")[None], task.scale)[0], hr_dir / f"{i}.png")
    return hr_dir, level.folder
