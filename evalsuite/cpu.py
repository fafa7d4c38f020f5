"""CPU work sized to the machine as it is now: torch threads from the cores other processes leave free, and
metric calls split so each one's pixels fit a budget (issue 27).

Why: torch's OpenMP threads wait for each other at the end of every parallel loop. When another process
holds a core, one of our threads is descheduled and the others spin until it returns: on a 2-core machine at
load 5-7 the pixel metrics used three times their quiet CPU time. One thread per free core avoids the
stall, and the choice is re-checked while a run goes on, since other people's jobs start and stop. Large
batches of large images cost more than one image at a time (their temporaries fall out of the caches and
every allocation is fresh pages from the kernel), so a metric call gets at most `PIXEL_BUDGET` pixels.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

# Pixels per metric call on a CPU: eight 256x256 images; one image at a time above that size.
PIXEL_BUDGET = 8 * 256 * 256
# Seconds between two looks at the machine's load during a run.
RECHECK_S = 5.0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which container limits set)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _procs_running() -> int | None:
    """Runnable tasks on the whole machine now (/proc/stat `procs_running`), None where there is no /proc."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _own_running() -> int:
    """This process's threads that are running or runnable now (state R in /proc/self/task/*/stat)."""
    n = 0
    for task in Path("/proc/self/task").glob("*"):
        try:
            # The state follows the parenthesised thread name, which may itself hold spaces or parentheses.
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                n += 1
        except (OSError, IndexError):
            continue
    return n


def others_running(samples: int = 8, interval_s: float = 0.002) -> float:
    """Mean number of runnable tasks of other processes over a few looks; 0.0 where /proc is missing."""
    seen = []
    for k in range(samples):
        total = _procs_running()
        if total is None:
            return 0.0
        seen.append(max(0, total - max(1, _own_running())))
        if k + 1 < samples:
            time.sleep(interval_s)
    return sum(seen) / len(seen)


def choose_threads(cores: int, others: float) -> int:
    """Torch threads for `cores` usable cores with `others` tasks of other processes running: one per free core.

    A core counts as taken when another task holds it at least a third of the looks (others rounded with a
    0.33 bias), and at least one thread is always kept.
    """
    taken = int(others + 0.67)
    return max(1, cores - taken)


def pixel_chunks(n: int, height: int, width: int, budget: int | None = None) -> list[list[int]]:
    """Indices 0..n-1 in consecutive chunks of at most `budget` pixels (PIXEL_BUDGET), one image at least."""
    per = max(1, (budget or PIXEL_BUDGET) // max(1, height * width))
    return [list(range(i, min(n, i + per))) for i in range(0, n, per)]


@dataclass
class ThreadGovernor:
    """Keeps torch's CPU threads at one per free core during a run; a fixed count when the user gave one."""

    fixed: int | None = None  # --threads; None chooses from the load
    recheck_s: float = RECHECK_S
    cores: int = field(default_factory=usable_cores)
    chosen: dict[int, int] = field(default_factory=dict)  # threads -> how many times chosen (for the manifest)
    _last: float = field(default=-1e9, repr=False)

    def tick(self) -> int:
        """Look at the load when due and set torch's threads; returns the count in force."""
        now = time.monotonic()
        if self.fixed is not None:
            if self.chosen:
                return torch.get_num_threads()
            n = max(1, self.fixed)
        elif now - self._last >= self.recheck_s:
            self._last = now
            n = choose_threads(self.cores, others_running())
        else:
            return torch.get_num_threads()
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self.chosen[n] = self.chosen.get(n, 0) + 1
        return n

    def summary(self) -> dict[str, object]:
        """What was chosen, for the run's manifest."""
        mode = f"fixed at {self.fixed} (--threads)" if self.fixed is not None else "one per free core, re-checked"
        return {"mode": mode, "usable_cores": self.cores, "chosen": {str(k): v for k, v in sorted(self.chosen.items())}}
