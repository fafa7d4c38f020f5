"""CPU work sized to the machine: threads from the cores other processes leave free, metric calls within a
pixel budget (issue 27), and a run whose values do not depend on either."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import evalsuite
from evalsuite import cpu
from evalsuite.metrics import pixel
from evalsuite.spec import BenchmarkSpec


@pytest.mark.parametrize(
    ("cores", "others", "threads"),
    [
        (2, 0.0, 2),
        (2, 0.25, 2),
        (2, 0.5, 1),
        (2, 1.0, 1),
        (2, 2.0, 1),
        (2, 6.0, 1),
        (16, 3.0, 13),
        (16, 0.1, 16),
        (1, 0.0, 1),
        (8, 7.9, 1),
    ],
)
def test_one_thread_per_free_core(cores, others, threads):
    assert cpu.choose_threads(cores, others) == threads


def test_pixel_chunks_keep_every_image_once_within_the_budget():
    assert cpu.pixel_chunks(8, 256, 256) == [list(range(8))]  # the default budget: eight 256-px images
    big = cpu.pixel_chunks(5, 1356, 2040)
    assert big == [[0], [1], [2], [3], [4]]  # DIV2K-size images go one at a time
    mid = cpu.pixel_chunks(7, 100, 100, budget=30_000)
    assert mid == [[0, 1, 2], [3, 4, 5], [6]]
    assert cpu.pixel_chunks(0, 10, 10) == []


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def test_two_busy_processes_are_seen_and_take_their_cores():
    hogs = _busy(2)
    try:
        time.sleep(0.5)
        others = cpu.others_running(samples=20)
        gov = cpu.ThreadGovernor(cores=2, recheck_s=0.0)
        chosen = gov.tick()
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    # Both spinners are runnable at every look (they may wait for a core, they never sleep); a look can
    # miss one when a thread of ours wakes between the two reads, hence not exactly 2.
    assert others >= 1.5
    assert chosen == 1 and torch.get_num_threads() == 1
    assert gov.summary()["chosen"] == {"1": 1}


def test_a_fixed_thread_count_is_kept_whatever_the_load():
    before = torch.get_num_threads()
    try:
        gov = cpu.ThreadGovernor(fixed=3, cores=2, recheck_s=0.0)
        assert gov.tick() == 3 and gov.tick() == 3
        assert torch.get_num_threads() == 3
        assert gov.summary()["mode"].startswith("fixed at 3")
    finally:
        torch.set_num_threads(before)


def _images(folder, n: int, size: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(n):
        small = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        noisy = np.clip(np.asarray(small, dtype=np.int16) + rng.integers(-9, 10, (size, size, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"im{k}.png")


def test_metric_calls_stay_within_the_pixel_budget_and_values_do_not_change(tmp_path, monkeypatch):
    _images(tmp_path / "data", 6, 64)

    def run(out: str) -> pd.DataFrame:
        spec = BenchmarkSpec(
            data=str(tmp_path / "data"),
            out=str(tmp_path / out),
            task=None,
            scale=4,
            methods=("bicubic",),
            metrics=("psnr", "ssim", "consistency"),
            batch_size=6,
            report=False,
            bootstrap=100,
            device="cpu",
            threads=1,
        )
        evalsuite.run(spec, progress=False)
        return pd.read_csv(tmp_path / out / "per_image.csv").sort_values("image_id").reset_index(drop=True)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    whole = run("whole")
    assert torch.get_num_threads() == 2  # the run used 1 (--threads 1), then gave the caller's count back
    torch.set_num_threads(before)
    seen: list[int] = []
    update = pixel.PSNR.update

    def spy(self, sr, hr, lr, ids):
        seen.append(sr.shape[0])
        return update(self, sr, hr, lr, ids)

    monkeypatch.setattr(pixel.PSNR, "update", spy)
    monkeypatch.setattr(cpu, "PIXEL_BUDGET", 2 * 64 * 64)
    parts = run("parts")
    assert seen == [2, 2, 2]  # one batch of six 64-px images, scored two at a time
    cols = ["psnr", "ssim", "consistency"]
    np.testing.assert_allclose(parts[cols].to_numpy(), whole[cols].to_numpy(), rtol=0, atol=1e-9)
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert manifest["cpu_threads"]["mode"].startswith("fixed at 1")
