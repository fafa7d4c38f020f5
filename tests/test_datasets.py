"""Folder scanning and the validation of every kind of bad or unusual file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evalsuite.datasets import BadImageError, ImageFileRef, iter_prepared, load_rgb, prepare_one, scan_folder
from evalsuite.tasks import resolve_task


def _photo(size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))


def test_scan_is_recursive_sorted_and_ids_are_stable(tmp_path):
    (tmp_path / "b").mkdir()
    _photo().save(tmp_path / "z.png")
    _photo().save(tmp_path / "b" / "a.JPG")
    _photo().save(tmp_path / "b" / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    refs = scan_folder(tmp_path)
    assert [r.image_id for r in refs] == ["b__a_jpg", "b__a_png", "z"]


def test_bad_files_get_reasons(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not an image")
    buf = io.BytesIO()
    _photo((200, 200)).save(buf, format="PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    jbuf = io.BytesIO()
    _photo((200, 200)).save(jbuf, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(jbuf.getvalue()[:500])
    reasons = {}
    for name in ("empty.png", "text.jpg", "trunc.png", "trunc.jpg"):
        with pytest.raises(BadImageError) as e:
            load_rgb(tmp_path / name)
        reasons[name] = str(e.value)
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["trunc.png"] and "truncated" in reasons["trunc.jpg"]


def test_modes_are_converted(tmp_path):
    rgb = _photo()
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgb.convert("P").save(tmp_path / "pal.png")
    rgb.convert("L").save(tmp_path / "gray.png")
    # RGBA: fully transparent pixels become white, opaque ones keep their colour.
    rgba = rgb.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:10, :, 3] = 0
    Image.fromarray(a, "RGBA").save(tmp_path / "alpha.png")
    # 16-bit grayscale: the full range maps to 8 bits (65535 -> 255), not a clip.
    g16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    for name in ("cmyk.jpg", "pal.png", "gray.png", "alpha.png", "g16.png"):
        img = load_rgb(tmp_path / name)
        assert img.mode == "RGB" and img.size == (64, 48), name
    alpha = np.asarray(load_rgb(tmp_path / "alpha.png"))
    assert (alpha[:10] == 255).all() and np.array_equal(alpha[10:], np.asarray(rgb)[10:])
    g = np.asarray(load_rgb(tmp_path / "g16.png"))[..., 0]
    assert g.min() == 0 and g.max() == 255
    gray = np.asarray(load_rgb(tmp_path / "gray.png"))
    assert (gray[..., 0] == gray[..., 1]).all()


def test_exif_orientation_is_applied(tmp_path):
    img = _photo((60, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    assert load_rgb(tmp_path / "rot.jpg").size == (20, 60)


def test_too_small_and_limit(tmp_path):
    _photo((100, 100)).save(tmp_path / "small.png")
    for i in range(4):
        _photo((300, 280)).save(tmp_path / f"ok{i}.png")
    task = resolve_task("imagenet-64-256")
    with pytest.raises(BadImageError, match="too small"):
        prepare_one(ImageFileRef("small", tmp_path / "small.png"), task)
    out = list(iter_prepared(scan_folder(tmp_path), task, limit=2, workers=2))
    ok = [r for r in out if not isinstance(r, tuple)]
    assert [r.image_id for r in ok] == ["ok0", "ok1"]
