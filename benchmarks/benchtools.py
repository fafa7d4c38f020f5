"""What several benchmark scripts share: the CPU's facts and a median timer that waits for CUDA work."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any


def cpuinfo() -> tuple[str, str, list[str]]:
    """(model, vendor, vector extensions) from /proc/cpuinfo ("unknown CPU" where it cannot be read)."""
    model, vendor, flags = "unknown CPU", "", set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key == "vendor_id" and not vendor:
                vendor = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, vendor, sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "sse4_2", "f16c"))


def median_seconds(fn: Callable[[], object], repeats: int, cuda: bool) -> float:
    """Median wall seconds of `repeats` calls of fn after one warm-up (CUDA work finished before each clock read)."""
    import torch

    def run() -> None:
        fn()
        if cuda:
            torch.cuda.synchronize()

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_facts() -> dict[str, Any]:
    """CPU model, vendor, core count and vector extensions from /proc/cpuinfo (lscpu's summary line when there)."""
    model, vendor, ext = cpuinfo()
    facts: dict[str, Any] = {
        "model": model,
        "vendor": vendor,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa_flags": ext,
    }
    try:
        facts["load_avg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        keep = ("Model name", "Socket(s)", "Core(s) per socket", "Thread(s) per core", "L3 cache", "CPU(s)")
        facts["lscpu"] = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())
                          if k.strip() in keep}
    return facts
