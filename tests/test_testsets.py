"""The test-set registry: entries, fetch (download, checksum, unpack) from a local folder, offline errors, CLI."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite import testsets as T
from evalsuite.cli import main
from evalsuite.datasets import resolve_data, resolve_inputs, resolve_lr_data

NAMES = (
    "set5", "set14", "bsd100", "urban100", "manga109", "div2k-val", "general100", "celeba-hq", "ffhq",
    "realsr", "drealsr",
)


@pytest.fixture()
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $EVALSUITE_DATA for one test, and a registry that forgets sets the test adds."""
    root = tmp_path / "datasets"
    monkeypatch.setenv(T.DATA_ENV, str(root))
    monkeypatch.setattr(T._SETS, "entries", dict(T._SETS.entries))
    return root


def _png_bytes(w: int, h: int, seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _targz(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_has_every_paper_set_with_its_facts() -> None:
    sets = T.all_sets()
    assert set(NAMES) <= set(sets)
    for ts in sets.values():
        assert ts.images > 0 and ts.licence and re.match(r"https?://", ts.source), ts.name
        if ts.archives:
            roles = {a.role for a in ts.archives}
            assert roles == {"HR", *(f"LR_x{s}" for s in ts.lr_scales)}, ts.name
            for a in ts.archives:
                assert re.match(r"https://", a.url) and (
                    a.sha256 == T.UNVERIFIED or re.fullmatch(r"[0-9a-f]{64}", a.sha256)
                )
        else:
            # The user's own copy; only real camera pairs ship LR of their own (placed by the user too).
            assert ts.manual and (not ts.lr_scales or ts.lr_kind == "camera"), ts.name
    assert T.get_set("b100").name == "bsd100" and T.get_set("DIV2K").name == "div2k-val"
    assert sets["div2k-val"].lr_scales == (2, 3, 4) and sets["div2k-val"].images == 100


def test_fetch_verifies_and_unpacks_from_a_local_folder(data_root: Path, tmp_path: Path) -> None:
    # A tiny set served from a local folder (file:// URLs): HR as a zip, LR x2 as a tar.gz (as the mirrors ship).
    srv = tmp_path / "server"
    srv.mkdir()
    hr_sha = _zip(srv / "tiny_HR.zip", {"tiny_HR/a.png": _png_bytes(8, 6, 0), "tiny_HR/b.png": _png_bytes(8, 6, 1)})
    _targz(
        srv / "tiny_LR_x2.tar.gz",
        {"tiny_LR_x2/ax2.png": _png_bytes(4, 3, 2), "tiny_LR_x2/bx2.png": _png_bytes(4, 3, 3)},
    )
    ts = T.register_set(
        T.TestSet(
            "tiny",
            "a test set",
            2,
            (2,),
            "test",
            "https://example.org/tiny",
            (
                T.Archive((srv / "tiny_HR.zip").as_uri(), hr_sha, "HR"),
                T.Archive((srv / "tiny_LR_x2.tar.gz").as_uri(), T.UNVERIFIED, "LR_x2"),
            ),
        )
    )
    # Before fetching: one line saying what to download and where.
    with pytest.raises(T.MissingDataError) as e:
        resolve_data("tiny")
    msg = str(e.value)
    assert "\n" not in msg and str(data_root / "tiny" / "HR") in msg and "evalsuite data fetch tiny" in msg
    lines: list[str] = []
    hr = T.fetch("tiny", log=lines.append)
    assert sorted(p.name for p in hr.iterdir()) == ["a.png", "b.png"]
    assert (hr / "a.png").read_bytes() == _png_bytes(8, 6, 0)
    lr_sha = hashlib.sha256((srv / "tiny_LR_x2.tar.gz").read_bytes()).hexdigest()
    assert any(lr_sha in line and "unverified" in line for line in lines)  # the computed hash is printed
    assert resolve_data("tiny") == hr == T.hr_dir(ts)
    assert resolve_lr_data("tiny", 2) == data_root / "tiny" / "LR_x2"
    # Paired by name: the scale is inferred from the sizes (8x6 over 4x3).
    data_dir, lr_dir, task = resolve_inputs("tiny", "tiny", None, None, "imagenet-64-256")
    assert (data_dir, lr_dir, task.scale, task.fixed_size) == (hr, data_root / "tiny" / "LR_x2", 2, False)
    row = next(r for r in T.status_table() if r["name"] == "tiny")
    assert row["status"].startswith("present (2/2 images, LR x2")


def test_fetch_refuses_a_wrong_checksum(data_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    _zip(archive, {"x/a.png": _png_bytes(4, 4, 0)})
    T.register_set(
        T.TestSet("bad", "t", 1, (), "test", "https://example.org", (T.Archive(archive.as_uri(), "0" * 64, "HR"),))
    )
    with pytest.raises(ValueError, match="expected 0000"):
        T.fetch("bad", log=lambda *a: None)
    assert T.count_images(data_root / "bad" / "HR") == 0
    assert not list((data_root / ".downloads").glob("*bad*"))  # the download was deleted


def test_unpack_refuses_paths_outside_the_folder(data_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    sha = _zip(archive, {"../../escape.png": _png_bytes(4, 4, 0)})
    T.register_set(
        T.TestSet("evil", "t", 1, (), "test", "https://example.org", (T.Archive(archive.as_uri(), sha, "HR"),))
    )
    with pytest.raises(ValueError, match="outside"):
        T.fetch("evil", log=lambda *a: None)
    assert not (data_root.parent / "escape.png").exists()


def test_own_copy_sets_and_the_cli(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Offline / not placed: `--data celeba-hq` fails at once with one line naming the folder.
    assert main(["run", "benchmark", "--data", "celeba-hq", "--methods", "bicubic", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(data_root / "celeba-hq" / "HR") in err
    # A user's own archive of a manual set is unpacked with the same code path.
    archive = tmp_path / "General-100.zip"
    _zip(archive, {"General-100/im_1.bmp": _png_bytes(6, 6, 0), "General-100/readme.txt": b"x"})
    assert main(["data", "fetch", "general100", "--archive", str(archive)]) == 0
    hr = data_root / "general100" / "HR"
    assert (hr / "im_1.bmp").read_bytes() == _png_bytes(6, 6, 0) and T.count_images(hr) == 1
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert re.search(r"^general100\s+present \(1/100 images\)", out, re.M)
    assert re.search(r"^set5\s+fetchable", out, re.M) and re.search(r"^ffhq\s+missing", out, re.M)
    assert main(["data", "path", "div2k"]) == 0
    assert capsys.readouterr().out.split() == [
        str(data_root / "div2k-val" / d) for d in ("HR", "LR_x2", "LR_x3", "LR_x4")
    ]
    assert main(["data", "fetch", "nope"]) == 1 and "unknown data set" in capsys.readouterr().err


def test_fetch_over_http_from_localhost(data_root: Path, tmp_path: Path) -> None:
    """The same path over HTTP, from a server on the loopback interface only."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    srv = tmp_path / "www"
    srv.mkdir()
    sha = _zip(srv / "set.zip", {"imgs/a.png": _png_bytes(6, 4, 0)})

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(srv)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/set.zip"
        T.register_set(T.TestSet("web", "t", 1, (), "test", "https://example.org", (T.Archive(url, sha, "HR"),)))
        hr = T.fetch("web", log=lambda *a: None)
        assert (hr / "a.png").read_bytes() == _png_bytes(6, 4, 0)
    finally:
        server.shutdown()
        server.server_close()


def test_tar_members_outside_the_folder_are_refused(data_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    sha = _targz(archive, {"../outside.png": _png_bytes(4, 4, 0)})
    T.register_set(
        T.TestSet("eviltar", "t", 1, (), "test", "https://example.org", (T.Archive(archive.as_uri(), sha, "HR"),))
    )
    with pytest.raises(ValueError, match="outside|not a plain file"):
        T.fetch("eviltar", log=lambda *a: None)
    assert not (data_root / "outside.png").exists() and T.count_images(data_root / "eviltar" / "HR") == 0


def _save(path: Path, w: int, h: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(w, h, seed))


def test_camera_pair_sets_resolve_as_paired_x4_with_their_own_names(data_root: Path, tmp_path: Path) -> None:
    from evalsuite.datasets import scan_pairs

    for name in ("realsr", "drealsr"):
        ts = T.get_set(name)
        assert ts.lr_kind == "camera" and ts.lr_scales == (4,) and not ts.archives and "unverified" in ts.licence
        # Not placed yet: one line naming the folder and the source.
        with pytest.raises(T.MissingDataError, match=re.escape(str(data_root / name / "HR"))):
            resolve_inputs(name, name, None, None, "imagenet-64-256")
    # RealSR v3's names (Canon_001_HR.png / Canon_001_LR4.png), one folder per camera.
    for cam in ("Canon", "Nikon"):
        _save(data_root / "realsr" / "HR" / cam / f"{cam}_001_HR.png", 40, 32, 1)
        _save(data_root / "realsr" / "LR_x4" / cam / f"{cam}_001_LR4.png", 10, 8, 2)
    # DRealSR's names (*_x1.png / *_x4.png).
    _save(data_root / "drealsr" / "HR" / "DSC_1454_x1.png", 40, 32, 3)
    _save(data_root / "drealsr" / "LR_x4" / "DSC_1454_x4.png", 10, 8, 4)
    for name, n in (("realsr", 2), ("drealsr", 1)):
        data_dir, lr_dir, task = resolve_inputs(name, name, None, None, "imagenet-64-256")
        assert task.scale == 4 and lr_dir == data_root / name / "LR_x4"
        scan = scan_pairs(data_dir, lr_dir)
        assert len(scan.pairs) == n and scan.problems == []
