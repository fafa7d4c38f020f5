"""One registry of the standard SR test sets: where each comes from, how it is fetched, where it is kept.

A set lives in the data folder ($EVALSUITE_DATA, else ~/.cache/evalsuite/data) as `<name>/HR/` and, for the
scales whose LR images the set ships, `<name>/LR_x<s>/`. `evalsuite data fetch NAME` downloads each archive,
checks its sha256 (or prints the hash it computed where none is published: "unverified"), and unpacks the
folder of images it holds into place. Sets that need the user's own copy (licence terms, an application form)
have no archive: their entry says where to get them and where to put the images. Offline, a missing set is
one line that says what to download and where to put it, the same honesty as missing weights.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from evalsuite.paths import env_dir
from evalsuite.registry import Registry

DATA_ENV = "EVALSUITE_DATA"
UNVERIFIED = "unverified"  # no published checksum: fetch prints the sha256 it computed
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Archive:
    """One downloadable archive of a set: its URL, sha256 (or "unverified") and the folder it fills."""

    url: str
    sha256: str
    role: str  # "HR" or "LR_x<s>"


@dataclass(frozen=True)
class TestSet:
    """A registered test set: name, origin, licence, image count, shipped LR scales and archives."""

    __test__ = False  # not a pytest test class

    name: str
    title: str
    images: int  # HR images in the set
    lr_scales: tuple[int, ...]  # scales whose LR images the set ships (bicubic unless `lr_kind` says otherwise)
    licence: str
    source: str  # the official page
    archives: tuple[Archive, ...] = ()  # empty: the user's own copy (see `manual`)
    manual: str = ""  # how to obtain a set that cannot be fetched
    aliases: tuple[str, ...] = ()
    lr_kind: str = "bicubic"  # how the shipped LR was made: bicubic, or camera (real LR/HR pairs, other focal length)


class MissingDataError(RuntimeError):
    """A registered set is not in the data folder (fetch it, or place the user's own copy)."""


_SETS: Registry[TestSet] = Registry("data set", "evalsuite.testsets")
# The registry's operations under the names the rest of evalsuite uses: add (idempotent), every set by name,
# a set by name or alias (None / KeyError listing the known names when there is none).
register_set = _SETS.add
all_sets = _SETS.all
find_set = _SETS.find
get_set = _SETS.get


def data_root() -> Path:
    """The folder sets are kept in ($EVALSUITE_DATA, else ~/.cache/evalsuite/data)."""
    return env_dir(DATA_ENV, "data")


def hr_dir(ts: TestSet) -> Path:
    """Where a set's HR images are kept (whether or not they are there)."""
    return data_root() / ts.name / "HR"


def lr_dir(ts: TestSet, scale: int) -> Path:
    """Where a set's shipped LR images at `scale` are kept (whether or not they are there)."""
    return data_root() / ts.name / f"LR_x{scale}"


def count_images(folder: Path) -> int:
    """Image files under a folder (recursive, hidden names skipped)."""
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))


def missing_message(ts: TestSet, scale: int | None = None) -> str:
    """The one line a user sees when a set (or its LR at `scale`) is not in the data folder."""
    dest = hr_dir(ts) if scale is None else lr_dir(ts, scale)
    what = f"data set '{ts.name}'" + (f" (LR x{scale})" if scale is not None else "")
    if ts.archives:
        urls = [a.url for a in ts.archives if a.role == ("HR" if scale is None else f"LR_x{scale}")]
        how = (
            f"run `evalsuite data fetch {ts.name}` where the network allows, "
            f"or download {urls[0]} and unpack its images into {dest}"
        )
    else:
        how = f"{ts.manual}; put the images in {dest}"
    return f"{what} not found in {dest}: {how} (or set {DATA_ENV} to the folder that holds {ts.name}/)"


def resolve_hr(name: str) -> Path:
    """The HR folder of a registered set; MissingDataError (one line) when it is not there."""
    ts = get_set(name)
    path = hr_dir(ts)
    if count_images(path) == 0:
        raise MissingDataError(missing_message(ts))
    return path


