"""Peak memory of a run does not grow with the number of images (benchmarks/memory_scale.py has the figures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256  # an HR+LR pair held in float32 is ~0.8 MiB: a leak of 90 of them is far above the noise

# In a fresh process: import and warm up everything first, reset the peak-RSS counter (Linux clear_refs 5),
# run, then print the peak of the run itself (imports alone are ~1 GB of the CUDA build of torch).
SCRIPT = """
import re, sys
from pathlib import Path
import evalsuite
from evalsuite.metrics.base import registered_metrics
from evalsuite.spec import BenchmarkSpec
registered_metrics()
Path("/proc/self/clear_refs").write_text("5")
def kib(key):
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
before = kib("VmRSS")
spec = BenchmarkSpec(data=sys.argv[1], out=sys.argv[2], task=None, scale=4, methods=("bicubic",),
                     metrics=("psnr",), batch_size=4, report=False, bootstrap=100)
evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
print((kib("VmHWM") - before) / 1024)
"""


def _images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for k in range(n):
        small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        small.resize((SIZE, SIZE), Image.BICUBIC).save(folder / f"img{k:04d}.png", compress_level=1)


def _run_peak_mib(data: Path, out: Path) -> float:
    """How far a run's RSS rises above the process's RSS before it (MiB), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), str(out)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_run_memory_is_flat_from_n_to_4n_images(tmp_path: Path) -> None:
    n = 30
    _images(tmp_path / "small", n)
    _images(tmp_path / "large", 4 * n)
    small = _run_peak_mib(tmp_path / "small", tmp_path / "run_small")
    large = _run_peak_mib(tmp_path / "large", tmp_path / "run_large")
    # Holding each image's pixels for the run would add ~0.8 MiB per image: ~70 MiB for the 90 more here.
    assert large - small < 25, f"a run's RSS rose {small:.0f} MiB over {n} images, {large:.0f} MiB over {4 * n}"
