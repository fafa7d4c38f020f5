"""Time the engine's pixel metrics against the toolkits SR papers use, on a quiet and on a busy machine.

1. PSNR+SSIM on the Y channel with a 4-px crop border (the SR-paper convention) on the same pairs: ours,
   torchmetrics, pyiqa and BasicSR (basicsr-fixed), each checked to give our numbers to 1e-4, with each
   one's median time and our ratio to the fastest peer (target: >= 2x), at 256 px and at DIV2K size
   (2040x1356).
2. NIQE: ours (batched torch) against BasicSR's calculate_niqe (target: >= 5x), checked to 1e-3.
3. Both again with a competing load the script starts itself (`--load 2`: two busy processes, as another
   user's jobs would be), then stops.
4. The old anchor (quiet, first size): PSNR+SSIM+consistency as a per-image numpy/scipy/PIL loop.

"Ours" is timed the way a run computes it: torch threads chosen by evalsuite.cpu (one per free core, from the
load seen now) and each metric call within its pixel budget. The peers run as their users run them: the
torch-based ones with torch's default threads (one per core), BasicSR with numpy/OpenCV's.

Every figure is printed with the CPU model and its vector extensions (and what torch dispatches to):
the same code runs at different speeds on AVX-512 and AVX2-only machines. Medians of `--repeats` runs.

    .venv/bin/python benchmarks/pixel_metrics.py [--sizes 256,div2k] [--load 2] [--repeats 3] [--device cpu]
    .venv/bin/python benchmarks/pixel_metrics.py --niqe-only --sizes 256 --load 0   # NIQE alone, quiet
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from benchtools import cpuinfo  # benchmarks/benchtools.py (the script's own folder is on sys.path)
from PIL import Image
from scipy.ndimage import gaussian_filter

from evalsuite.cpu import ThreadGovernor, others_running, pixel_chunks, usable_cores
from evalsuite.degrade import degrade, quantize, upsample
from evalsuite.metrics.base import MetricContext, build_metric
from evalsuite.metrics.pixel import PSNR, SSIM, Consistency, prepare_pair

CROP = 4  # the crop border of the toolkit comparison
SLOW_PEER_PAIRS = 40  # pyiqa is timed on this many pairs and scaled (it takes ~1 s per pair on a small CPU)


def cpu_info() -> str:
    """CPU model, vendor, vector extensions (/proc/cpuinfo) and the kernels torch dispatches to."""
    model, vendor, ext = cpuinfo()
    return (
        f"{model} ({vendor}), {usable_cores()} usable cores; vector extensions: "
        f"{' '.join(ext) or 'none listed'}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"MKL {'on' if torch.backends.mkl.is_available() else 'off'}, {torch.get_num_threads()} threads"
    )


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def make_pairs(n: int, height: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n real-photo HR images (scikit-image's photos), their 4x LR and bicubic SR, 8-bit values.

    Crops where the photos are large enough; above their size (DIV2K's 2040x1356) each photo is enlarged
    with Lanczos and given +-3 of noise, so the images have a photo's structure at that size.
    """
    from skimage import data

    width = width or height
    photos = [getattr(data, k)() for k in ("astronaut", "chelsea", "coffee", "rocket")]
    rng = np.random.default_rng(0)
    hrs = []
    for i in range(n):
        p = photos[i % len(photos)]
        if p.shape[0] > height and p.shape[1] > width:
            y, x = rng.integers(0, p.shape[0] - height), rng.integers(0, p.shape[1] - width)
            hr = p[y : y + height, x : x + width]
        else:
            big = np.asarray(Image.fromarray(p).resize((width, height), Image.LANCZOS), dtype=np.int16)
            hr = np.clip(big + rng.integers(-3, 4, big.shape), 0, 255).astype(np.uint8)
        hrs.append(torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1).float() / 255)
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


OURS_THREADS: int | None = None  # --ours-threads: a fixed count instead of the engine's choice (for an A/B)