def resolve_lr(name: str, scale: int | None) -> Path:
    """The shipped LR folder of a registered set at `scale`; ValueError / MissingDataError when unavailable."""
    ts = get_set(name)
    if not ts.lr_scales:
        raise ValueError(f"data set '{ts.name}' ships no LR images; drop --lr (the LR is then made by our degradation)")
    if scale is None:
        if len(ts.lr_scales) > 1:
            shipped = "|".join(str(s) for s in ts.lr_scales)
            raise ValueError(f"data set '{ts.name}' ships LR at x{shipped}: give --scale {shipped}")
        scale = ts.lr_scales[0]
    if scale not in ts.lr_scales:
        raise ValueError(f"data set '{ts.name}' ships LR at {', '.join(f'x{s}' for s in ts.lr_scales)}, not x{scale}")
    path = lr_dir(ts, scale)
    if count_images(path) == 0:
        raise MissingDataError(missing_message(ts, scale))
    return path


def status_table() -> list[dict[str, str]]:
    """One row per set: name, status (present N/M, fetchable, missing), LR scales, path, source, licence."""
    rows = []
    for ts in sorted(_SETS.all().values(), key=lambda t: t.name):
        n = count_images(hr_dir(ts))
        if n:
            lr = [s for s in ts.lr_scales if count_images(lr_dir(ts, s))]
            status = f"present ({n}/{ts.images} images" + (f", LR x{','.join(map(str, lr))})" if lr else ")")
        else:
            status = "fetchable" if ts.archives else "missing (your own copy)"
        rows.append(
            {
                "name": ts.name,
                "title": ts.title,
                "status": status,
                "images": str(ts.images),
                "lr_scales": ",".join(f"x{s}" for s in ts.lr_scales) or "-",
                "path": str(hr_dir(ts)),
                "source": ts.source,
                "licence": ts.licence,
            }
        )
    return rows


