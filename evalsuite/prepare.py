"""Preparing a run's images once: validated HR (hr/<id>.png) and the LR every method sees (lr/<id>.png), cached.

Unpaired data: the LR is THE degradation of the HR. Paired data (`lr_dir`): the LR is the given image and the
HR is cropped to scale x LR from the top-left corner (BasicSR's convention). A rerun decodes nothing whose
source files are unchanged; a changed source remakes its images and drops the outputs made from its old LR;
another task, data folder or LR folder in the same run folder starts afresh.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalsuite.datasets import ImageFileRef, Prepared, iter_prepared, scan_images, scan_pairs
from evalsuite.degrade import to_image, to_tensor
from evalsuite.io import atomic_write_text, save_png
from evalsuite.realesrgan_degrade import make_lr
from evalsuite.spec import stable_hash
from evalsuite.tasks import Task
from evalsuite.weights import sha256_file

# What the summary notes and the report say when `PreparedImages.paired` (index["paired"]) is True.
PAIRED_CONSISTENCY_NOTE = (
    "paired data: LR images were given (--lr), not made by our degradation; consistency compares "
    "degrade(SR) with them, so even a perfect method scores above 0"
)


class NoUsableImagesError(RuntimeError):
    """No input image could be used; errors.csv says why for each file."""


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class PreparedImages:
    """The prepared images of a run: hr/<id>.png and lr/<id>.png, cached across reruns.

    `paired` is True when the LR images were given (`lr_dir`), not made by our degradation: the consistency
    metric then compares degrade(SR) with an LR our degradation did not make.
    """

    def __init__(
        self, run_dir: Path, task: Task, data_dir: Path, lr_dir: Path | None = None, degradation: str = "bicubic"
    ) -> None:
        self.run_dir, self.task, self.data_dir, self.degradation = run_dir, task, data_dir, degradation
        self.lr_source = Path(lr_dir) if lr_dir is not None else None
        self.paired = self.lr_source is not None
        self.hr_dir, self.lr_dir = run_dir / "hr", run_dir / "lr"
        self.index_path = run_dir / ".cache" / "sources.json"
        key: dict[str, Any] = {"data": str(data_dir.resolve()), "task": asdict(task), "v": 1}
        if self.lr_source is not None:
            key["lr"] = str(self.lr_source.resolve())
        if degradation != "bicubic":
            key["degradation"] = degradation  # switching it remakes every LR (bicubic keeps older caches valid)
        self.key = stable_hash(key)

    def load_index(self, log=print) -> dict[str, Any]:
        """The cached index of prepared images, or a fresh one (and a cleared folder) when the key changed."""
        if self.index_path.exists():
            idx = json.loads(self.index_path.read_text())
            if idx.get("key") == self.key:
                idx["paired"] = self.paired
                return idx
            log(f"note: {self.run_dir} held a run of other data or another task; its images are remade")
            for sub in ("hr", "lr", "outputs", ".cache"):
                shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        return {"key": self.key, "paired": self.paired, "images": {}}

    def _sources(self) -> tuple[list[ImageFileRef], dict[str, Path] | None, list[dict[str, str]]]:
        """The HR refs, the LR file of each id (paired data) and the files that cannot be used."""
        if self.lr_source is None:
            scan = scan_images(self.data_dir)
            return scan.refs, None, [{"path": str(p), "reason": r} for p, r in scan.problems]
        pairs = scan_pairs(self.data_dir, self.lr_source)
        lr_paths = {ref.image_id: lr for ref, lr in pairs.pairs}
        return [ref for ref, _ in pairs.pairs], lr_paths, [{"path": str(p), "reason": r} for p, r in pairs.problems]

    def _plan(self, refs: list, lr_paths: dict, images: dict[str, Any], errors: list[dict[str, str]]) -> list:
        """(ref, fingerprint, cached) per readable source; unreadable ones become error rows."""
        todo = []
        for ref in refs:
            try:
                fp = _fingerprint(ref.path) + (_fingerprint(lr_paths[ref.image_id]) if lr_paths else [])
            except OSError as exc:
                errors.append({"path": str(ref.path), "reason": f"cannot read file: {exc.strerror}"})
                continue
            rec = images.get(ref.image_id)
            cached = (
                rec is not None
                and rec["fingerprint"] == fp
                and (self.hr_dir / f"{ref.image_id}.png").exists()
                and (self.lr_dir / f"{ref.image_id}.png").exists()
            )
            todo.append((ref, fp, cached))
        return todo

    def _store(self, ref: Any, r: Prepared, fp: list, images: dict[str, Any]) -> str:
        """Save one decoded image's HR and LR PNGs and its index record; the reason it failed, or ''."""
        try:
            sha = sha256_file(ref.path)
            if r.lr_path is not None:
                sha = stable_hash([sha, sha256_file(r.lr_path)])
        except OSError as exc:  # a source that vanished or became unreadable since it was decoded
            return f"cannot read file: {exc}"
        old = images.get(ref.image_id)
        try:
            if r.lr is not None:
                # Paired data: the given LR, as decoded (8-bit sRGB), is what every method sees.
                lr_image = r.lr
            else:
                # LR = the run's degradation (the protocol's bicubic unless --degradation), saved as 8-bit PNG:
                # exactly what every method sees.
                hr = to_tensor(r.hr)[None]  # (1,3,H,W)
                lr_image = to_image(make_lr(hr, self.task.scale, self.degradation, ref.image_id)[0])
            save_png(r.hr, self.hr_dir / f"{ref.image_id}.png")
            save_png(lr_image, self.lr_dir / f"{ref.image_id}.png")
        except Exception as exc:  # one image that cannot be prepared is skipped and listed, never fatal
            return f"could not prepare: {type(exc).__name__}: {exc}"
        if old is not None and old.get("sha256") != sha:
            # The source changed: outputs made from its old LR are stale.
            for d in (self.run_dir / "outputs").glob("*"):
                (d / f"{ref.image_id}.png").unlink(missing_ok=True)
        images[ref.image_id] = {"path": str(ref.path), "fingerprint": fp, "sha256": sha, "size": list(r.hr.size)}
        if r.lr_path is not None:
            images[ref.image_id]["lr_path"] = str(r.lr_path)
        return ""

    def prepare(
        self,
        limit: int | None,
        workers: int,
        log=print,
        *,
        min_hr_size: int = 1,
        min_hr_why: str = "",
        max_pixels: int | None = None,
    ) -> tuple[list[str], list[dict[str, str]], dict]:
        """Prepare (or reuse) every usable image; return (ids, errors, index).

        ids: usable image ids in order; errors: {"path", "reason"} rows for errors.csv (unreadable or
        too-small files, unmatched pairs, clashing ids, ...); index: the cache index ("paired", and per id
        "path", "size" [w, h] of the HR, "sha256", and for pairs "lr_path"). `min_hr_size` is the smallest
        HR side the metrics accept (checked from headers before decoding, and on cached images);
        `min_hr_why` says which metric needs it; `max_pixels` overrides the decompression-bomb limit.
        """
        index = self.load_index(log)
        refs, lr_paths, errors = self._sources()
        # Entries of files no longer in the data folder are dropped.
        old_images = index["images"]
        images: dict[str, Any] = {r.image_id: old_images[r.image_id] for r in refs if r.image_id in old_images}
        index["images"] = images
        if not refs and not errors:
            where = f"{self.data_dir} (with LR images under {self.lr_source})" if self.paired else str(self.data_dir)
            raise NoUsableImagesError(
                f"no image files (png, jpg, jpeg, webp, bmp, tif, tiff, gif) under {where}; "
                "pass --data with a folder of HR images"
            )
        ids: list[str] = []
        todo = self._plan(refs, lr_paths, images, errors)
        # Cached images need no decode; the rest are prepared in worker threads, in id order.
        fresh = [ref for ref, _, cached in todo if not cached]
        fresh_iter = iter_prepared(
            fresh,
            self.task,
            None,
            workers,
            lr_paths=lr_paths,
            min_hr_size=min_hr_size,
            min_hr_why=min_hr_why,
            max_pixels=max_pixels,
        )
        results: dict[str, Prepared | str] = {}
        usable = 0
        for ref, fp, cached in todo:
            if limit is not None and usable >= limit:
                break
            if cached:
                # A cached image is still checked against this run's minimum size.
                w, h = images[ref.image_id]["size"]
                if min(w, h) < min_hr_size:
                    because = f" ({min_hr_why})" if min_hr_why else " (the smallest size the chosen metrics accept)"
                    reason = f"too small: the prepared HR is {w}x{h}; at least {min_hr_size} px per side needed"
                    errors.append({"path": str(ref.path), "reason": reason + because})
                else:
                    ids.append(ref.image_id)
                    usable += 1
                continue
            # Fetch results of the fresh iterator until this ref's result is known.
            while ref.image_id not in results:
                r = next(fresh_iter)
                if isinstance(r, Prepared):
                    results[r.image_id] = r
                else:
                    results[r[0].image_id] = r[1]
            r = results.pop(ref.image_id)
            why = r if isinstance(r, str) else self._store(ref, r, fp, images)
            if why:
                errors.append({"path": str(ref.path), "reason": why})
                images.pop(ref.image_id, None)
                continue
            ids.append(ref.image_id)
            usable += 1
        fresh_iter.close()
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.index_path, json.dumps(index, indent=1))
        return ids, errors, index