def ours_y(sr, hr, device: torch.device, batch: int) -> np.ndarray:
    """(N, 2) PSNR-Y and SSIM-Y, crop 4, as a run computes them: threads by free cores, calls within the budget."""
    ThreadGovernor(fixed=OURS_THREADS).tick()
    ctx = MetricContext(device, 4, y_channel=True, crop_border=CROP)
    psnr, ssim = PSNR(ctx), SSIM(ctx)
    out = []
    h, w = sr.shape[-2:]
    for i in range(0, len(sr), batch):
        s, t = sr[i : i + batch].to(device), hr[i : i + batch].to(device)
        for c in pixel_chunks(len(s), h, w) if device.type == "cpu" else [list(range(len(s)))]:
            a, b = s[c], t[c]
            out.append(torch.stack([psnr.update(a, b, b, [])["psnr"], ssim.update(a, b, b, [])["ssim"]], 1).cpu())
    return torch.cat(out).double().numpy()


def default_threads() -> None:
    """Torch's own default (one thread per core), as the torch-based peers run for their users."""
    torch.set_num_threads(usable_cores())


def torchmetrics_y(sr, hr, device: torch.device, batch: int) -> np.ndarray:
    """torchmetrics' functional PSNR and SSIM (Gaussian 11, sigma 1.5) on the same Y crops, batched."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    out = []
    for i in range(0, len(sr), batch):
        a, b = prepare_pair(sr[i : i + batch].to(device), hr[i : i + batch].to(device), True, CROP)
        p = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
        q = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
        out.append(torch.stack([p, q], 1).cpu())
    return torch.cat(out).double().numpy()


def pyiqa_y(sr, hr, device: torch.device, batch: int, metrics) -> np.ndarray:
    """pyiqa's psnr and ssim metrics (Y of YCbCr, as BasicSR) on the cropped pairs, batched."""
    psnr, ssim = metrics
    out = []
    with torch.no_grad():
        for i in range(0, len(sr), batch):
            s = sr[i : i + batch, :, CROP:-CROP, CROP:-CROP].to(device)
            h = hr[i : i + batch, :, CROP:-CROP, CROP:-CROP].to(device)
            out.append(torch.stack([psnr(s, h).reshape(-1), ssim(s, h).reshape(-1)], 1).cpu())
    return torch.cat(out).double().numpy()


def basicsr_y(sr_u8: np.ndarray, hr_u8: np.ndarray) -> np.ndarray:
    """BasicSR's calculate_psnr/calculate_ssim per image on 8-bit BGR arrays, test_y_channel, crop 4."""
    from basicsr.metrics import calculate_psnr, calculate_ssim

    return np.array(
        [
            [
                calculate_psnr(a, b, crop_border=CROP, test_y_channel=True),
                calculate_ssim(a, b, crop_border=CROP, test_y_channel=True),
            ]
            for a, b in zip(sr_u8, hr_u8)
        ]
    )


