"""Images per second of LPIPS and of Inception feature extraction at 256x256, next to clean-fid's own folder path.

    .venv/bin/python benchmarks/feature_metrics.py [--n 16] [--batch 8] [--repeats 3] [--device auto] [--peers]

`--peers` also times MS-SSIM, LPIPS and DISTS against the libraries people use for them, on the same
images with the same (random) weights, printing each one's largest difference from our values (pytorch-msssim
windows only the valid positions where torchmetrics pads the border, so it differs): MS-SSIM vs torchmetrics and
pytorch-msssim (the `bench` extra); LPIPS vs the `lpips` package and torchmetrics; DISTS vs DISTS_pytorch
and pyiqa. The peers load torchvision backbones from torch hub's cache: the random files are written there
under the official names, and our metrics read the same files (EVALSUITE_WEIGHTS points at that folder).

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


def _peer_weights(tmp: Path) -> None:
    """Random AlexNet and VGG-16 under their official names in torch hub's cache, also our weights folder."""
    from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights

    os.environ["TORCH_HOME"] = str(tmp / "torch")
    hub = tmp / "torch" / "hub" / "checkpoints"
    for n in ("lpips-alex", "lpips-vgg"):
        write_random_weights(n, hub / SPECS[n].entry.filename, seed=1)
    os.environ["EVALSUITE_WEIGHTS"] = str(hub)
    os.environ[ALLOW_ENV] = "1"


def compare_peers(n: int, batch: int, repeats: int, device: torch.device) -> None:
    """Time MS-SSIM, LPIPS and DISTS against their usual libraries (same images, same weights), checked."""
    from evalsuite.metrics.base import MetricContext, build_metric

    x = make_images(n).to(device)
    y = (x.flip(-1) * 0.7 + x * 0.3).clamp(0, 1)  # related but different images
    batches = [slice(k, k + batch) for k in range(0, n, batch)]

    def per_batch(fn):
        return lambda: torch.cat([fn(x[b], y[b]).reshape(-1).float().cpu() for b in batches])

    with tempfile.TemporaryDirectory() as tmp_name:
        _peer_weights(Path(tmp_name))
        ctx = MetricContext(device, 4, options={"lpips_net": "alex"})
        groups: dict[str, list[tuple[str, object]]] = {}
        ms = build_metric("ms_ssim", ctx)
        groups["MS-SSIM"] = [("evalsuite", per_batch(lambda a, b: ms.update(a, b, b, [])["ms_ssim"]))]
        from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_msssim

        groups["MS-SSIM"].append(
            ("torchmetrics", per_batch(lambda a, b: tm_msssim(a, b, data_range=1.0, reduction="none")))
        )
        try:
            from pytorch_msssim import ms_ssim as pm_msssim

            groups["MS-SSIM"].append(
                ("pytorch-msssim", per_batch(lambda a, b: pm_msssim(a, b, data_range=1.0, size_average=False)))
            )
        except ImportError:
            print("pytorch-msssim not installed (pip install '.[bench]'): its row is left out")
        lp = build_metric("lpips", ctx)
        groups["LPIPS (alex)"] = [("evalsuite", per_batch(lambda a, b: lp.update(a, b, b, [])["lpips"]))]
        import lpips as lpips_pkg

        ref = lpips_pkg.LPIPS(net="alex", verbose=False).to(device).eval()
        groups["LPIPS (alex)"].append(("lpips", per_batch(lambda a, b: ref(a * 2 - 1, b * 2 - 1))))
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        # Built once; it reduces over the batch, so per-image values take one call per image.
        tm_lp = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device)
        groups["LPIPS (alex)"].append(
            ("torchmetrics", per_batch(lambda a, b: torch.stack([
                tm_lp(a[k : k + 1], b[k : k + 1]) for k in range(a.shape[0])
            ])))
        )  # fmt: skip
        ds = build_metric("dists", ctx)
        groups["DISTS"] = [("evalsuite", per_batch(lambda a, b: ds.update(a, b, b, [])["dists"]))]
        import DISTS_pytorch.DISTS_pt as dists_pt

        ab = torch.load(Path(dists_pt.__file__).parent / "weights.pt", map_location="cpu", weights_only=True)
        peer = dists_pt.DISTS(load_weights=False)
        peer.alpha.data, peer.beta.data = ab["alpha"], ab["beta"]
        peer = peer.to(device).eval()
        groups["DISTS"].append(("DISTS_pytorch", per_batch(lambda a, b: peer(a, b, batch_average=False))))
        try:
            from pyiqa.archs.dists_arch import DISTS as PyiqaDISTS

            piq = PyiqaDISTS(pretrained=False)
            piq.alpha.data, piq.beta.data = ab["alpha"], ab["beta"]
            piq = piq.to(device).eval()
            groups["DISTS"].append(("pyiqa", per_batch(lambda a, b: piq(a, b))))
        except ImportError:
            print("pyiqa not installed (make iqa): its DISTS row is left out")
        print(f"\npeers: {n} images 256x256, batch {batch}, median of {repeats} runs; load {os.getloadavg()}")
        print(f"{'metric':14s} {'library':16s} {'images/s':>9s} {'ours/it':>8s} {'max |diff|':>11s}")
        for metric, rows in groups.items():
            with torch.no_grad():
                ours_vals = rows[0][1]()
                times = {name: timed(fn, repeats) for name, fn in rows}
                diffs = {name: float((fn() - ours_vals).abs().max()) for name, fn in rows}
            for name, _ in rows:
                ratio = times[name] / times["evalsuite"]
                print(f"{metric:14s} {name:16s} {n / times[name]:9.2f} {ratio:8.2f} {diffs[name]:11.2e}")
            fastest = min(t for k, t in times.items() if k != "evalsuite")
            print(f"{metric:14s} {'-> vs fastest peer':16s} {'':>9s} {fastest / times['evalsuite']:8.2f}")


def main() -> None:
    """Print images/s for LPIPS, our Inception features, and clean-fid's folder features."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="number of 256x256 images")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--peers", action="store_true", help="also MS-SSIM, LPIPS, DISTS against their libraries")
    p.add_argument("--peers-only", action="store_true", help="only the peer comparison")
    args = p.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if args.peers_only:
        compare_peers(args.n, args.batch, args.repeats, device)
        return
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
    if args.peers:
        compare_peers(args.n, args.batch, args.repeats, device)


if __name__ == "__main__":
    main()
