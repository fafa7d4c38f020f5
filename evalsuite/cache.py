"""What a rerun reuses: method outputs (outputs/<label>/, keyed by the method's settings) and per-image
metric values (.cache/metrics/<label>.r<rank>.jsonl, appended per batch, keyed by method and metrics).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalsuite import distributed as D
from evalsuite.hub import PREFIX, cached_commit, is_hub_ref
from evalsuite.io import remove_partials
from evalsuite.methods import split_name
from evalsuite.spec import stable_hash


def method_key(name: str, options: dict[str, Any], seed: int, task_name: str, prep_key: str) -> str:
    """The cache key of a method's outputs: its name, checkpoint file stamp, options, seed, task and inputs."""
    _, arg = split_name(name)
    fp = None
    if arg and Path(arg).exists():
        st = Path(arg).stat()
        fp = [st.st_size, st.st_mtime_ns]
    elif arg:
        # hf:ORG/REPO... (or a bare Hub id, as diffusers: takes): the commit it resolves to in the cache, if any.
        fp = cached_commit(arg if is_hub_ref(arg) else PREFIX + arg)
    return stable_hash({"method": name, "fp": fp, "opts": options, "seed": seed, "task": task_name, "prep": prep_key})


def metric_cache_files(folder: Path, label: str) -> list[Path]:
    """The per-rank metric cache files of one method (`<label>.r<rank>.jsonl`; labels may contain dots)."""
    pattern = re.compile(re.escape(label) + r"\.r\d+\.jsonl")
    return sorted(p for p in folder.glob("*.jsonl") if pattern.fullmatch(p.name))


class MetricCache:
    """Per-image metric values of one method, appended per batch (a kill loses at most one batch).

    An image whose metrics failed keeps its other values but is not `done`: a rerun scores it again.
    """

    def __init__(self, folder: Path, label: str, key: str) -> None:
        self.key = key
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{label}.r{D.rank()}.jsonl"
        self.values: dict[str, dict[str, float]] = {}
        self.failed: dict[str, dict[str, str]] = {}  # image id -> {metric: reason}
        for p in metric_cache_files(folder, label):
            for line in p.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if row.get("key") == key:
                    self.values[row["id"]] = row["values"]
                    self.failed[row["id"]] = row.get("failed") or {}

    def done(self, image_id: str) -> bool:
        """Whether the image's per-image values are all cached (none failed)."""
        return image_id in self.values and not self.failed.get(image_id)

    def add(self, values: dict[str, dict[str, float]], failed: dict[str, dict[str, str]]) -> None:
        """Record one batch's values (and per-metric failures) by image id; later lines win on reading."""
        self.values.update(values)
        self.failed.update({i: failed.get(i, {}) for i in values})
        with open(self.path, "a") as f:
            f.writelines(
                json.dumps({"key": self.key, "id": i, "values": v, "failed": failed.get(i) or {}}) + "\n"
                for i, v in values.items()
            )


def reset_stale_outputs(run_dir: Path, label: str, mkey: str, say: Callable[[str], None]) -> Path:
    """outputs/<label>/ for this method key: remade when the method's settings or checkpoint changed."""
    out_m = run_dir / "outputs" / label
    key_file = out_m / ".key"
    if D.is_main():
        if key_file.exists() and key_file.read_text() != mkey:
            say(f"note: {label}: spec or checkpoint changed since the last run; its outputs are remade")
            shutil.rmtree(out_m, ignore_errors=True)
            for p in metric_cache_files(run_dir / ".cache" / "metrics", label):
                p.unlink()
        out_m.mkdir(parents=True, exist_ok=True)
        remove_partials(out_m)
        key_file.write_text(mkey)
    D.barrier()
    return out_m
