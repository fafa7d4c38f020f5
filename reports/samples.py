"""The report's sample-diversity section: for a few images, the K samples of each stochastic method side
by side and a heat map of the per-pixel standard deviation across them (runs made with --samples K)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from PIL import Image

from reports import images as I

# What the SR3 paper says about its own samples, in words a reader of the report can act on.
READING = (
    "The SR3 paper notes that its samples vary little for one input (a form of mode dropping) and that it "
    "smooths away small details. Each row shows the K samples a stochastic method drew for one LR input and, "
    "last, where they differ (per-pixel standard deviation; dark = every sample agrees). Low diversity means "
    "the model ignores most of the plausible outputs for that input; high diversity is not better in itself "
    "(noise also varies), so read it next to the fidelity and perceptual columns."
)


def sample_paths(run_dir: Path, method: str, image_id: str) -> list[Path]:
    """Sample 0 (the method's output) and samples 1..K-1 of one image, those that exist."""
    first = run_dir / "outputs" / method / f"{image_id}.png"
    folders = sorted((run_dir / "outputs" / method / "samples").glob("s*"), key=lambda p: int(p.name[1:]))
    return [p for p in [first, *(f / f"{image_id}.png" for f in folders)] if p.exists()]


def std_heatmap(stack: np.ndarray, max_side: int) -> tuple[str, float]:
    """A PNG data URI of the per-pixel std across samples (K,H,W,3), magma-coloured, and its maximum."""
    std = stack.std(axis=0).mean(axis=-1)  # (H, W), on [0,1]
    top = float(std.max())
    rgb = colormaps["magma"](std / top if top > 0 else std)[..., :3]
    im = Image.fromarray((rgb * 255).round().astype(np.uint8))
    im.thumbnail((max_side, max_side), Image.Resampling.NEAREST)
    return I.png_uri(im), top


def _chosen(per_image: pd.DataFrame, method: str, ids: list[str], n: int) -> list[tuple[str, str]]:
    """Up to n images: the most and least diverse and the median one (by `diversity` when it was scored)."""
    rows = per_image[per_image["method"] == method]
    if "diversity" not in rows or rows["diversity"].isna().all():
        return [(i, "first images") for i in ids[:n]]
    d = rows.dropna(subset=["diversity"]).sort_values("diversity", kind="stable")
    picks = [(d.iloc[-1], "most diverse"), (d.iloc[len(d) // 2], "median diversity"), (d.iloc[0], "least diverse")]
    out: list[tuple[str, str]] = []
    for r, why in picks:
        if r["image_id"] not in [i for i, _ in out]:
            out.append((str(r["image_id"]), f"{why} ({r['diversity']:.4f})"))
    return out[:n]


def samples_section(run_dir: Path, per_image: pd.DataFrame, methods: list[str], n: int = 3, max_side: int = 192):
    """The section's context, or None when no method of the run has samples."""
    blocks: list[dict[str, Any]] = []
    for m in methods:
        if not (run_dir / "outputs" / m / "samples").is_dir():
            continue
        ids = sorted(per_image[per_image["method"] == m]["image_id"].astype(str))
        rows = []
        for image_id, why in _chosen(per_image, m, ids, n):
            paths = sample_paths(run_dir, m, image_id)
            if len(paths) < 2:
                continue
            stack = np.stack([I.load_array(p) for p in paths])
            heat, top = std_heatmap(stack, max_side)
            thumbs = [I.thumbnail_uri(p, max_side, quality=90) for p in paths]
            rows.append({"id": image_id, "why": why, "samples": thumbs, "heat": heat, "max_std": f"{top:.3f}"})
        if rows:
            blocks.append({"method": m, "k": len(sample_paths(run_dir, m, rows[0]["id"])), "rows": rows})
    return {"reading": READING, "methods": blocks} if blocks else None
