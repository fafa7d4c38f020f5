"""Image folders -> validated, prepared (id, HR, LR) records, with a reason for every skipped file."""

from __future__ import annotations

import errno
import io
import os
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from evalsuite.degrade import TooSmallError, prepare_hr
from evalsuite.paths import cache_dir
from evalsuite.tasks import Task

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently padded
# The decompression-bomb guard: images above this many pixels are refused from their header, before any
# decode ($EVALSUITE_MAX_PIXELS, default 200 MP; every function that opens images also takes `max_pixels`).
MAX_PIXELS_ENV = "EVALSUITE_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 200_000_000


def max_image_pixels() -> int:
    """The decompression-bomb limit in pixels ($EVALSUITE_MAX_PIXELS, else 200 MP)."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    return int(value) if value.strip().isdigit() else DEFAULT_MAX_PIXELS


# PIL's own guard stays on as a backstop, never below ours.
Image.MAX_IMAGE_PIXELS = max(max_image_pixels(), DEFAULT_MAX_PIXELS)

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
    """A data argument -> an existing folder: a folder path, `builtin:skimage`, or a registered set's name.

    A registered set (`set5`, `div2k-val`, ... see `evalsuite data list`) that is not in the data folder
    fails at once with one line saying what to download and where to put it.
    """
    if str(data) == BUILTIN:
        return materialize_builtin()
    path = Path(data).expanduser()
    if not path.exists():
        from evalsuite.testsets import find_set, resolve_hr

        if find_set(str(data)) is not None:
            return resolve_hr(str(data))
        raise FileNotFoundError(
            f"data folder {path} does not exist; pass --data DIR with your HR images, or a set name "
            "(`evalsuite data list`)"
        )
    if not path.is_dir():
        raise NotADirectoryError(f"--data {path} is a file; pass the folder that holds the HR images")
    return path


def resolve_lr_data(lr: str | Path | None, scale: int | None) -> Path | None:
    """An `--lr` argument -> the folder of given LR images: a folder path, or a registered set's shipped LR.

    A set name gives the set's LR folder at `scale` (`--data div2k-val --lr div2k-val --scale 4`); None -> None.
    """
    if lr is None:
        return None
    path = Path(lr).expanduser()
    if path.is_dir():
        return path
    from evalsuite.testsets import find_set, resolve_lr

    if not path.exists() and find_set(str(lr)) is not None:
        return resolve_lr(str(lr), scale)
    if path.exists():
        raise NotADirectoryError(f"--lr {path} is a file; pass the folder that holds the LR images")
    raise FileNotFoundError(f"LR folder {path} does not exist; pass --lr DIR with LR images named as the HR ones")


def resolve_inputs(
    data: str | Path, lr: str | Path | None, task: str | None, scale: int | None, default_task: str
) -> tuple[Path, Path | None, Task]:
    """(HR folder, LR folder or None, task) of a run: names resolved, the scale of paired data inferred.

    Unpaired with neither task nor scale: `default_task`. Paired with neither: the one integer scale the
    sizes give (`infer_pair_scale`), as a custom task.
    """
    from evalsuite.tasks import resolve_task

    data_dir = resolve_data(data)
    if task is not None:
        scale = resolve_task(task, scale).scale if scale is None else scale
    lr_dir = resolve_lr_data(lr, scale)
    if task is None and scale is None:
        if lr_dir is None:
            return data_dir, None, resolve_task(default_task)
        scale = infer_pair_scale(data_dir, lr_dir)
    return data_dir, lr_dir, resolve_task(task, scale)


@dataclass(frozen=True)
class ScanResult:
    """The usable image files of a folder, and the files that cannot be used with the reason."""

    refs: list[ImageFileRef]
    problems: list[tuple[Path, str]]


def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be read (dangling, loop), or None when it points at a file."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return f"broken symbolic link: its target {os.readlink(path)} does not exist"
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
            return "symbolic link loop: the link never reaches a file"
        return f"cannot follow symbolic link: {exc}"
    return None if target.is_file() else "symbolic link to something that is not a file"


def scan_images(folder: Path) -> ScanResult:
    """Every image file under `folder` (recursive, hidden names skipped), with unique stable ids.

    The id is the relative path without extension, '/' -> '__'. Two files that differ only by extension
    keep it in their id (`a_png`, `a_jpg`); ids that still clash (`a/b.png` and `a__b.png`) keep the first
    path in sorted order and list the others as problems. Symbolic links to files are followed; dangling
    links, link loops and non-regular files with an image extension are problems, never silently dropped.
    """
    found: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or any(
            part.startswith(".") for part in p.relative_to(folder).parts
        ):
            continue
        if p.is_symlink():
            why = _link_problem(p)
            if why is None:
                found.append(p)
            elif not os.path.isdir(p):  # links to folders are not image files
                problems.append((p, why))
        elif p.is_file():
            found.append(p)
        elif not p.is_dir():
            problems.append((p, "not a regular file (a device, socket or pipe)"))
    # Ids: the relative path without extension; the extension joins the id when only it tells files apart.
    rel = [p.relative_to(folder).with_suffix("").as_posix().replace("/", "__") for p in found]
    groups: dict[str, list[int]] = {}
    for k, r in enumerate(rel):
        groups.setdefault(r, []).append(k)
    ids = list(rel)
    for members in groups.values():
        exts = [found[k].suffix.lower() for k in members]
        if len(members) > 1 and len(set(exts)) == len(exts):
            for k in members:
                ids[k] = f"{rel[k]}_{found[k].suffix.lower().lstrip('.')}"
    # Ids that still clash: the first path (sorted) keeps the id, the others are listed.
    owner: dict[str, Path] = {}
    refs: list[ImageFileRef] = []
    for i, p in zip(ids, found):
        if i in owner:
            problems.append(
                (
                    p,
                    f"its id {i!r} is also the id of {owner[i]} (ids are the relative path without extension, "
                    "'/' written '__'); rename one of the two files",
                )
            )
            continue
        owner[i] = p
        refs.append(ImageFileRef(i, p))
    return ScanResult(sorted(refs, key=lambda r: r.image_id), problems)


def scan_folder(folder: Path) -> list[ImageFileRef]:
    """Every usable image file under `folder` (recursive), sorted by id; see `scan_images` for the rules."""
    return scan_images(folder).refs


_LR_SUFFIX = re.compile(r"(?:[_-]?[xX]\d+|_SRF_\d+_(?:LR|HR)|_(?:LR|HR)\d*)$")


def match_key(stem_path: str) -> str:
    """The name an LR file is matched by when its own name is not the HR one: `0801x2` -> `0801`.

    Strips one trailing scale or role tag: `x2`, `_x2`, `-x4` (DIV2K, BasicSR, DRealSR's `_x1`), `_SRF_2_LR`
    (SelfExSR), `_LR` / `_HR`, `_LR4` (RealSR).
    """
    return _LR_SUFFIX.sub("", stem_path)


@dataclass(frozen=True)
class PairScan:
    """HR files matched to LR files by id; the ids found on one side only, and other problems."""

    pairs: list[tuple[ImageFileRef, Path]]  # (HR ref, LR path), sorted by id
    problems: list[tuple[Path, str]]


def scan_pairs(hr_dir: Path, lr_dir: Path) -> PairScan:
    """Match LR images to HR images by relative path and stem, whatever the extensions.

    An LR file matches the HR file of the same relative path and stem; failing that, the one whose stem is
    its stem less a scale tag (`match_key`: DIV2K's `0801x2.png` -> `0801.png`). Files of one side with no
    partner, and stems that two files of one side share (`a.png` and `a.jpg`), are problems.
    """
    hr, lr = scan_images(hr_dir), scan_images(lr_dir)
    problems = list(hr.problems) + list(lr.problems)

    def by_stem(refs: list[ImageFileRef], root: Path, key=lambda s: s) -> tuple[dict[str, ImageFileRef], set[str]]:
        table: dict[str, ImageFileRef] = {}
        dup: set[str] = set()
        for r in refs:
            k = key(r.path.relative_to(root).with_suffix("").as_posix())
            if k in table:
                dup.add(k)
            table[k] = r
        return table, dup

    hr_exact, hr_dup = by_stem(hr.refs, hr_dir)
    hr_loose, hr_loose_dup = by_stem(hr.refs, hr_dir, match_key)
    lr_exact, lr_dup = by_stem(lr.refs, lr_dir)
    used: set[str] = set()
    pairs: list[tuple[ImageFileRef, Path]] = []
    for stem, lref in sorted(lr_exact.items()):
        if stem in lr_dup:
            problems.append((lref.path, f"two LR files share the name {stem!r} (different extensions); keep one"))
            continue
        if stem in hr_exact:
            h = hr_exact[stem]
            clash = stem in hr_dup
        elif match_key(stem) in hr_loose:
            h = hr_loose[match_key(stem)]
            clash = match_key(stem) in hr_loose_dup
        else:
            problems.append((lref.path, f"LR image with no HR image of the same name under {hr_dir}"))
            continue
        if clash:
            problems.append((lref.path, f"several HR files match the LR name {stem!r}; keep one of them"))
            continue
        if h.image_id in used:
            problems.append((lref.path, f"a second LR image for HR {h.path.name}; keep one"))
            continue
        used.add(h.image_id)
        pairs.append((h, lref.path))
    for r in hr.refs:
        if r.image_id not in used:
            problems.append((r.path, f"HR image with no LR image of the same name under {lr_dir}"))
    return PairScan(sorted(pairs, key=lambda p: p[0].image_id), problems)


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


def _icc_to_srgb(img: Image.Image) -> Image.Image:
    """Convert pixels tagged with an ICC profile to sRGB (relative colorimetric); alpha is kept.

    A profile that LittleCMS cannot read, or that does not fit the image's colour space, is ignored: the
    pixels are taken as sRGB, as browsers do.
    """
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    alpha = None
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = img.getchannel("A")
        img = img.convert("RGB" if img.mode != "LA" else "L")
    if img.mode not in ("RGB", "L", "CMYK"):
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img
    if out is None:
        return img
    if alpha is not None:
        out.putalpha(alpha)
    return out


@contextmanager
def _open_image(path: Path, failure: str, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Open an image file (first frame) and refuse oversized ones from the header; problems -> BadImageError.

    `failure` names a data error raised inside the block; `max_pixels` is the bomb guard (default
    `max_image_pixels()`).
    """
    limit = max_image_pixels() if max_pixels is None else max_pixels
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(f"cannot read file: {exc.strerror}") from exc
    if size == 0:
        raise BadImageError("empty file (0 bytes)")
    try:
        fh = open(path, "rb")
    except PermissionError as exc:
        raise BadImageError("cannot read file: permission denied (make it readable, e.g. chmod a+r)") from exc
    except OSError as exc:
        raise BadImageError(f"cannot read file: {exc.strerror}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # PIL's notes on corrupt EXIF: the EXIF is dropped
            with Image.open(fh) as im:
                w, h = im.size
                if w * h > limit:
                    raise BadImageError(
                        f"image too large to decode safely: {w}x{h} = {w * h} px is above the limit of {limit} px "
                        f"(a decompression-bomb guard; raise it with ${MAX_PIXELS_ENV})"
                    )
                yield im
    except BadImageError:
        raise
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image (no decoder recognizes the file's contents)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"image too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct_error) as exc:
        raise BadImageError(f"{failure} ({exc})") from exc
    finally:
        fh.close()


# EXIF orientation tag value -> the transpose that displays the stored pixels upright.
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) or str(value).isdigit() else 1
    except Exception:  # a broken EXIF block: the pixels are used as stored
        return 1


def load_rgb(path: Path, max_pixels: int | None = None) -> Image.Image:
    """Decode an image file to 8-bit sRGB: first frame, EXIF orientation applied, ICC profile converted.

    BadImageError with the reason when the file is unusable. Decisions (docs/data.md): animations and
    multi-page files give their first frame; an ICC profile is converted to sRGB; alpha is composited on
    white; 16-bit channels keep their high byte; broken EXIF is ignored (pixels as stored).
    """
    with _open_image(path, "truncated or corrupt image data", max_pixels) as im:
        im.seek(0)
        im.load()  # decodes fully: raises on truncated or corrupt data
        orient = _orientation(im)
        img = _icc_to_srgb(im)
        # EXIF orientation, applied by its tag value (the converted image no longer carries the EXIF block).
        if orient in _ORIENT:
            img = img.transpose(_ORIENT[orient])
        img = _to_rgb(img)
        img.load()
    return img


def stored_size(path: Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) as stored (before EXIF orientation), from the file's header only; BadImageError if unreadable.

    Enough to check a minimum side, which orientation does not change; the pixel data is not decoded, so
    corrupt data is found only by `load_rgb`.
    """
    with _open_image(path, "truncated or corrupt image (its header cannot be read)", max_pixels) as im:
        return im.size


def header_size(path: Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the header only; BadImageError if unreadable."""
    with _open_image(path, "truncated or corrupt image (its header cannot be read)", max_pixels) as im:
        w, h = im.size
        return (h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h)


@dataclass
class Prepared:
    """One usable image: its id, source file, prepared HR (PIL, RGB) and, for paired data, the given LR."""

    image_id: str
    path: Path
    hr: Image.Image
    lr: Image.Image | None = None
    lr_path: Path | None = None


def _check_min(w: int, h: int, min_hr_size: int, why: str) -> None:
    """BadImageError when a prepared HR of w x h is below the smallest size the metrics accept."""
    if min(w, h) < min_hr_size:
        because = f" ({why})" if why else " (the smallest size the chosen metrics accept)"
        raise BadImageError(
            f"too small: the prepared HR is {w}x{h}; at least {min_hr_size} px per side needed{because}"
        )


def prepare_one(
    ref: ImageFileRef, task: Task, min_hr_size: int = 1, min_hr_why: str = "", max_pixels: int | None = None
) -> Prepared:
    """Load, validate and prepare one file for a task; BadImageError with a reason when unusable.

    Sizes are checked from the header before any decode: too small for the task, or (after the crop to a
    multiple of the scale) below `min_hr_size`, the smallest side the metrics accept.
    """
    # Up front, from the header: the size the prepared HR will have.
    w, h = header_size(ref.path, max_pixels)
    s = task.scale
    if task.fixed_size:
        if min(w, h) < int(task.hr_size):
            raise BadImageError(
                f"too small: image is {w}x{h}; task {task.name} needs a shorter side of at least {task.hr_size} px"
            )
        _check_min(int(task.hr_size), int(task.hr_size), min_hr_size, min_hr_why)
    else:
        if w < s or h < s:
            raise BadImageError(f"too small: image is {w}x{h}; scale {s} needs at least {s}x{s} px")
        _check_min(w - w % s, h - h % s, min_hr_size, min_hr_why)
    img = load_rgb(ref.path, max_pixels)
    try:
        hr = prepare_hr(img, task)
    except TooSmallError as exc:
        raise BadImageError(f"too small: {exc}") from exc
    return Prepared(ref.image_id, ref.path, hr)


def prepare_pair(
    ref: ImageFileRef,
    lr_path: Path,
    task: Task,
    min_hr_size: int = 1,
    min_hr_why: str = "",
    max_pixels: int | None = None,
) -> Prepared:
    """Load a given HR/LR pair; HR cropped to scale x LR from the top-left corner (BasicSR's convention).

    The HR must be between scale x LR and scale x LR + scale - 1 px per side (what a crop to a multiple of the
    scale before downsampling leaves); a paper task also fixes the LR size.
    """
    s = task.scale
    w, h = header_size(ref.path, max_pixels)
    try:
        lw, lh = header_size(lr_path, max_pixels)
    except BadImageError as exc:
        raise BadImageError(f"LR image {lr_path}: {exc}") from exc
    # Up front, from the headers: sizes that fit the scale, the task and the metrics.
    if task.fixed_size and (lw, lh) != (task.lr_size, task.lr_size):
        raise BadImageError(
            f"LR image {lr_path.name} is {lw}x{lh}; task {task.name} takes LR images of {task.lr_size}x{task.lr_size}"
        )
    if not (s * lw <= w < s * (lw + 1) and s * lh <= h < s * (lh + 1)):
        raise BadImageError(
            f"HR is {w}x{h} but LR {lr_path.name} is {lw}x{lh}: at x{s} the HR must be {s * lw}x{s * lh} "
            f"(up to {s - 1} px more per side); a wrong scale, or not a pair"
        )
    _check_min(s * lw, s * lh, min_hr_size, min_hr_why)
    img = load_rgb(ref.path, max_pixels)
    try:
        lr = load_rgb(lr_path, max_pixels)
    except BadImageError as exc:
        raise BadImageError(f"LR image {lr_path}: {exc}") from exc
    # BasicSR: the ground truth is cropped to scale x LR from the top-left corner.
    hr = img.crop((0, 0, s * lr.width, s * lr.height))
    return Prepared(ref.image_id, ref.path, hr, lr, lr_path)


def infer_pair_scale(hr_dir: Path, lr_dir: Path, max_pixels: int | None = None) -> int:
    """The one integer scale of a paired set, from the sizes (round(HR / LR) per side); ValueError otherwise."""
    scan = scan_pairs(hr_dir, lr_dir)
    if not scan.pairs:
        raise ValueError(
            f"no LR image under {lr_dir} has an HR image of the same name under {hr_dir}; "
            "LR files must keep the HR file's relative path and name (extension and a scale tag like x4 may differ)"
        )
    seen: dict[int, str] = {}
    odd: dict[str, str] = {}  # non-integer ratios ("3.50" or "3.50x3.00") -> an example id
    for ref, lr_path in scan.pairs:
        try:
            w, h = header_size(ref.path, max_pixels)
            lw, lh = header_size(lr_path, max_pixels)
        except BadImageError:
            continue  # an unreadable file is reported when the pair is prepared
        sw, sh = round(w / lw), round(h / lh)
        # An integer scale s leaves an HR of s x LR up to s - 1 px more per side (a crop to a multiple of s).
        if sw == sh and sw >= 1 and sw * lw <= w < sw * (lw + 1) and sw * lh <= h < sw * (lh + 1):
            seen.setdefault(sw, ref.image_id)
        else:
            rw, rh = f"{w / lw:.2f}", f"{h / lh:.2f}"
            odd.setdefault(rw if rw == rh else f"{rw} by {rh}", ref.image_id)
    if odd and not seen:
        found = ", ".join(f"{k} (e.g. {v})" for k, v in sorted(odd.items()))
        raise ValueError(
            f"the LR images under {lr_dir} are at an HR/LR size ratio of {found}: not an integer scale. "
            "The methods here upscale by integer factors: make the LR at an integer scale (HR side = N x LR side, "
            "up to N - 1 px more), or pass --scale N with HR images that fit it"
        )
    if len(seen) != 1 or odd:
        found = ", ".join(f"x{k} (e.g. {v})" for k, v in sorted(seen.items()))
        if odd:
            found += (", " if found else "") + ", ".join(
                f"a non-integer ratio {k} (e.g. {v})" for k, v in sorted(odd.items())
            )
        raise ValueError(
            f"the LR images under {lr_dir} do not give one integer scale (found: {found or 'none'}); "
            "keep one scale per --lr folder, or give --scale N"
        )
    return next(iter(seen))


def iter_prepared(
    refs: list[ImageFileRef],
    task: Task,
    limit: int | None = None,
    workers: int = 4,
    *,
    lr_paths: dict[str, Path] | None = None,
    min_hr_size: int = 1,
    min_hr_why: str = "",
    max_pixels: int | None = None,
) -> Iterator[Prepared | tuple[ImageFileRef, str]]:
    """Prepared images in id order (decoded in worker threads); failures as (ref, reason).

    With `lr_paths` (id -> LR file) the images are given pairs (`prepare_pair`), else HR files (`prepare_one`).
    """

    def work(ref: ImageFileRef) -> Prepared | tuple[ImageFileRef, str]:
        try:
            if lr_paths is not None:
                return prepare_pair(ref, lr_paths[ref.image_id], task, min_hr_size, min_hr_why, max_pixels)
            return prepare_one(ref, task, min_hr_size, min_hr_why, max_pixels)
        except BadImageError as exc:
            return (ref, str(exc))
        except Exception as exc:  # any other decoder failure costs this file only
            return (ref, f"cannot be decoded: {type(exc).__name__}: {exc}")

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