def _download(url: str, dest: Path) -> None:
    """Download `url` (http, https or file) to `dest` atomically."""
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _unpack(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into `dest`, refusing members that leave it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (dest / member).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise ValueError(f"{archive.name}: member {member!r} would be written outside {dest}")
            z.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            if hasattr(tarfile, "data_filter"):
                try:
                    t.extractall(dest, filter="data")  # no absolute paths, links out, or devices
                except tarfile.TarError as exc:
                    raise ValueError(f"{archive.name}: {exc}") from exc
                return
            # Pythons without extraction filters: regular files and folders inside `dest` only.
            for m in t.getmembers():
                if not (m.isfile() or m.isdir()) or not (dest / m.name).resolve().is_relative_to(dest.resolve()):
                    raise ValueError(f"{archive.name}: member {m.name!r} is not a plain file inside {dest}")
            t.extractall(dest)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")


def _image_folder(root: Path) -> Path:
    """The folder of an unpacked archive that holds the most image files (directly)."""
    best, most = root, -1
    for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        n = sum(1 for p in d.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        if n > most:
            best, most = d, n
    if most <= 0:
        raise ValueError("the archive holds no image files")
    return best


def install_archive(ts: TestSet, archive: Path, role: str, log=print) -> Path:
    """Unpack an archive's image folder into the set's `role` folder (HR or LR_x<s>); return that folder."""
    dest = data_root() / ts.name / role
    with tempfile.TemporaryDirectory(dir=data_root(), prefix=f".{ts.name}-") as tmp:
        _unpack(archive, Path(tmp))
        images = _image_folder(Path(tmp))
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for item in images.iterdir():
            shutil.move(str(item), dest / item.name)
    log(f"{ts.name}: {count_images(dest)} images in {dest}")
    return dest


def fetch(name: str, archive: Path | None = None, log=print) -> Path:
    """Download, verify and unpack a set (or unpack the user's own `archive` as its HR); return its HR folder.

    A published sha256 must match (the download is deleted otherwise); an "unverified" archive gets its
    computed sha256 printed, to be recorded in the registry.
    """
    ts = get_set(name)
    if archive is not None:
        install_archive(ts, Path(archive), "HR", log)
        return hr_dir(ts)
    if not ts.archives:
        raise MissingDataError(missing_message(ts))
    downloads = data_root() / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for a in ts.archives:
        file = downloads / f"{ts.name}-{a.role}-{a.url.split('?')[0].rstrip('/').rsplit('/', 1)[-1]}"
        if not file.exists():
            log(f"{ts.name}: downloading {a.url}")
            try:
                _download(a.url, file)
            except OSError as exc:
                raise MissingDataError(f"{missing_message(ts)}. Download failed: {exc}") from exc
        digest = _sha256(file)
        if a.sha256 == UNVERIFIED:
            log(f"{ts.name}: sha256 of {file.name} = {digest} (no published checksum to compare: unverified)")
        elif digest != a.sha256:
            file.unlink()
            raise ValueError(
                f"{ts.name}: {a.url} has sha256 {digest}, expected {a.sha256}; the download was deleted "
                "(a changed or corrupted file: try again, or report it)"
            )
        install_archive(ts, file, a.role, log)
    return hr_dir(ts)


def _hf(repo: str, file: str) -> str:
    return f"https://huggingface.co/datasets/eugenesiow/{repo}/resolve/main/data/{file}"


def _siow(repo: str, stem: str) -> tuple[Archive, ...]:
    """The HR and x2/x3/x4 LR archives of one of eugenesiow's Hugging Face mirrors."""
    hr = Archive(_hf(repo, f"{stem}_HR.tar.gz"), UNVERIFIED, "HR")
    return (hr, *(Archive(_hf(repo, f"{stem}_LR_x{s}.tar.gz"), UNVERIFIED, f"LR_x{s}") for s in (2, 3, 4)))


_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K"
_MIRROR = "mirror: huggingface.co/datasets/eugenesiow"
for _ts in (
    TestSet(
        "set5",
        "Set5 (Bevilacqua et al., BMVC 2012)",
        5,
        (2, 3, 4),
        f"no licence published (research use; {_MIRROR}/Set5 lists 'other')",
        "http://people.rennes.inria.fr/Aline.Roumy/results/SR_BMVC12.html",
        _siow("Set5", "Set5"),
    ),
    TestSet(
        "set14",
        "Set14 (Zeyde et al., 2010)",
        14,
        (2, 3, 4),
        f"no licence published (research use; {_MIRROR}/Set14 lists 'other')",
        "https://sites.google.com/site/romanzeyde/research-interests",
        _siow("Set14", "Set14"),
    ),
    TestSet(
        "bsd100",
        "BSD100 / B100 (the BSDS300 test images)",
        100,
        (2, 3, 4),
        f"Berkeley Segmentation Dataset terms (research use; {_MIRROR}/BSD100 lists 'other')",
        "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/",
        _siow("BSD100", "BSD100"),
        aliases=("b100", "bsd-100"),
    ),
    TestSet(
        "urban100",
        "Urban100 (Huang et al., CVPR 2015)",
        100,
        (2, 3, 4),
        "CC-BY-4.0 per the card of the Hugging Face mirror (huggingface.co/datasets/eugenesiow/Urban100)",
        "https://github.com/jbhuang0604/SelfExSR",
        _siow("Urban100", "Urban100"),
    ),
    TestSet(
        "manga109",
        "Manga109 (Matsui et al., 2017), the 109-image SR benchmark",
        109,
        (),
        "academic use only, by application to the Manga109 authors; no redistribution",
        "https://huggingface.co/datasets/hal-utokyo/Manga109",
        manual="apply for Manga109 at https://huggingface.co/datasets/hal-utokyo/Manga109 (academic use), "
        "then make the 109-image SR benchmark from it",
    ),
    TestSet(
        "div2k-val",
        "DIV2K validation (NTIRE 2017), images 0801-0900",
        100,
        (2, 3, 4),
        "academic research use (see the DIV2K page); images keep their owners' copyright",
        f"{_DIV2K}/",
        (
            Archive(f"{_DIV2K}/DIV2K_valid_HR.zip", UNVERIFIED, "HR"),
            *(Archive(f"{_DIV2K}/DIV2K_valid_LR_bicubic_X{s}.zip", UNVERIFIED, f"LR_x{s}") for s in (2, 3, 4)),
        ),
        aliases=("div2k", "div2k-valid"),
    ),
    TestSet(
        "general100",
        "General-100 (Dong et al., FSRCNN, ECCV 2016)",
        100,
        (),
        "no licence published (research use)",
        "http://mmlab.ie.cuhk.edu.hk/projects/FSRCNN.html",
        manual="download General-100.zip from http://mmlab.ie.cuhk.edu.hk/projects/FSRCNN.html and run "
        "`evalsuite data fetch general100 --archive General-100.zip`",
    ),
    TestSet(
        "celeba-hq",
        "CelebA-HQ (Karras et al., 2018): the SR3 paper's face test set",
        30000,
        (),
        "CelebA terms: non-commercial research only",
        "https://github.com/tkarras/progressive_growing_of_gans",
        manual="build CelebA-HQ with the progressive_growing_of_gans dataset tool (1024x1024 images; your own copy)",
        aliases=("celebahq",),
    ),
    # Real-world pairs: LR and HR taken by the same camera at two focal lengths, registered by the authors.
    # No archive with a stable URL and no published checksum: the user's own copy, laid out as HR/ + LR_x4/.
    # Each scale has its own registered HR images, so one set folder holds one scale: x4, the one the
    # real-world SR papers (StableSR, DiffBIR, SeeSR, OSEDiff) report; x2/x3 run as --data DIR --lr DIR.
    TestSet(
        "realsr",
        "RealSR v3 (Cai et al., ICCV 2019): Canon and Nikon x4 test pairs (50 + 50; not verified here)",
        100,
        (4,),
        "no licence file in the project repository (research use; check the authors' terms); unverified",
        "https://github.com/csjcai/RealSR",
        manual="download RealSR (V3) from the links at https://github.com/csjcai/RealSR (your own copy); from "
        "<Camera>/Test/4/ put the *_HR.png files in HR/<Camera>/ and the *_LR4.png files in LR_x4/<Camera>/ "
        "(names are matched without the _HR / _LR4 tags; each LR must be 1/4 of its HR's size)",
        aliases=("realsr-v3",),
        lr_kind="camera",
    ),
    TestSet(
        "drealsr",
        "DRealSR (Wei et al., ECCV 2020): x4 test pairs from five DSLR cameras (93; not verified here)",
        93,
        (4,),
        "no licence file in the project repository (research use; check the authors' terms); unverified",
        "https://github.com/xiezw5/Component-Divide-and-Conquer-for-Real-World-Image-Super-Resolution",
        manual="download DRealSR from the links at https://github.com/xiezw5/Component-Divide-and-Conquer-for-"
        "Real-World-Image-Super-Resolution (your own copy); from its x4 test set put the HR (*_x1.png) in HR/ and "
        "the LR (*_x4.png) in LR_x4/ (names are matched without the _x1 / _x4 tags)",
        lr_kind="camera",
    ),
    TestSet(
        "ffhq",
        "FFHQ (Karras et al., 2019): the SR3 paper's face training set",
        70000,
        (),
        "CC BY-NC-SA 4.0 (the dataset; each image keeps its own licence)",
        "https://github.com/NVlabs/ffhq-dataset",
        manual="download FFHQ's 1024x1024 images with NVlabs/ffhq-dataset's download script (your own copy)",
    ),
):
    register_set(_ts)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`evalsuite data list|fetch NAME|path NAME`."""
    p = sub.add_parser("data", help="list, fetch or locate the standard SR test sets (Set5, DIV2K, ...)")
    p.add_argument("action", nargs="?", default="list", choices=["list", "fetch", "path"])
    p.add_argument("name", nargs="?", help="set name (data list shows them)")
    p.add_argument("--archive", help="fetch: unpack this archive you downloaded yourself as the set's HR images")
    p.set_defaults(func=_cmd_data)


def _cmd_data(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"data folder: {data_root()}  (set {DATA_ENV} to move it)")
        for r in status_table():
            print(f"{r['name']:<11} {r['status']:<26} {r['images']:>6} images  LR {r['lr_scales']:<10} {r['path']}")
            print(f"{'':<11} {r['title']}; source: {r['source']}; licence: {r['licence']}")
        return 0
    if not args.name:
        print(
            f"error: `evalsuite data {args.action}` needs a set name; known: {', '.join(all_sets())}", file=sys.stderr
        )
        return 2
    try:
        ts = get_set(args.name)
        if args.action == "path":
            print(hr_dir(ts))
            for s in ts.lr_scales:
                print(lr_dir(ts, s))
            return 0
        print(fetch(ts.name, Path(args.archive) if args.archive else None))
    except (KeyError, MissingDataError, ValueError, OSError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1
    return 0
