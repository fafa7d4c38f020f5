"""Images per second of LPIPS and of Inception feature extraction at 256x256, next to clean-fid's own folder path.

    .venv/bin/python benchmarks/feature_metrics.py [--n 16] [--batch 8] [--repeats 3] [--device auto]

Both Inception rows use the same weights file (the official one when it is in the weights folder,
otherwise a randomly initialized Inception written to a temporary folder: same architecture, same
cost). The anchor is clean-fid's `get_folder_features` on the same images saved as PNG; the ratio is
ours / anchor (above 1 = faster). Each figure is the median of --repeats timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_images(n: int, size: int = 256) -> torch.Tensor:
    """n different 256x256 crops of scikit-image's bundled photos, (n,3,size,size) in [0,1]."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        img = photos[k % len(photos)]
        h, w = img.shape[:2]
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        crop = img[top : top + size, left : left + size]
        out.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls of fn after one warm-up call (finished before the clock starts)."""
    fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ensure_weights(names: list[str], tmp: Path) -> str:
    """Use the weights folder when every file is there, else random-init files in `tmp`; say which."""
    from evalsuite.metrics.weights import ALLOW_ENV, SPECS, nonstandard_reason, write_random_weights
    from evalsuite.weights import weights_dir

    folder = weights_dir()
    present = all((folder / SPECS[n].entry.filename).exists() for n in names)
    if present and all(nonstandard_reason(n, folder / SPECS[n].entry.filename) is None for n in names):
        return f"official weights from {folder}"
    os.environ["EVALSUITE_WEIGHTS"] = str(tmp)
    os.environ[ALLOW_ENV] = "1"
    for n in names:
        write_random_weights(n, tmp / SPECS[n].entry.filename)
    return "randomly initialized standard networks (no official weights here; same architecture and cost)"


def main() -> None:
    """Print images/s for LPIPS, our Inception features, and clean-fid's folder features."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="number of 256x256 images")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    from cleanfid.fid import get_folder_features

    from evalsuite.metrics.base import MetricContext
    from evalsuite.metrics.distribution import FID, to_uint8_hwc
    from evalsuite.metrics.perceptual import LPIPS

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        which = ensure_weights(["lpips-alex", "inception-fid"], tmp / "weights")
        x = make_images(args.n).to(device)
        hr = x.flip(-1)
        folder = tmp / "images"
        folder.mkdir()
        for k, arr in enumerate(to_uint8_hwc(x)):  # the 8-bit images our path extracts from
            Image.fromarray(arr).save(folder / f"{k:04d}.png")
        ctx = MetricContext(device, 4)
        lpips_metric = LPIPS(ctx)
        fid = FID(ctx)
        batches = [slice(k, k + args.batch) for k in range(0, args.n, args.batch)]

        def run_lpips() -> None:
            for b in batches:
                lpips_metric.update(x[b], hr[b], hr[b], [])

        def run_ours() -> None:
            for b in batches:
                fid.extractor.features_u8(to_uint8_hwc(x[b]))

        def run_cleanfid() -> None:
            get_folder_features(
                str(folder),
                model=fid.extractor.model,
                num_workers=0,
                batch_size=args.batch,
                device=device,
                mode="clean",
                verbose=False,
            )

        t_lpips = timed(run_lpips, args.repeats)
        t_ours = timed(run_ours, args.repeats)
        t_clean = timed(run_cleanfid, args.repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; {args.n} images 256x256, batch {args.batch}, median of {args.repeats} runs")
    print(f"weights: {which}")
    print(f"{'what':44s} {'images/s':>10s} {'ratio':>8s}")
    print(f"{'LPIPS (alex), evalsuite':44s} {args.n / t_lpips:10.2f} {'':>8s}")
    print(f"{'Inception features, evalsuite (tensors)':44s} {args.n / t_ours:10.2f} {t_clean / t_ours:8.2f}")
    print(f"{'Inception features, clean-fid folder (anchor)':44s} {args.n / t_clean:10.2f} {1.0:8.2f}")


if __name__ == "__main__":
    main()
