"""Image folders -> validated, prepared (id, HR, LR) records, with a reason for every skipped file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from evalsuite.degrade import TooSmallError, prepare_hr
from evalsuite.paths import cache_dir
from evalsuite.tasks import Task

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently padded
Image.MAX_IMAGE_PIXELS = 200_000_000  # refuse decompression bombs above 200 MP, with a clear reason

# The embedded default: public-domain photos that ship inside scikit-image's wheel.
BUILTIN = "builtin:skimage"
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")


class BadImageError(ValueError):
    """A file that cannot be used as an HR image; the message says why, for errors.csv."""


@dataclass(frozen=True)
class ImageFileRef:
    """An input file and its stable id (relative path without extension, '/' -> '__')."""

    image_id: str
    path: Path


def materialize_builtin() -> Path:
    """Write scikit-image's bundled photos to the cache as PNG (once) and return the folder."""
    from skimage import data

    folder = cache_dir("data", "skimage")
    for name in SKIMAGE_PHOTOS:
        dest = folder / f"{name}.png"
        if dest.exists():
            continue
        loader = getattr(data, "stereo_motorcycle" if name == "motorcycle" else name)
        arr = loader()
        arr = arr[0] if isinstance(arr, tuple) else arr
        Image.fromarray(np.asarray(arr)).convert("RGB").save(dest)
    return folder


def resolve_data(data: str | Path) -> Path:
    """A data argument (folder path or `builtin:skimage`) -> an existing folder."""
    if str(data) == BUILTIN:
        return materialize_builtin()
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data folder {path} does not exist; pass --data DIR with your HR images")
    if not path.is_dir():
        raise NotADirectoryError(f"--data {path} is a file; pass the folder that holds the HR images")
    return path


def scan_folder(folder: Path) -> list[ImageFileRef]:
    """Every image file under `folder` (recursive), sorted by id; ids are unique and stable."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    rel = [p.relative_to(folder).with_suffix("").as_posix().replace("/", "__") for p in files]
    counts: dict[str, int] = {}
    for r in rel:
        counts[r] = counts.get(r, 0) + 1
    # Two files that differ only by extension keep it in their id.
    ids = [r if counts[r] == 1 else f"{r}_{p.suffix.lower().lstrip('.')}" for r, p in zip(rel, files)]
    return sorted((ImageFileRef(i, p) for i, p in zip(ids, files)), key=lambda r: r.image_id)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. RGBA/LA/transparent palettes are composited on white (documented)."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit (or 32-bit int) grayscale: scale the full range to 8 bits, not a clip.
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() <= 65535 else float(arr.max())
        arr8 = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV, I;16 variants handled above: PIL converts these to RGB correctly.
    return img.convert("RGB")


@contextmanager
def _open_image(path: Path, failure: str) -> Iterator[Image.Image]:
    """Open an image file; any problem inside the block becomes a BadImageError (`failure` names a data error)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(f"cannot read file: {exc.strerror}") from exc
    if size == 0:
        raise BadImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image (no decoder recognizes the file's contents)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"image too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"{failure} ({exc})") from exc


def load_rgb(path: Path) -> Image.Image:
    """Decode an image file to 8-bit RGB with its EXIF orientation applied; BadImageError if unusable."""
    with _open_image(path, "truncated or corrupt image data") as im:
        im.load()  # decodes fully: raises on truncated or corrupt data
        img = _to_rgb(ImageOps.exif_transpose(im))
        img.load()
    return img


def stored_size(path: Path) -> tuple[int, int]:
    """(width, height) as stored (before EXIF orientation), from the file's header only; BadImageError if unreadable.

    Enough to check a minimum side, which orientation does not change; the pixel data is not decoded, so
    corrupt data is found only by `load_rgb`.
    """
    with _open_image(path, "unreadable image header") as im:
        return im.size


@dataclass
class Prepared:
    """One usable image: its id, source file and prepared HR (PIL, RGB)."""

    image_id: str
    path: Path
    hr: Image.Image


def prepare_one(ref: ImageFileRef, task: Task) -> Prepared:
    """Load, validate and prepare one file for a task; BadImageError with a reason when unusable."""
    img = load_rgb(ref.path)
    try:
        hr = prepare_hr(img, task)
    except TooSmallError as exc:
        raise BadImageError(f"too small: {exc}") from exc
    return Prepared(ref.image_id, ref.path, hr)


def iter_prepared(
    refs: list[ImageFileRef], task: Task, limit: int | None = None, workers: int = 4
) -> Iterator[Prepared | tuple[ImageFileRef, str]]:
    """Prepared images in id order (decoded in worker threads); failures as (ref, reason)."""

    def work(ref: ImageFileRef) -> Prepared | tuple[ImageFileRef, str]:
        try:
            return prepare_one(ref, task)
        except BadImageError as exc:
            return (ref, str(exc))

    usable = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        window = max(1, workers) * 2
        pending = [pool.submit(work, r) for r in refs[:window]]
        nxt = window
        while pending:
            result = pending.pop(0).result()
            if nxt < len(refs):
                pending.append(pool.submit(work, refs[nxt]))
                nxt += 1
            if isinstance(result, Prepared):
                if limit is not None and usable >= limit:
                    continue
                usable += 1
            yield result
            if limit is not None and usable >= limit:
                for f in pending:
                    f.cancel()
                return
