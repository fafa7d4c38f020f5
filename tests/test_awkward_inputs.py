"""A corpus of awkward input files, built at test time, prepared at scales 2, 3, 4, 8 and on every paper task.

Every good file must prepare to the right pixels; every bad one must be listed in errors.csv's rows with a
readable reason; the bad ones must not change what the good ones give.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from evalsuite.degrade import degrade, prepare_hr, quantize, to_image, to_tensor
from evalsuite.prepare import PreparedImages
from evalsuite.tasks import PAPER_TASKS, Task, resolve_task

MIN_HR = 11  # SSIM's 11x11 window: the minimum a run with SSIM passes to the prepare step
TASKS = ["x2", "x3", "x4", "x8", *PAPER_TASKS]


@dataclass
class Expect:
    """What one corpus file must give: its pixels (good) or a reason matching `reason` (bad)."""

    rgb: np.ndarray | None = None  # (H, W, 3) uint8, the decoded image as it must come out of the loader
    reason: str = ""  # regex the errors.csv reason must match (bad files)
    image_id: str = ""  # the id a good file gets (default: its stem)
    tol: int = 0  # allowed difference per channel level (alpha compositing, ICC rounding)


def _pattern(w: int, h: int, seed: int) -> np.ndarray:
    """A blocky random RGB image (compresses well, and any mix-up of files or frames shows)."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))


