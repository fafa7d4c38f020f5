"""Preparing a run's images once: validated HR (hr/<id>.png) and THE degradation's LR (lr/<id>.png), cached.

A rerun decodes nothing whose source file is unchanged; a changed source remakes its images and drops the
outputs made from its old LR; another task or data folder in the same run folder starts afresh.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalsuite.datasets import Prepared, iter_prepared, scan_folder
from evalsuite.degrade import degrade, quantize, to_image, to_tensor
from evalsuite.io import atomic_write_text, save_png
from evalsuite.spec import stable_hash
from evalsuite.tasks import Task
from evalsuite.weights import sha256_file


class NoUsableImagesError(RuntimeError):
    """No input image could be used; errors.csv says why for each file."""


class PreparedImages:
    """The prepared images of a run: hr/<id>.png and lr/<id>.png, cached across reruns."""

    def __init__(self, run_dir: Path, task: Task, data_dir: Path) -> None:
        self.run_dir, self.task, self.data_dir = run_dir, task, data_dir
        self.hr_dir, self.lr_dir = run_dir / "hr", run_dir / "lr"
        self.index_path = run_dir / ".cache" / "sources.json"
        self.key = stable_hash({"data": str(data_dir.resolve()), "task": asdict(task), "v": 1})

    def load_index(self, log=print) -> dict[str, Any]:
        """The cached index of prepared images, or a fresh one (and a cleared folder) when the key changed."""
        if self.index_path.exists():
            idx = json.loads(self.index_path.read_text())
            if idx.get("key") == self.key:
                return idx
            log(f"note: {self.run_dir} held a run of other data or another task; its images are remade")
            for sub in ("hr", "lr", "outputs", ".cache"):
                shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        return {"key": self.key, "images": {}}

    def prepare(self, limit: int | None, workers: int, log=print) -> tuple[list[str], list[dict[str, str]], dict]:
        """Prepare (or reuse) every usable image; return ids, skipped files and the index."""
        index = self.load_index(log)
        refs = scan_folder(self.data_dir)
        # Entries of files no longer in the data folder are dropped.
        old_images = index["images"]
        images: dict[str, Any] = {r.image_id: old_images[r.image_id] for r in refs if r.image_id in old_images}
        index["images"] = images
        if not refs:
            raise NoUsableImagesError(
                f"no image files (png, jpg, jpeg, webp, bmp, tif, tiff) under {self.data_dir}; "
                "pass --data with a folder of HR images"
            )
        ids: list[str] = []
        errors: list[dict[str, str]] = []
        todo = []
        for ref in refs:
            st = ref.path.stat()
            fp = [st.st_size, st.st_mtime_ns]
            rec = images.get(ref.image_id)
            cached = (
                rec is not None
                and rec["fingerprint"] == fp
                and (self.hr_dir / f"{ref.image_id}.png").exists()
                and (self.lr_dir / f"{ref.image_id}.png").exists()
            )
            todo.append((ref, fp, cached))
        # Cached images need no decode; the rest are prepared in worker threads, in id order.
        fresh = [ref for ref, _, cached in todo if not cached]
        fresh_iter = iter_prepared(fresh, self.task, None, workers)
        results: dict[str, Prepared | str] = {}
        usable = 0
        for ref, fp, cached in todo:
            if limit is not None and usable >= limit:
                break
            if cached:
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
            if isinstance(r, str):
                errors.append({"path": str(ref.path), "reason": r})
                images.pop(ref.image_id, None)
                continue
            old = images.get(ref.image_id)
            try:
                hr = to_tensor(r.hr)[None]  # (1,3,H,W)
                # LR = the one degradation, saved as 8-bit PNG: exactly what every method sees.
                lr = quantize(degrade(hr, self.task.scale))
                save_png(r.hr, self.hr_dir / f"{ref.image_id}.png")
                save_png(to_image(lr[0]), self.lr_dir / f"{ref.image_id}.png")
                sha = sha256_file(ref.path)
            except Exception as exc:  # one image that cannot be prepared is skipped and listed, never fatal
                errors.append({"path": str(ref.path), "reason": f"could not prepare: {type(exc).__name__}: {exc}"})
                images.pop(ref.image_id, None)
                continue
            if old is not None and old.get("sha256") != sha:
                # The source changed: outputs made from its old LR are stale.
                for d in (self.run_dir / "outputs").glob("*"):
                    (d / f"{ref.image_id}.png").unlink(missing_ok=True)
            images[ref.image_id] = {
                "path": str(ref.path),
                "fingerprint": fp,
                "sha256": sha,
                "size": list(r.hr.size),
            }
            ids.append(ref.image_id)
            usable += 1
        fresh_iter.close()
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.index_path, json.dumps(index, indent=1))
        return ids, errors, index
