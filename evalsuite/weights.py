"""One registry of every weights file evalsuite uses: where it is looked for, how it is fetched.

The plugins of entry point group `evalsuite.weights` (the metrics' own module, the GAN methods' plugin, any
installed package) register their files when the registry is first read. A file is looked for in the weights
folder ($EVALSUITE_WEIGHTS, else <cache>/weights); when it is missing, its `fetch` function may download or
convert it; when that is impossible (offline), the error names the file, the folder and what to do.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from evalsuite.lazy import load_object
from evalsuite.paths import env_dir
from evalsuite.registry import Registry


@dataclass(frozen=True)
class WeightFile:
    """A weights file: its registry name, file name, users, origin and how to obtain it."""

    name: str
    filename: str
    used_by: str
    source: str
    fetch: str | None = None  # "module:function" (dest: Path) -> None; None when a person must place it


class MissingWeightsError(RuntimeError):
    """A weights file is not in the cache and could not be fetched."""


_WEIGHTS: Registry[WeightFile] = Registry("weights", "evalsuite.weights")
# The registry's operations under the names the rest of evalsuite uses: add (idempotent), every file by
# name (providers imported), a file by name (KeyError listing the known names when there is none).
register_weight = _WEIGHTS.add
all_weights = _WEIGHTS.all
get_weight = _WEIGHTS.get


def weights_dir() -> Path:
    """The folder weights are looked for in ($EVALSUITE_WEIGHTS, else <cache>/weights)."""
    return env_dir("EVALSUITE_WEIGHTS", "weights")


def weight_path(name: str) -> Path:
    """Where a weights file is expected (whether or not it exists)."""
    return weights_dir() / get_weight(name).filename


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def missing_message(w: WeightFile, why: str = "") -> str:
    """The message a user sees when a weights file is missing."""
    dest = weights_dir() / w.filename
    msg = f"weights '{w.name}' (for {w.used_by}) not found: put {w.filename} at {dest}"
    msg += f" (source: {w.source}; or set EVALSUITE_WEIGHTS to the folder that holds it)"
    if w.fetch:
        msg += f", or run `evalsuite weights fetch {w.name}` where the network allows"
    return msg + (f". Fetch failed: {why}" if why else "")


def ensure_weight(name: str, fetch: bool = True) -> Path:
    """Path of a weights file, fetching it when missing and allowed; MissingWeightsError otherwise."""
    w = get_weight(name)
    path = weights_dir() / w.filename
    if path.exists():
        return path
    if not (fetch and w.fetch):
        raise MissingWeightsError(missing_message(w))
    tmp = path.with_name(f".{path.name}.partial")
    try:
        load_object(w.fetch)(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise MissingWeightsError(missing_message(w, f"{type(exc).__name__}: {exc}")) from exc
    return path


def status_table() -> list[dict[str, str]]:
    """One row per weights file: name, used_by, present, path, source."""
    rows = []
    for w in sorted(all_weights().values(), key=lambda w: w.name):
        path = weights_dir() / w.filename
        rows.append(
            {
                "name": w.name,
                "used_by": w.used_by,
                "status": "present" if path.exists() else ("fetchable" if w.fetch else "missing"),
                "path": str(path),
                "source": w.source,
            }
        )
    return rows