def _png16(path: Path, a: np.ndarray) -> None:
    """Write a 16-bit RGB PNG by hand (Pillow cannot write one): filter 0 rows, one IDAT chunk."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _icc_rgb(r: tuple, g: tuple, b: tuple, gamma: float = 2.2) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile: primaries r, g, b (XYZ, D50) and a gamma curve."""

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    def xyz(v: tuple) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    name = b"test primaries\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(4 + 4 + 2 + 1 + 67)
    d50 = (0.9642, 1.0, 0.8249)
    tags = [(b"desc", desc), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(r)), (b"gXYZ", xyz(g)), (b"bXYZ", xyz(b))]
    tags += [(b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    start, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, data in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", start + len(body), len(data))
        body += data
    header = struct.pack(">I", start + len(body)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
    header += bytes(12) + b"acsp" + bytes(28) + b"".join(s15(c) for c in d50) + bytes(48)
    return header + struct.pack(">I", len(tags)) + table + body


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255.0
    return np.round(rgb * a + 255.0 * (1 - a)).astype(np.uint8)


def limits(task: Task) -> tuple[int, int]:
    """(the smallest good side, the usual good side) for a task, with MIN_HR as the metrics' minimum."""
    if task.fixed_size:
        return int(task.hr_size), int(task.hr_size)
    s = task.scale
    at = -(-max(s, MIN_HR) // s) * s  # the smallest side whose crop to a multiple of s keeps MIN_HR px
    return at, max(at, 16) + 3


def make_corpus(folder: Path, task: Task) -> tuple[dict[str, Expect], int]:
    """Write the awkward files for `task` under `folder`; return {relative path: Expect} and the bomb limit."""
    at, g = limits(task)
    gw, gh = g + 5, g + 2  # not square, not a multiple of any scale: crops are exercised
    exp: dict[str, Expect] = {}

    def save(name: str, img: Image.Image, **kw) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, **kw)
        return path

    # Plain photos: a normal one, one exactly at the limit, one a pixel below, BMP.
    base = _pattern(gw, gh, 0)
    save("photo.png", Image.fromarray(base))
    exp["photo.png"] = Expect(base)
    at_limit = _pattern(at, at + 1, 1)
    save("at_limit.png", Image.fromarray(at_limit))
    exp["at_limit.png"] = Expect(at_limit)
    save("below_limit.png", Image.fromarray(_pattern(at - 1, at + 4, 2)))
    exp["below_limit.png"] = Expect(reason=r"too small")
    bmp = _pattern(gw, gh, 3)
    save("plain.bmp", Image.fromarray(bmp))
    exp["plain.bmp"] = Expect(bmp)
    # Tiny images and 1xN / Nx1 strips.
    save("tiny.png", Image.fromarray(_pattern(1, 1, 4)))
    exp["tiny.png"] = Expect(reason=r"too small")
    save("strip_1xN.png", Image.fromarray(_pattern(1, 4 * g, 5)))
    exp["strip_1xN.png"] = Expect(reason=r"too small")
    save("strip_Nx1.png", Image.fromarray(_pattern(4 * g, 1, 6)))
    exp["strip_Nx1.png"] = Expect(reason=r"too small")
    # A decompression bomb (relative to the limit the test sets): refused from its header.
    bomb_limit = 2 * (g + 8) ** 2
    save("bomb.png", Image.new("RGB", (2 * (g + 8), 2 * (g + 8)), (9, 9, 9)))
    exp["bomb.png"] = Expect(reason=r"too large to decode safely.*decompression-bomb")
    # Animations and multi-page files: the first frame.
    f0, f1 = _pattern(gw, gh, 7), _pattern(gw, gh, 8)
    frames = [Image.fromarray(f0), Image.fromarray(f1)]
    save("apng.png", frames[0], save_all=True, append_images=frames[1:], duration=100)
    exp["apng.png"] = Expect(f0)
    save("pages.tif", frames[0], save_all=True, append_images=frames[1:])
    exp["pages.tif"] = Expect(f0)
    g0 = np.zeros((gh, gw, 3), np.uint8)
    g0[:, : gw // 2] = (200, 10, 30)
    g0[:, gw // 2 :] = (5, 90, 250)
    save("anim.gif", Image.fromarray(g0), save_all=True, append_images=[Image.fromarray(255 - g0)], duration=90)
    exp["anim.gif"] = Expect(g0)
    # Colour: ICC profiles (sRGB converts to itself; a broken profile is ignored), alpha, palettes, gray.
    icc = _pattern(gw, gh, 9)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save("icc_srgb.png", Image.fromarray(icc), icc_profile=srgb)
    exp["icc_srgb.png"] = Expect(icc, tol=1)
    # A profile whose red primary is sRGB's green and vice versa: pure red pixels are green in sRGB.
    srgb_r, srgb_g, srgb_b = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)
    bands = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)], np.uint8)
    cols = np.arange(gw) * len(bands) // gw
    save(
        "icc_swapped.png",
        Image.fromarray(np.tile(bands[cols], (gh, 1, 1))),
        icc_profile=_icc_rgb(srgb_g, srgb_r, srgb_b),
    )
    exp["icc_swapped.png"] = Expect(np.tile(bands[[1, 0, 2, 3, 4]][cols], (gh, 1, 1)), tol=1)
    save("icc_broken.png", Image.fromarray(icc), icc_profile=b"not a profile at all" * 8)
    exp["icc_broken.png"] = Expect(icc)
    rgba = _pattern(gw, gh, 10)
    alpha = np.tile(np.linspace(0, 255, gw).astype(np.uint8), (gh, 1))
    save("alpha.png", Image.fromarray(np.dstack([rgba, alpha]), "RGBA"))
    exp["alpha.png"] = Expect(_on_white(rgba, alpha), tol=1)
    gray = _pattern(gw, gh, 11)[..., 0]
    save("gray_alpha.png", Image.fromarray(np.dstack([gray, alpha]), "LA"))
    exp["gray_alpha.png"] = Expect(_on_white(np.repeat(gray[..., None], 3, 2), alpha), tol=1)
    save("gray.png", Image.fromarray(gray, "L"))
    exp["gray.png"] = Expect(np.repeat(gray[..., None], 3, 2))
    idx = (np.arange(gh * gw).reshape(gh, gw) % 7).astype(np.uint8)
    palette = np.random.default_rng(12).integers(0, 256, (256, 3), dtype=np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette(palette.ravel().tolist())
    save("palette.png", pal)
    exp["palette.png"] = Expect(palette[idx])
    # 16-bit RGB, PNG and TIFF: each channel keeps its high byte.
    a16 = (_pattern(gw, gh, 13).astype(np.uint16) * 257 + np.uint16(129)).astype(np.uint16)
    _png16(folder / "rgb16.png", a16)
    exp["rgb16.png"] = Expect((a16 >> 8).astype(np.uint8))
    tifffile.imwrite(folder / "tiff16.tif", a16, photometric="rgb")
    exp["tiff16.tif"] = Expect((a16 >> 8).astype(np.uint8))
    # JPEG: CMYK, a valid EXIF rotation, and EXIF whose orientation tag is broken (pixels as stored).
    cmyk_path = save("cmyk.jpg", Image.fromarray(_pattern(gw, gh, 14)).convert("CMYK"), quality=95)
    with Image.open(cmyk_path) as im:
        exp["cmyk.jpg"] = Expect(np.asarray(im.convert("RGB")))
    rot = Image.Exif()
    rot[0x0112] = 6  # displayed rotated 90 degrees clockwise
    rot_path = save("exif_rot.jpg", Image.fromarray(_pattern(gw, gh, 15)), exif=rot.tobytes(), quality=95)
    with Image.open(rot_path) as im:
        exp["exif_rot.jpg"] = Expect(np.asarray(im.convert("RGB").transpose(Image.Transpose.ROTATE_270)))
    # An ICC profile and an EXIF rotation together: converted, then rotated.
    icc_rot = save(
        "icc_rot.jpg", Image.fromarray(_pattern(gw, gh, 24)), exif=rot.tobytes(), icc_profile=srgb, quality=95
    )
    with Image.open(icc_rot) as im:
        exp["icc_rot.jpg"] = Expect(np.asarray(im.convert("RGB").transpose(Image.Transpose.ROTATE_270)), tol=1)
    bad_exif = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01" + struct.pack(">HHII", 0x0112, 3, 1000, 0x1000)
    bad_path = save("bad_exif.jpg", Image.fromarray(_pattern(gw, gh, 16)), exif=bad_exif + b"\x00" * 4, quality=95)
    with Image.open(bad_path) as im:
        exp["bad_exif.jpg"] = Expect(np.asarray(im.convert("RGB")))
    # Broken files: empty, truncated PNG and JPEG, text with an image extension.
    (folder / "empty.png").write_bytes(b"")
    exp["empty.png"] = Expect(reason=r"empty file")
    buf = io.BytesIO()
    Image.fromarray(_pattern(gw, gh, 17)).save(buf, format="PNG")
    (folder / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    exp["trunc.png"] = Expect(reason=r"truncated or corrupt")
    jbuf = io.BytesIO()
    Image.fromarray(_pattern(gw, gh, 18)).save(jbuf, format="JPEG")
    (folder / "trunc.jpg").write_bytes(jbuf.getvalue()[: len(jbuf.getvalue()) // 2])
    exp["trunc.jpg"] = Expect(reason=r"truncated or corrupt")
    (folder / "text.jpg").write_text("this is a text file, not a photo\n" * 20)
    exp["text.jpg"] = Expect(reason=r"not an image")
    # Links: to a file (followed), dangling, a loop; a named pipe with an image extension.
    os.symlink("photo.png", folder / "link_ok.png")
    exp["link_ok.png"] = Expect(base)
    os.symlink("missing.png", folder / "link_dangling.png")
    exp["link_dangling.png"] = Expect(reason=r"broken symbolic link.*missing\.png")
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    exp["loop_a.png"] = Expect(reason=r"symbolic link loop")
    exp["loop_b.png"] = Expect(reason=r"symbolic link loop")
    os.mkfifo(folder / "pipe.png")
    exp["pipe.png"] = Expect(reason=r"not a regular file")
    # Unreadable permissions: root reads it anyway (tests here run as root), anyone else gets the reason.
    perm = _pattern(gw, gh, 19)
    save("no_read.png", Image.fromarray(perm)).chmod(0)
    exp["no_read.png"] = Expect(perm) if os.geteuid() == 0 else Expect(reason=r"permission denied")
    # Ids: a.png + a.jpg keep their extension in the id; clash/b.png and clash__b.png share an id.
    dup = _pattern(gw, gh, 20)
    save("dup.png", Image.fromarray(dup))
    exp["dup.png"] = Expect(dup, image_id="dup_png")
    dup_path = save("dup.jpg", Image.fromarray(_pattern(gw, gh, 21)), quality=95)
    with Image.open(dup_path) as im:
        exp["dup.jpg"] = Expect(np.asarray(im.convert("RGB")), image_id="dup_jpg")
    clash = _pattern(gw, gh, 22)
    save("clash/b.png", Image.fromarray(clash))
    exp["clash/b.png"] = Expect(clash, image_id="clash__b")
    save("clash__b.png", Image.fromarray(_pattern(gw, gh, 23)))
    exp["clash__b.png"] = Expect(reason=r"id 'clash__b' is also the id of .*clash/b\.png.*rename")
    return exp, bomb_limit


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


@pytest.mark.filterwarnings("ignore:Tag data larger than file")
@pytest.mark.parametrize("task_name", TASKS)
def test_awkward_corpus(tmp_path: Path, task_name: str) -> None:
    task = resolve_task(task_name)
    data = tmp_path / "data"
    data.mkdir()
    exp, bomb_limit = make_corpus(data, task)
    good = {k: e for k, e in exp.items() if e.rgb is not None}
    bad = {k: e for k, e in exp.items() if e.rgb is None}
    assert len(exp) >= 20 and len(bad) >= 10

    prep = PreparedImages(tmp_path / "run", task, data)
    ids, errors, index = prep.prepare(None, 2, lambda *a: None, min_hr_size=MIN_HR, max_pixels=bomb_limit)

    # Every bad file is listed once, with its own reason; no good file is.
    reasons = {Path(e["path"]).relative_to(data).as_posix(): e["reason"] for e in errors}
    assert len(reasons) == len(errors)
    assert set(reasons) == set(bad), (sorted(reasons), sorted(bad))
    for name, e in bad.items():
        assert re.search(e.reason, reasons[name]), (name, reasons[name])
    # Every good file is prepared: its HR is the task's preparation of the right pixels, its LR our degradation.
    want_ids = {e.image_id or Path(k).stem for k, e in good.items()}
    assert set(ids) == want_ids and index["paired"] is False
    for name, e in good.items():
        i = e.image_id or Path(name).stem
        want_hr = np.asarray(prepare_hr(Image.fromarray(e.rgb), task)).astype(np.int16)
        got_hr = _read(prep.hr_dir / f"{i}.png")
        assert got_hr.shape == want_hr.shape, name
        assert np.abs(got_hr - want_hr).max() <= e.tol, name
        got_lr = _read(prep.lr_dir / f"{i}.png")
        want_lr = np.asarray(
            to_image(quantize(degrade(to_tensor(Image.fromarray(got_hr.astype(np.uint8)))[None], task.scale))[0])
        )
        assert np.array_equal(got_lr, want_lr.astype(np.int16)), name
        assert got_hr.shape[0] == got_lr.shape[0] * task.scale and min(got_hr.shape[:2]) >= MIN_HR


@pytest.mark.filterwarnings("ignore:Tag data larger than file")
def test_good_files_give_the_same_images_alone(tmp_path: Path) -> None:
    """The bad files of the corpus change nothing for the good ones (same ids, same bytes)."""
    task = resolve_task("x3")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    exp, bomb_limit = make_corpus(mixed, task)
    alone = tmp_path / "alone"
    for name in ("photo.png", "at_limit.png", "rgb16.png", "anim.gif", "alpha.png"):
        (alone / name).parent.mkdir(parents=True, exist_ok=True)
        (alone / name).write_bytes((mixed / name).read_bytes())
    a = PreparedImages(tmp_path / "run_mixed", task, mixed)
    b = PreparedImages(tmp_path / "run_alone", task, alone)
    ids_a, _, _ = a.prepare(None, 2, lambda *x: None, min_hr_size=MIN_HR, max_pixels=bomb_limit)
    ids_b, errors_b, _ = b.prepare(None, 2, lambda *x: None, min_hr_size=MIN_HR, max_pixels=bomb_limit)
    assert errors_b == [] and set(ids_b) <= set(ids_a)
    for i in ids_b:
        assert (a.hr_dir / f"{i}.png").read_bytes() == (b.hr_dir / f"{i}.png").read_bytes()
        assert (a.lr_dir / f"{i}.png").read_bytes() == (b.lr_dir / f"{i}.png").read_bytes()


def test_min_size_is_checked_on_cached_images_too(tmp_path: Path) -> None:
    """A rerun with a larger metric minimum lists the now-too-small cached image instead of scoring it."""
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(_pattern(24, 30, 0)).save(data / "small.png")
    Image.fromarray(_pattern(64, 60, 1)).save(data / "big.png")
    prep = PreparedImages(tmp_path / "run", resolve_task("x2"), data)
    ids, errors, _ = prep.prepare(None, 1, lambda *a: None)
    assert ids == ["big", "small"] and errors == []
    ids, errors, _ = prep.prepare(None, 1, lambda *a: None, min_hr_size=32, min_hr_why="LPIPS needs 32 px")
    assert ids == ["big"]
    assert errors[0]["path"].endswith("small.png") and "24x30" in errors[0]["reason"]
    assert "LPIPS needs 32 px" in errors[0]["reason"]
