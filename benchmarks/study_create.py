"""Time `study create` on a large generated run: the default study (the paper's 100 images, 50 per rater and
method) and, for comparison, every image of the run; print seconds (median of --repeats), database size and
trials per rater, next to the figures issue 30 measured before the defaults (2,000 images: 106 s, 466 MB,
4,000 trials per rater).

    .venv/bin/python benchmarks/study_create.py                       # 2,000 images of 128 px, 2 methods
    .venv/bin/python benchmarks/study_create.py --images 500 --all    # also time a study of every image

The run is generated once under --cache (PIL only: smooth colour fields with noise, their 4x box-downscaled LR
and PIL's bicubic/nearest upscale as two methods). Record the machine's load (printed) with the figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # study_support: the run generator

TARGET_S = 3.0  # issue 30: a 100-image study is created in a few seconds
BEFORE = {"seconds": 106.0, "db_mb": 466.0, "trials_per_rater": 4000}  # 2,000 images, every image per rater


def _create(run: Path, n_images: int | str | None) -> tuple[float, float, int, int, float]:
    """(seconds, database MB, study images, main trials per rater, CPU seconds of this process) of one
    `create_study` into a fresh file (CPU time moves less than wall time with the machine's load)."""
    from studies.service import create_study

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "study.db")
        t0, c0 = time.perf_counter(), time.process_time()
        made = create_study(run, db, 1, ("bicubic", "nearest"), n_images=n_images)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        return seconds, Path(db).stat().st_size / 1e6, made.config.n_images, made.config.trials_per_rater, cpu


def main() -> None:
    """Generate (or reuse) the run, time the default study and print the figures."""
    from study_support import make_large_run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="images in the generated run (default 2000)")
    p.add_argument("--size", type=int, default=128, help="HR side in pixels (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed creations of the default study (median)")
    p.add_argument("--all", action="store_true", help="also time one study of every image (--images all)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "evalsuite-bench-large-run"))
    args = p.parse_args()
    run = Path(args.cache) / f"n{args.images}-s{args.size}"
    if not (run / "summary.csv").exists():
        t0 = time.perf_counter()
        make_large_run(run, args.images, size=args.size)
        print(f"generated {run} ({args.images} images of {args.size} px) in {time.perf_counter() - t0:.1f} s")
    print(f"machine: {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    runs = [_create(run, None) for _ in range(args.repeats)]
    seconds = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[4] for r in runs)
    _, mb, n, trials, _ = runs[-1]
    print(f"default study: {n} of {args.images} images, {trials} main trials per rater; create {seconds:.2f} s "
          f"(median of {args.repeats}: {', '.join(f'{r[0]:.2f}' for r in runs)}; CPU {cpu:.2f} s), database "
          f"{mb:.1f} MB; target < {TARGET_S:g} s: ratio {seconds / TARGET_S:.2f}")
    print(f"before (issue 30, every image of 2,000 by default): {BEFORE['seconds']:g} s, {BEFORE['db_mb']:g} MB, "
          f"{BEFORE['trials_per_rater']} trials per rater")
    if args.all:
        s_all, mb_all, n_all, trials_all, cpu_all = _create(run, "all")
        print(f"--images all: {n_all} images, {trials_all} main trials per rater; create {s_all:.2f} s "
              f"(CPU {cpu_all:.2f} s), database {mb_all:.1f} MB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
