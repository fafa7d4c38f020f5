"""The training log: metrics averaged on the device, one host transfer per row, `log.csv` with a fixed schema.

The recipe declares its metric names (`Recipe.metrics`); the columns of `log.csv` are
`step, <metrics...>, grad_norm_<optimizer>..., lr, img_per_s`, written by rank 0. Between rows the values
stay on the device (no sync per step); a row averages them over the micro-batches since the previous row.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from evalsuite.io import atomic_write


def log_columns(metrics: Sequence[str], optimizers: Sequence[str]) -> list[str]:
    """The columns of log.csv for a recipe's metrics and its optimizer names."""
    return ["step", *metrics, *(f"grad_norm_{k}" for k in optimizers), "lr", "img_per_s"]


class MeanMeter:
    """Running sums of 0-dim tensors, kept on the device; `pop` brings their means to the host in one transfer."""

    def __init__(self, names: Sequence[str], device: torch.device):
        """Sums for `names` on `device` (float64 where the device has it)."""
        self.names = list(names)
        self.index = {k: i for i, k in enumerate(self.names)}
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.total = torch.zeros(len(self.names), dtype=self.dtype, device=self.device)
        self.count = [0] * len(self.names)

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        """Add one 0-dim tensor per name (a subset of the names); asynchronous on accelerators."""
        for name, value in values.items():
            i = self.index[name]
            self.total[i].add_(value.detach().reshape(()).to(self.dtype))
            self.count[i] += 1

    def pop(self) -> dict[str, float]:
        """Means since the last pop of the names that were added (one device-to-host copy), then start over."""
        sums = self.total.tolist()
        means = {k: s / n for k, s, n in zip(self.names, sums, self.count) if n}
        self._reset()
        return means


class CsvLog:
    """`log.csv` with a fixed header; rows after the step the run starts from are dropped when it opens."""

    def __init__(self, path: Path, columns: Sequence[str], start_step: int):
        """Keep the rows up to `start_step` of an existing log with the same columns, then append."""
        self.path, self.columns = Path(path), list(columns)
        kept = self._rows_up_to(start_step)

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(kept)

        atomic_write(self.path, write)
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, restval="")

    def _rows_up_to(self, start_step: int) -> list[dict[str, str]]:
        if start_step == 0 or not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames != self.columns:
                raise ValueError(
                    f"{self.path} has the columns {reader.fieldnames}, but this run logs {self.columns}; "
                    f"move the old log away (e.g. to {self.path.stem}.old.csv) and resume again"
                )
            return [row for row in reader if int(row["step"]) <= start_step]

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing columns stay empty) and flush it to disk."""
        self._writer.writerow(row)
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class TrainLog:
    """Rows of the training log: on-device means, `log.csv` and a tqdm bar on rank 0, every rank's history."""

    def __init__(self, path: Path, metrics: Sequence[str], optimizers: Sequence[str], device: torch.device, *,
                 start_step: int, total_steps: int, main: bool, progress: bool, desc: str):
        """Open log.csv (rank 0) at `start_step` and start the clock."""
        self.metrics = list(metrics)
        self.meter = MeanMeter([*self.metrics, *(f"grad_norm_{k}" for k in optimizers)], device)
        self.csv = CsvLog(path, log_columns(metrics, optimizers), start_step) if main else None
        self.bar = None
        if main and progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True)
        self.history: list[dict[str, float]] = []
        self._t, self._images = time.perf_counter(), 0

    def add(self, metrics: Sequence[Mapping[str, torch.Tensor]], grad_norms: Mapping[str, torch.Tensor],
            images: int) -> None:
        """Record one optimizer step: each micro-batch's metrics, the grad norms, the images it consumed."""
        for m in metrics:
            self.meter.add(m)
        self.meter.add({f"grad_norm_{k}": v for k, v in grad_norms.items()})
        self._images += images
        if self.bar is not None:
            self.bar.update(1)

    def row(self, step: int, lr: float) -> dict[str, float]:
        """Make the row for `step` (one device sync), write it (rank 0); stop on a non-finite loss."""
        now = time.perf_counter()
        row = {"step": step, **self.meter.pop(), "lr": lr, "img_per_s": self._images / max(now - self._t, 1e-9)}
        self._t, self._images = now, 0
        bad = {k: row[k] for k in self.metrics if k in row and not math.isfinite(row[k])}
        if bad:
            raise RuntimeError(f"loss became non-finite by step {step}: {bad}; lower --lr or raise --grad-clip")
        self.history.append(row)
        if self.csv is not None:
            self.csv.write(row)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{row[k]:.4g}" for k in (*self.metrics, "img_per_s") if k in row})
        return row

    def close(self) -> None:
        """Close the bar and the file."""
        if self.bar is not None:
            self.bar.close()
        if self.csv is not None:
            self.csv.close()


__all__ = ["CsvLog", "MeanMeter", "TrainLog", "log_columns"]
