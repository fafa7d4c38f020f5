"""Peak memory of a whole benchmark run against the number of images: it must stay flat (issue 27).

Each count gets its own folder of generated images (smooth random colour fields, hard links into one pool)
and one `evalsuite run benchmark` in a fresh process; the peak resident set of that process (the kernel's
ru_maxrss, from wait4) is printed with the run's wall time and the ratio to the smallest count's peak.
Target: within 10% from 500 to 5,000 images.

    .venv/bin/python benchmarks/memory_scale.py [--counts 500,2000,5000] [--size 256] [--scale 4]
        [--metrics psnr] [--methods bicubic] [--work DIR] [--keep]

The machine's load (`os.getloadavg`) is printed beside each figure: a loaded machine changes the time,
not the peak.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, n: int, size: int, seed: int = 0, start: int = 0, grain: int = 6) -> list[Path]:
    """n smooth random RGB images of size x size (PNG): 6x6 random colours, bicubic-enlarged, +-grain noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + start)
    out = []
    for k in range(start, start + n):
        path = folder / f"img{k:06d}.png"
        if not path.exists():
            small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
            big = np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.int16)
            noise = rng.integers(-grain, grain + 1, big.shape, dtype=np.int16)
            Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, compress_level=1)
        out.append(path)
    return out


def linked_folder(pool: list[Path], folder: Path) -> Path:
    """A folder holding hard links to the pool's files (no copies, regular files for the scanner)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for p in pool:
        os.link(p, folder / p.name)
    return folder


def peak_rss_run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run cmd; (peak RSS in MiB of that process, wall seconds, exit code). Output goes to the parent's."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        sys.stderr.write(err[-3000:])
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def run_command(data: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The benchmark command for one folder."""
    return [
        sys.executable, "-m", "evalsuite.cli", "run", "benchmark", "--data", str(data), "--scale", str(args.scale),
        "--methods", args.methods, "--metrics", args.metrics, "--out", str(out), "--no-report",
    ]  # fmt: skip


def main() -> None:
    """Print peak RSS against image count."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="500,2000,5000")
    ap.add_argument("--size", type=int, default=256, help="HR side of the generated images")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--methods", default="bicubic")
    ap.add_argument("--metrics", default="psnr")
    ap.add_argument("--work", type=Path, default=None, help="folder for images and runs (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="evalsuite-mem-"))
    root = str(Path(__file__).resolve().parents[1])  # this checkout's evalsuite, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"command: run benchmark --scale {args.scale} --methods {args.methods} --metrics {args.metrics} "
          f"on generated {args.size}x{args.size} PNGs; fresh run folder per count")  # fmt: skip
    t0 = time.perf_counter()
    pool = write_images(work / "pool", counts[-1], args.size)
    print(f"generated {len(pool)} images in {time.perf_counter() - t0:.1f} s")
    print(f"{'images':>8} {'peak RSS (MiB)':>15} {'ratio':>6} {'seconds':>8} {'ms/image':>9}  load (1, 5, 15 min)")
    base = None
    try:
        for n in counts:
            data = linked_folder(pool[:n], work / f"data{n}")
            out = work / f"run{n}"
            shutil.rmtree(out, ignore_errors=True)
            rss, secs, rc = peak_rss_run(run_command(data, out, args), env)
            if rc:
                raise SystemExit(f"the run over {n} images failed (exit {rc})")
            base = base or rss
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"{n:>8} {rss:>15.0f} {rss / base:>6.3f} {secs:>8.1f} {1000 * secs / n:>9.2f}  {load}", flush=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
