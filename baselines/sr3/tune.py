"""Choose the inference schedule after training, as the paper did: score a grid on held-out images.

Candidates are linear-β schedules (steps × β_start × β_end) plus the checkpoint's current one; each is
scored with one metric on central crops (the training size) of held-out images. The metric is FID when
its weights exist; otherwise the stated fallback LPIPS, then PSNR (the note says which was used). The
best schedule is written into a NEW checkpoint's sampling defaults; the input checkpoint is untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baselines.checkpoint import load_checkpoint, save_checkpoint
from baselines.sr3.method import SR3Method, sr3_from_checkpoint
from baselines.sr3.schedule import Schedule, from_spec, linear
from evalsuite.datasets import BadImageError, load_rgb, resolve_data, scan_folder
from evalsuite.degrade import degrade, to_tensor
from evalsuite.distributed import pick_device
from evalsuite.metrics.base import HIGHER_IS_BETTER, MetricContext, build_metric
from evalsuite.metrics.pixel import Consistency
from evalsuite.weights import MissingWeightsError

FALLBACK = ("fid", "lpips", "psnr")


@dataclass(frozen=True)
class Candidate:
    """One scored inference schedule."""

    spec: dict[str, Any]
    steps: int
    score: float
    consistency: float


def held_out_crops(data: str | Path, size: int, limit: int) -> tuple[list[str], torch.Tensor]:
    """Central `size` px crops of the first `limit` usable images -> (ids, (N,3,size,size) in [0,1])."""
    ids, crops = [], []
    for ref in scan_folder(resolve_data(data)):
        try:
            img = load_rgb(ref.path)
        except BadImageError:
            continue
        w, h = img.size
        if min(w, h) < size:
            continue
        left, top = (w - size) // 2, (h - size) // 2
        crops.append(to_tensor(img.crop((left, top, left + size, top + size))))
        ids.append(ref.image_id)
        if len(ids) >= limit:
            break
    if not ids:
        raise ValueError(f"no held-out image in {data} is at least {size}px a side")
    return ids, torch.stack(crops)


def pick_metric(name: str, device: torch.device, scale: int) -> tuple[str, Callable[[], Any]]:
    """The metric to use: `name`, or for `auto` the first of FID, LPIPS, PSNR whose weights are here."""
    names = FALLBACK if name == "auto" else (name,)
    if name != "auto" and HIGHER_IS_BETTER.get(name) is None:
        raise ValueError(f"metric {name!r} has no better direction, so it cannot rank schedules: use fid, lpips, psnr")
    missing: list[str] = []
    for n in names:
        ctx = MetricContext(device=device, scale=scale)
        try:
            build_metric(n, ctx)
        except MissingWeightsError as exc:
            missing.append(f"{n}: {str(exc).splitlines()[0]}")
            continue
        for m in missing:
            print(f"note: tune-schedule cannot use {m}")
        return n, (lambda n=n, ctx=ctx: build_metric(n, ctx))
    raise MissingWeightsError(f"no usable metric among {names}: {'; '.join(missing)}")


def score(
    method: SR3Method,
    metric_factory: Callable[[], Any],
    column: str,
    ids: Sequence[str],
    hr: torch.Tensor,
    batch: int,
) -> tuple[float, float]:
    """(metric value, mean consistency ×1e5) of the method's outputs on the held-out crops."""
    metric = metric_factory()
    consistency = Consistency(MetricContext(device=method.device, scale=method.scale))
    per_image: list[torch.Tensor] = []
    cons: list[torch.Tensor] = []
    for i in range(0, len(ids), batch):
        hr_b = hr[i : i + batch].to(method.device)
        lr_b = degrade(hr_b, method.scale)
        ids_b = ids[i : i + batch]
        sr = method(lr_b, ids_b)
        out = metric.update(sr, hr_b, lr_b, ids_b)
        if out and column in out:
            per_image.append(out[column].float().cpu())
        cons.append(consistency.update(sr, hr_b, lr_b, ids_b)["consistency"].cpu())
    final = metric.compute()
    value = (
        final[column].value
        if column in final and final[column].value is not None
        else float(torch.cat(per_image).mean())
    )
    return float(value), float(torch.cat(cons).mean())


def tune_schedule(
    ckpt: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    metric: str = "auto",
    steps_grid: Sequence[int] = (25, 50, 100),
    beta_start_grid: Sequence[float] = (1e-6, 1e-4),
    beta_end_grid: Sequence[float] = (0.1, 0.3, 0.5),
    limit: int = 16,
    batch: int = 8,
    device: str = "auto",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[Path, list[Candidate], str]:
    """Score every candidate schedule, write the best into a new checkpoint -> (path, ranked, metric)."""
    dev = pick_device(device)
    # One read of the checkpoint: its weights build the model and go unchanged into the tuned copy.
    ck = load_checkpoint(ckpt, kind="sr3")
    model, sampling = sr3_from_checkpoint(ck, dev)
    cfg = model.cfg
    ids, hr = held_out_crops(data, cfg.unet.image_size, limit)
    metric_name, factory = pick_metric(metric, dev, cfg.scale)
    higher = bool(HIGHER_IS_BETTER[metric_name])
    fallback = f" (auto: the first usable of {', '.join(FALLBACK)})" if metric == "auto" else ""
    log(f"tuning on {len(ids)} held-out crops of {cfg.unet.image_size}px with metric {metric_name}{fallback}")
    # Candidates: the checkpoint's current schedule, then the linear-β grid.
    cands: list[Schedule] = [from_spec(sampling.schedule)]
    for n, b0, b1 in itertools.product(steps_grid, beta_start_grid, beta_end_grid):
        if b0 < b1:
            cands.append(linear(int(n), float(b0), float(b1)))
    results: list[Candidate] = []
    for sched in cands:
        method = SR3Method(
            "sr3-tune",
            cfg.scale,
            model,
            sched,
            sampler=sampling.sampler,
            clip_x0=sampling.clip_x0,
            variance=sampling.variance,
            seed=seed,
            device=dev,
            bf16=dev.type == "cuda",
        )
        value, cons = score(method, factory, metric_name, ids, hr, batch)
        results.append(Candidate(sched.to_spec(), sched.T, value, cons))
        log(f"  {sched.to_spec()}: {metric_name} {value:.4f}, consistency {cons:.2f}")
    ranked = sorted(results, key=lambda c: -c.score if higher else c.score)
    best = ranked[0]
    # Write a new checkpoint: same weights and config, sampling defaults = the best schedule.
    extra = dict(ck.extra)
    extra["sampling"] = sampling.override(steps=best.steps, schedule=best.spec).to_dict()
    extra["tuned"] = {"metric": metric_name, "score": best.score, "images": len(ids), "data": str(data)}
    dest = (
        Path(out) if out else Path(ckpt).with_name(Path(ckpt).name.removesuffix(".safetensors") + "-tuned.safetensors")
    )
    save_checkpoint(dest, ck.state_dict, ck.kind, ck.config, extra)
    log(f"best: {best.spec} ({metric_name} {best.score:.4f}); written to {dest}")
    return dest, ranked, metric_name
