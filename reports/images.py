"""Images for the report: embedded as data URIs, gallery choice, the detail to zoom on, thumbnails.

Every image is embedded in the HTML file (one file to open or forward). To keep the size sane for large
runs, the gallery holds a few chosen images at full resolution (lossless PNG, cropped around the detail
when the HR side exceeds `max_side`), and the worst-image lists use small JPEG thumbnails.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def data_uri(data: bytes, mime: str) -> str:
    """A data: URI holding `data`."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(image: Image.Image) -> str:
    """A lossless PNG data URI of a PIL image."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return data_uri(buf.getvalue(), "image/png")


def file_uri(path: Path) -> str:
    """A PNG file as a data URI, bytes as they are (no re-encoding)."""
    return data_uri(path.read_bytes(), "image/png")


def thumbnail_uri(path: Path, max_side: int = 144, quality: int = 85) -> str:
    """A small JPEG thumbnail of an image file as a data URI."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
    return data_uri(buf.getvalue(), "image/jpeg")


def load_array(path: Path) -> np.ndarray:
    """An image file as a float32 array (H, W, 3) in [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


@dataclass(frozen=True)
class Detail:
    """A square region of the HR image (x, y = top-left corner, in HR pixels) to show magnified."""

    x: int
    y: int
    size: int


def _window_sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums of `a` (H, W) over every k x k window, shape (H-k+1, W-k+1), via an integral image."""
    s = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]


def find_detail(hr: np.ndarray, outputs: Sequence[np.ndarray], size: int) -> Detail:
    """The window where the methods' outputs differ most from HR (HR's own texture when no output)."""
    h, w = hr.shape[:2]
    size = max(4, min(size, h, w))
    if outputs:
        # Mean absolute error against HR, averaged over methods: where texture is lost or invented.
        err = np.mean([np.abs(o - hr).mean(axis=2) for o in outputs], axis=0)
    else:
        # No output: the busiest HR region (gradient magnitude).
        gray = hr.mean(axis=2)
        err = np.abs(np.diff(gray, axis=0, append=gray[-1:]))
        err = err + np.abs(np.diff(gray, axis=1, append=gray[:, -1:]))
    sums = _window_sums(err.astype(np.float64), size)
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return Detail(int(x), int(y), int(size))


def crop_box(width: int, height: int, detail: Detail, max_side: int, scale: int) -> tuple[int, int, int, int]:
    """An HR crop (left, top, right, bottom) at most max_side wide/high, around the detail, on the LR grid."""
    if width <= max_side and height <= max_side:
        return 0, 0, width, height
    cw, ch = min(width, max_side), min(height, max_side)
    cw, ch = cw - cw % scale, ch - ch % scale
    cx, cy = detail.x + detail.size // 2, detail.y + detail.size // 2
    left = int(np.clip(cx - cw // 2, 0, width - cw))
    top = int(np.clip(cy - ch // 2, 0, height - ch))
    left, top = left - left % scale, top - top % scale
    return left, top, left + cw, top + ch


def crop_image(a: np.ndarray, region: tuple[int, int, int, int], s: int = 1) -> Image.Image:
    """The HR-grid region (left, top, right, bottom) of an array in [0, 1], on a grid s times coarser (LR)."""
    left, top, right, bottom = region
    sub = a[top // s: bottom // s, left // s: right // s]
    return Image.fromarray(np.round(sub * 255).astype(np.uint8))


def choose_gallery(
    per_image: pd.DataFrame, ids: Sequence[str], methods: Sequence[str], metric: str | None,
    higher_is_better: bool, n: int, label: str | None = None,
) -> list[tuple[str, str]]:
    """Up to n image ids with why each was chosen: each method's worst, then the largest disagreements."""
    chosen: dict[str, str] = {}
    label = label or metric
    if metric is not None and metric in per_image and per_image[metric].notna().any():
        df = per_image[per_image[metric].notna()]
        # 1. The worst image of every method (by the primary metric).
        for m in methods:
            rows = df[df["method"] == m].sort_values(metric, ascending=higher_is_better, kind="stable")
            if len(rows) and len(chosen) < n:
                i = str(rows.iloc[0]["image_id"])
                chosen.setdefault(i, f"worst {label} of {m}")
        # 2. Where the methods disagree most (spread of the metric across methods).
        if len(methods) > 1:
            spread = df.pivot_table(index="image_id", columns="method", values=metric).std(axis=1)
            for i, _ in spread.sort_values(ascending=False, kind="stable").items():
                if len(chosen) >= n:
                    break
                chosen.setdefault(str(i), f"methods differ most in {label}")
    # 3. Fill with the first images by id.
    for i in ids:
        if len(chosen) >= n:
            break
        chosen.setdefault(str(i), "first images by id")
    return list(chosen.items())[:n]
