"""Stimuli from a run folder: every image re-encoded the same way (8-bit RGB PNG, no metadata), catch copies.

Only the pixels survive: each file is decoded to an 8-bit RGB array and written by one encoder with one
setting, so the ground truth and a method's output differ in nothing but their pixels.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from studies.store import StimulusImage

CATCH_FACTOR = 8  # catch copies: box-downsampled by 8, then blown up with nearest neighbour (plainly broken)
ATTENTION_BLOCK = 16  # attention copies: grey blocks of this many pixels (no trace of the photo is left)


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 array -> PNG bytes with IHDR/IDAT/IEND only (no text, time, gamma or ICC chunks)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {pixels.shape} {pixels.dtype}")
    buf = io.BytesIO()
    # zlib level 1: a third of level 6's time on photos for about 12% more bytes (study creation time)
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def load_pixels(path: Path) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 array (alpha and metadata dropped)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}; rerun the benchmark to rewrite it") from exc


def catch_copy(pixels: np.ndarray, factor: int = CATCH_FACTOR) -> np.ndarray:
    """A heavily degraded copy of the same size: box-downsample by `factor`, nearest-upsample back."""
    h, w = pixels.shape[:2]
    im = Image.fromarray(pixels, "RGB")
    small = im.resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST), dtype=np.uint8)


def attention_copy(pixels: np.ndarray, seed: int | tuple[int, int] = 0, block: int = ATTENTION_BLOCK) -> np.ndarray:
    """An obviously broken image of the same size: flat grey blocks of random brightness around the image's
    mean grey (seeded); nobody attending to the task can take it for a photo."""
    h, w = pixels.shape[:2]
    rng = np.random.default_rng(seed)
    grey = float(pixels.mean())
    # One random grey level per block, spread +-40 around the mean, then blown up to full size.
    levels = np.clip(grey + rng.uniform(-40, 40, size=(-(-h // block), -(-w // block))), 0, 255)
    full = np.repeat(np.repeat(levels, block, axis=0), block, axis=1)[:h, :w]
    return np.repeat(full[:, :, None], 3, axis=2).astype(np.uint8)


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order (for leak audits)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, out = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    return out


def run_images(run_dir: str | Path, methods: list[str] | tuple[str, ...]) -> list[str]:
    """Image ids with hr/, lr/ and an output of every method in a run folder (errors say what is missing)."""
    run = Path(run_dir)
    if not (run / "hr").is_dir() or not (run / "lr").is_dir():
        raise FileNotFoundError(
            f"{run} is not a run folder (no hr/ and lr/); make one with `evalsuite run benchmark --out {run}`"
        )
    ids = _png_ids(run / "hr") & _png_ids(run / "lr")
    for m in methods:
        out = run / "outputs" / m
        if not out.is_dir():
            known = _run_methods(run)
            hint = f"methods in this run: {', '.join(known)}" if known else "no summary.csv in this run"
            raise FileNotFoundError(
                f"no outputs for method {m!r} in {out} ({hint}); pass --methods with "
                f"labels from the run's summary.csv or rerun the benchmark with it"
            )
        ids &= _png_ids(out)
    if not ids:
        raise FileNotFoundError(f"no image in {run} has hr/, lr/ and outputs for {', '.join(methods)}")
    return sorted(ids)


def _png_ids(folder: Path) -> set[str]:
    """Image ids of the PNG files under a folder: relative paths without the suffix (posix separators)."""
    ids = set()
    for top, _dirs, files in os.walk(folder):
        rel = os.path.relpath(top, folder).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        ids.update(prefix + f[:-4] for f in files if f.endswith(".png"))
    return ids


def _run_methods(run: Path) -> list[str]:
    """The method labels of a run's summary.csv (empty without one), for error messages."""
    if not (run / "summary.csv").exists():
        return []
    return [str(m) for m in pd.read_csv(run / "summary.csv")["method"].tolist()]


def build_stimuli(
    run_dir: str | Path,
    image_ids: tuple[str, ...],
    methods: tuple[str, ...],
    show_lr: bool,
    attention: bool = False,
    seed: int = 0,
) -> list[StimulusImage]:
    """Re-encode the ground truth, outputs, LR input (task 1), a catch copy (and an attention copy) per image.

    Only the given images (the study's) are read; images are decoded and encoded in a few threads (PNG
    coding releases the GIL), and the list keeps the images' order.
    """
    run = Path(run_dir)

    def one(k: int, image_id: str) -> list[StimulusImage]:
        hr = load_pixels(run / "hr" / f"{image_id}.png")
        out = [StimulusImage(image_id, "hr", None, encode_png(hr))]
        out.append(StimulusImage(image_id, "catch", None, encode_png(catch_copy(hr))))
        if attention:
            out.append(StimulusImage(image_id, "attention", None, encode_png(attention_copy(hr, seed=(seed, k)))))
        if show_lr:
            out.append(
                StimulusImage(image_id, "lr", None, encode_png(load_pixels(run / "lr" / f"{image_id}.png")))
            )
        for m in methods:
            path = run / "outputs" / m / f"{image_id}.png"
            sr = load_pixels(path)
            if sr.shape != hr.shape:
                raise ValueError(
                    f"{path} is {sr.shape[1]}x{sr.shape[0]} but its ground truth is "
                    f"{hr.shape[1]}x{hr.shape[0]}; a 2AFC pair must have one size (rerun the method)"
                )
            out.append(StimulusImage(image_id, "output", m, encode_png(sr)))
        return out

    workers = max(1, min(8, os.cpu_count() or 1, len(image_ids)))
    with ThreadPoolExecutor(workers) as pool:
        return [st for group in pool.map(one, range(len(image_ids)), image_ids) for st in group]
