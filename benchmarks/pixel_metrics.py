"""Time the engine's PSNR+SSIM+consistency against a per-image numpy/scipy implementation.

The anchor is the way most SR repositories compute these: a Python loop over images, numpy PSNR,
scikit-image-style SSIM (scipy Gaussian filters) and a PIL bicubic resize for the consistency check.
Prints the median time of several runs for each and the speed-up (target on a 2-core CPU: >= 5x).

    .venv/bin/python benchmarks/pixel_metrics.py [--pairs 200] [--size 256] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from evalsuite.degrade import degrade, quantize, upsample
from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.pixel import PSNR, SSIM, Consistency


def make_pairs(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n real-photo HR crops (scikit-image's photos), their 4x LR and bicubic SR, 8-bit values."""
    from skimage import data

    photos = [getattr(data, k)() for k in ("astronaut", "chelsea", "coffee", "rocket")]
    rng = np.random.default_rng(0)
    hrs = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        hrs.append(torch.from_numpy(p[y : y + size, x : x + size].copy()).permute(2, 0, 1).float() / 255)
    hr = torch.stack(hrs)
    lr = quantize(degrade(hr, 4))
    sr = quantize(upsample(lr, 4))
    return sr, hr, lr


def numpy_reference(sr: np.ndarray, hr: np.ndarray, lr: np.ndarray) -> tuple[float, float, float]:
    """Per-image PSNR, SSIM (Gaussian 11/1.5, valid region) and consistency in numpy/scipy/PIL."""
    mse = np.mean((sr - hr) ** 2)
    psnr = 10 * np.log10(1.0 / mse)
    c1, c2 = 0.01**2, 0.03**2
    ssims = []
    for ch in range(3):
        a, b = sr[..., ch], hr[..., ch]
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5)  # noqa: E731
        mu_a, mu_b = f(a), f(b)
        saa, sbb, sab = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
        m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
        ssims.append(m[5:-5, 5:-5].mean())
    h, w = lr.shape[:2]
    down = np.stack(
        [
            np.asarray(Image.fromarray(sr[..., c].astype(np.float32), "F").resize((w, h), Image.BICUBIC))
            for c in range(3)
        ],
        -1,
    )
    cons = np.mean((down - lr) ** 2) * 1e5
    return psnr, float(np.mean(ssims)), cons


def time_engine(sr, hr, lr, device: torch.device, batch: int) -> float:
    """Seconds for the engine's three metrics over all pairs, batched."""
    ctx = MetricContext(device, 4)
    metrics = [PSNR(ctx), SSIM(ctx), Consistency(ctx)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(sr), batch):
        s, h, l_ = (t[i : i + batch].to(device, non_blocking=True) for t in (sr, hr, lr))
        for m in metrics:
            m.update(s, h, l_, [])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_numpy(sr, hr, lr) -> float:
    """Seconds for the per-image numpy/scipy loop."""
    srn, hrn, lrn = (t.permute(0, 2, 3, 1).double().numpy() for t in (sr, hr, lr))
    t0 = time.perf_counter()
    for k in range(len(srn)):
        numpy_reference(srn[k], hrn[k], lrn[k])
    return time.perf_counter() - t0


def main() -> None:
    """Run the benchmark and print medians and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    sr, hr, lr = make_pairs(args.pairs, args.size)
    time_engine(sr[: args.batch], hr[: args.batch], lr[: args.batch], device, args.batch)  # warm-up
    eng = [time_engine(sr, hr, lr, device, args.batch) for _ in range(args.repeats)]
    ref = [time_numpy(sr, hr, lr) for _ in range(max(1, args.repeats // 2))]
    e, r = statistics.median(eng), statistics.median(ref)
    print(f"pairs: {args.pairs} x {args.size}^2, device {device}, torch threads {torch.get_num_threads()}")
    print(f"engine (PSNR+SSIM+consistency, batch {args.batch}): {e:.3f} s, {args.pairs / e:.0f} pairs/s")
    print(f"numpy/scipy per-image loop (anchor): {r:.3f} s, {args.pairs / r:.0f} pairs/s")
    print(f"medians of {len(eng)} and {len(ref)} runs; speed-up vs anchor: {r / e:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
