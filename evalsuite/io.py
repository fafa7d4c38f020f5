"""Atomic file writes: no half-written file survives a kill."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import, before any worker thread exists


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp_path) then rename tmp_path onto path (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600 files; give the result the usual permissions (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


# zlib level 1: lossless like any level, 3-5x faster to write than PIL's default 6 (files ~25% larger);
# writing PNGs is most of the time of a run of cheap methods and metrics.
PNG_COMPRESS_LEVEL = 1


def save_png(image, path: str | Path) -> None:
    """Save a PIL image as PNG atomically, with no metadata."""
    atomic_write(path, lambda p: image.save(p, format="PNG", compress_level=PNG_COMPRESS_LEVEL))


def remove_partials(folder: Path) -> None:
    """Delete temporary files a killed atomic write left behind in `folder`."""
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)
