"""manifest.json: what a run was made from (versions, device, inputs' hashes, method settings, conventions)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from evalsuite import distributed as D
from evalsuite.io import atomic_write_text
from evalsuite.metrics.base import metric_info
from evalsuite.metrics.weights import used_weights
from evalsuite.spec import BenchmarkSpec, stable_hash
from evalsuite.tasks import Task

PACKAGES = ("evalsuite", "torch", "torchvision", "torchmetrics", "numpy", "pillow", "lpips", "clean-fid", "pyiqa")
PACKAGES += ("diffusers", "transformers", "huggingface_hub")  # diffusers: methods, hf: checkpoints (when installed)


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages numbers depend on."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def conventions(spec: BenchmarkSpec, paired: bool = False) -> dict[str, str]:
    """The conventions the numbers follow, in words."""
    from evalsuite import realesrgan_degrade as R
    from evalsuite.prepare import PAIRED_CONSISTENCY_NOTE

    realesrgan = spec.degradation == "realesrgan" and not paired
    lr = "degrade(HR), ours (anti-aliased bicubic)" if not realesrgan else R.LR_CONVENTION
    return {
        "pixel_range": "[0,1]; SR outputs rounded to 8 bits (as saved) before scoring",
        "lr": "given (--lr), HR cropped top-left to scale x LR (BasicSR)" if paired else lr,
        "consistency": "MSE(degrade(SR), LR) on [0,1], x1e5 (SR3 Table 1)"
        + (f"; {PAIRED_CONSISTENCY_NOTE}" if paired else "")
        + (f"; {R.CONSISTENCY_NOTE}" if realesrgan else ""),
        # The key keeps its name (the file contract); the value says every metric it governs.
        "psnr_ssim": ("Y channel (BT.601, BasicSR)" if spec.y_channel else "RGB")
        + f", crop_border={spec.crop_border} (PSNR, SSIM, MS-SSIM; NIQE and the detail metrics take the crop only)",
        "ci": f"95% percentile bootstrap of the mean over images, {spec.bootstrap} resamples, seed {spec.seed}",
    }


def write_manifest(
    run_dir: Path,
    spec: BenchmarkSpec,
    task: Task,
    data_dir: Path,
    inputs: dict[str, str],
    n_skipped: int,
    methods: dict[str, Any],
    metrics: dict[str, str],
    metric_notes: dict[str, str],
    paired: bool,
    device: torch.device,
    t_start: float,
    nonstandard: dict[str, str] | None = None,
    cpu_threads: dict[str, Any] | None = None,
) -> None:
    """Write run_dir/manifest.json (`nonstandard`: metric -> NON-STANDARD weights note, also in metric_notes)."""
    manifest = {
        "spec_hash": stable_hash(spec.to_dict()),
        "task": asdict(task),
        "data": str(data_dir),
        "n_images": len(inputs),
        "n_skipped": n_skipped,
        "inputs": inputs,
        "methods": methods,
        "metrics": metrics,
        "metric_notes": metric_notes,
        # What decides whether two runs' numbers may be compared (evalsuite.comparable): the metrics' weights
        # files by content, and the versions of the libraries metrics wrap.
        "metric_weights": used_weights(),
        "metric_versions": {n: metric_info(n).version for n in metrics if metric_info(n).version},
        "nonstandard_weights": dict(nonstandard or {}),
        "paired": paired,
        "degradation": "given LR" if paired else spec.degradation,
        "conventions": conventions(spec, paired),
        "versions": versions(),
        "device": device_name(device),
        "world_size": D.world_size(),
        "cpu_threads": cpu_threads or {},
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_start)),
        "seconds": round(time.time() - t_start, 3),
    }
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=1, default=str))