def peer_runs(sr, hr, device: torch.device, batch: int) -> dict[str, tuple[object, int]]:
    """Each installed peer's PSNR+SSIM-Y function and the number of pairs it is timed on."""
    n = len(sr)
    peers: dict[str, tuple[object, int]] = {"torchmetrics": (lambda: torchmetrics_y(sr, hr, device, batch), n)}
    try:
        import pyiqa

        kw = {"test_y_channel": True, "color_space": "ycbcr", "device": device}
        models = (pyiqa.create_metric("psnr", **kw), pyiqa.create_metric("ssim", **kw))
        # pyiqa computes in float64 with full 2-D kernels: timed on fewer pairs (as many pixels as
        # SLOW_PEER_PAIRS pairs of 256 px), scaled to all.
        k = min(n, max(1, SLOW_PEER_PAIRS * 256 * 256 // (sr.shape[-1] * sr.shape[-2])))
        peers[f"pyiqa {pyiqa.__version__}"] = (lambda: pyiqa_y(sr[:k], hr[:k], device, batch, models), k)
    except ImportError as exc:
        print(f"pyiqa: not installed ({exc}); `make iqa`")
    try:
        import basicsr  # noqa: F401

        # BasicSR reads 8-bit BGR (H, W, C) arrays; the conversion is not timed.
        to_u8 = lambda t: (t.permute(0, 2, 3, 1).flip(-1) * 255).round().byte().numpy()  # noqa: E731
        sr_u8, hr_u8 = to_u8(sr), to_u8(hr)
        peers["BasicSR (basicsr-fixed)"] = (lambda: basicsr_y(sr_u8, hr_u8), n)
    except ImportError as exc:
        print(f"BasicSR: not installed ({exc}); `make iqa`")
    return peers


def compare_toolkits(sr, hr, device: torch.device, batch: int, repeats: int) -> dict[str, float]:
    """PSNR+SSIM (Y, crop 4) of ours and each installed toolkit: times, agreement; our ratio to each peer."""
    n = len(sr)
    peers = peer_runs(sr, hr, device, batch)
    ours_y(sr[:batch], hr[:batch], device, batch)  # warm-up
    t_ours, v_ours = median_time(lambda: ours_y(sr, hr, device, batch), repeats)
    threads = torch.get_num_threads()
    print(f"PSNR+SSIM, Y channel, crop {CROP}, {n} pairs of {sr.shape[-1]}x{sr.shape[-2]} (medians of {repeats})")
    print(f"  {'ours (evalsuite)':<28} {t_ours:8.3f} s  ({threads} torch thread(s) chosen)")
    ratios = {}
    for name, (fn, k) in peers.items():
        default_threads()
        t, v = median_time(fn, repeats)
        t *= n / k  # per-pair time scaled to all pairs when timed on fewer
        diff = np.abs(np.asarray(v) - v_ours[:k]).max(axis=0)
        ok = "equal to 1e-4" if (diff < 1e-4).all() else "NOT equal to 1e-4"
        on = "" if k == n else f" (timed on {k} pairs, scaled)"
        print(
            f"  {name:<28} {t:8.3f} s  ours is {t / t_ours:5.1f}x faster; max |diff| PSNR {diff[0]:.1e} dB, "
            f"SSIM {diff[1]:.1e}: {ok}{on}"
        )
        ratios[name.split()[0]] = t / t_ours
    if ratios:
        print(f"  ratio to the fastest peer: {min(ratios.values()):.1f}x (target >= 2x)")
    return ratios


def compare_niqe(hr, device: torch.device, n: int, repeats: int) -> float | None:
    """NIQE of n HR images: ours as a run computes it vs BasicSR's calculate_niqe per image; agreement to 1e-3."""
    try:
        from basicsr.metrics.niqe import calculate_niqe
    except ImportError as exc:
        print(f"NIQE reference: BasicSR not installed ({exc}); `make iqa`")
        return None
    x = hr[:n]
    metric = build_metric("niqe", MetricContext(device, 4, crop_border=CROP))
    bgr = (x.permute(0, 2, 3, 1).flip(-1) * 255).round().double().numpy()
    h, w = x.shape[-2:]

    def ours() -> np.ndarray:
        ThreadGovernor(fixed=OURS_THREADS).tick()
        return torch.cat([metric.update(x[c], x[c], x[c], [])["niqe"] for c in pixel_chunks(n, h, w)]).double().numpy()

    metric.update(x[:1], x[:1], x[:1], [])  # warm-up
    t_ours, v_ours = median_time(ours, repeats)
    threads = torch.get_num_threads()
    default_threads()
    t_ref, v_ref = median_time(lambda: np.array([calculate_niqe(b, crop_border=CROP) for b in bgr]), repeats)
    diff = np.abs(v_ours - v_ref).max()
    print(
        f"NIQE, {n} images of {w}x{h}, crop {CROP}, medians of {repeats}: ours {t_ours:.3f} s ({threads} thread(s)), "
        f"BasicSR {t_ref:.3f} s: ours is {t_ref / t_ours:.1f}x faster (target >= 5x); max |diff| {diff:.1e} "
        f"({'equal to 1e-3' if diff < 1e-3 else 'NOT equal to 1e-3'})"
    )
    return t_ref / t_ours


class CompetingLoad:
    """`n` busy processes (a pure-Python spin each, like another user's CPU-bound job) while in the block."""

    def __init__(self, n: int) -> None:
        self.n, self.procs = n, []

    def __enter__(self) -> CompetingLoad:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(1.0)  # let them reach the run queue before anything looks at the load
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


SIZES = {"256": (256, 256), "div2k": (1356, 2040)}  # (height, width)


def run_condition(name: str, load: int, sizes: list[str], args: argparse.Namespace) -> dict[tuple[str, str], float]:
    """Every size's toolkit and NIQE comparisons under one condition; {(size, peer): ratio}."""
    device = torch.device(args.device)
    out: dict[tuple[str, str], float] = {}
    with CompetingLoad(load):
        print(
            f"\n=== {name}: {load} busy process(es) started by this script; other runnable tasks seen now: "
            f"{others_running(samples=20):.1f}; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        for size in sizes:
            h, w = SIZES[size]
            big = h * w > 256 * 256
            pairs = args.pairs if not big else args.div2k_pairs
            sr, hr, _ = make_pairs(pairs, h, w)
            if not args.niqe_only:
                for peer, r in compare_toolkits(sr, hr, device, args.batch, args.repeats).items():
                    out[(size, peer)] = r
            niqe = compare_niqe(hr, device, min(pairs, args.niqe_images if not big else 3), args.repeats)
            if niqe is not None:
                out[(size, "NIQE vs BasicSR")] = niqe
    return out


def anchor(args: argparse.Namespace) -> None:
    """The old anchor: PSNR+SSIM+consistency, engine vs a per-image numpy/scipy/PIL loop, 256 px, quiet."""
    device = torch.device(args.device)
    sr, hr, lr = make_pairs(args.pairs, 256)
    ThreadGovernor().tick()
    time_engine(sr[: args.batch], hr[: args.batch], lr[: args.batch], device, args.batch)  # warm-up
    eng = [time_engine(sr, hr, lr, device, args.batch) for _ in range(args.repeats)]
    ref = [time_numpy(sr, hr, lr) for _ in range(max(1, args.repeats // 2))]
    e, r = statistics.median(eng), statistics.median(ref)
    print(f"\nanchor: pairs: {args.pairs} x 256^2, device {device}, torch threads {torch.get_num_threads()}")
    print(f"engine (PSNR+SSIM+consistency, batch {args.batch}): {e:.3f} s, {args.pairs / e:.0f} pairs/s")
    print(f"numpy/scipy per-image loop (anchor): {r:.3f} s, {args.pairs / r:.0f} pairs/s")
    print(f"medians of {len(eng)} and {len(ref)} runs; speed-up vs anchor: {r / e:.1f}x")


def main() -> None:
    """Run the comparisons quiet and loaded; print medians, each ratio and the verdict per target."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100, help="pairs at 256 px")
    ap.add_argument("--div2k-pairs", type=int, default=4, help="pairs at DIV2K size")
    ap.add_argument("--sizes", default="256,div2k", help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--load", type=int, default=2, help="busy processes of the loaded condition (0: quiet only)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="images per batch (the engine's default --batch-size)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--niqe-images", type=int, default=40, help="images for the NIQE comparison at 256 px")
    ap.add_argument("--conditions", default="quiet,loaded", help="quiet, loaded or both")
    ap.add_argument("--ours-threads", type=int, default=None,
                    help="fix our torch threads (default: the engine's choice, one per free core)")
    ap.add_argument("--skip-anchor", action="store_true", help="only the toolkit and NIQE comparisons")
    ap.add_argument("--niqe-only", action="store_true", help="only the NIQE comparison")
    args = ap.parse_args()
    global OURS_THREADS
    OURS_THREADS = args.ours_threads
    conditions = set(args.conditions.split(","))
    sizes = [s for s in args.sizes.split(",") if s]
    print(f"CPU: {cpu_info()}")
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}")
    results = {"quiet": run_condition("quiet", 0, sizes, args)} if "quiet" in conditions else {}
    if args.load and "loaded" in conditions:
        results["loaded"] = run_condition(f"loaded ({args.load} busy processes)", args.load, sizes, args)
    print("\nour speed / peer's, by condition (target: >= 2x every peer, NIQE >= 5x BasicSR):")
    keys = sorted({k for r in results.values() for k in r})
    print(f"  {'size':<6} {'peer':<18} " + " ".join(f"{c:>8}" for c in results))
    for size, peer in keys:
        target = 5.0 if peer.startswith("NIQE") else 2.0
        cells = [results[c].get((size, peer)) for c in results]
        met = all(v is not None and v >= target for v in cells)
        print(
            f"  {size:<6} {peer:<18} "
            + " ".join(f"{v:7.1f}x" if v else f"{'-':>8}" for v in cells)
            + f"   {'met' if met else 'NOT met'}"
        )
    if not (args.skip_anchor or args.niqe_only):
        anchor(args)


if __name__ == "__main__":
    main()
