"""Random HR crops from image folders of any size, addressed by a global sample index.

Sample i is a pure function of (seed, i): which image (a fresh permutation per epoch), where the crop
lies and whether it is flipped. So the data position of a run is one integer (samples consumed), resume
is exact, and under DDP rank r simply takes its own slice of each global batch (in `accum` micro-batches
when gradients are accumulated). Also here: CDM's blur augmentation of the LR input.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evalsuite.datasets import BadImageError, load_rgb, resolve_data, scan_folder, stored_size
from evalsuite.methods import image_seed


def read_labels(data: str | Path, labels: str) -> dict[Path, str]:
    """Class name per image file under `data`: `folders` (the first folder under `data`) or a CSV
    image_id,label (image_id: the relative path without extension, '/' -> '__', or the file stem)."""
    folder = resolve_data(data)
    refs = scan_folder(folder)
    if labels == "folders":
        out = {r.path: r.path.relative_to(folder).parts[0] for r in refs if len(r.path.relative_to(folder).parts) > 1}
        if not out:
            raise ValueError(f"--labels folders: no image of {folder} is inside a class folder (DIR/<class>/<image>)")
        return out
    table_path = Path(labels)
    if not table_path.is_file():
        raise FileNotFoundError(f"--labels {labels}: not a CSV file (image_id,label) nor 'folders'")
    with table_path.open(newline="") as f:
        table = {row[0].strip(): row[1].strip() for row in csv.reader(f) if len(row) >= 2}
    out = {}
    for r in refs:
        name = table.get(r.image_id, table.get(r.path.stem))
        if name is not None:
            out[r.path] = name
    if not out:
        raise ValueError(f"--labels {labels}: no row names an image of {folder} (first column: image id or file stem)")
    return out


class CropDataset(torch.utils.data.Dataset):
    """HR crops of `crop` px; `dataset[i]` is sample i of an infinite stream, a (3,crop,crop) uint8 tensor
    (with `labels`: the pair (crop, class index); images without a label are left out)."""

    def __init__(
        self,
        data: str | Path,
        crop: int,
        seed: int = 0,
        flip: bool = True,
        cache: int = 256,
        labels: dict[Path, str] | None = None,
    ):
        """Scan `data` (recursive; headers only) and keep the images that are at least `crop` px on each side."""
        folder = self.folder = resolve_data(data)
        self.crop, self.seed, self.flip = int(crop), int(seed), flip
        self.labels = labels
        self.classes = tuple(sorted(set(labels.values()))) if labels else ()
        self.paths: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        for ref in scan_folder(folder):
            try:
                w, h = stored_size(ref.path)
            except BadImageError as exc:
                self.skipped.append((ref.path, str(exc)))
                continue
            if min(w, h) < self.crop:
                self.skipped.append((ref.path, f"{w}x{h} is smaller than the {self.crop}px training crop"))
                continue
            if labels is not None and ref.path not in labels:
                self.skipped.append((ref.path, "no class label"))
                continue
            self.paths.append(ref.path)
        if not self.paths:
            reasons = "; ".join(f"{p.name}: {r}" for p, r in self.skipped[:5])
            raise ValueError(
                f"no usable training images in {folder} (need RGB images of at least {self.crop}px a side)"
                + (f"; skipped: {reasons}" if reasons else "")
            )
        for p, r in self.skipped:
            warnings.warn(f"training data: skipped {p}: {r}", stacklevel=2)
        self._load = lru_cache(maxsize=cache)(self._decode)

    def _decode(self, k: int) -> torch.Tensor:
        """(3,H,W) uint8 of image k, decoded on first use and kept in a small LRU cache.

        The scan read headers only, so a file whose data is corrupt is found here: it is reported once and
        replaced by the next image in the list that decodes (a pure function of the files, so every rank,
        worker and resumed run makes the same replacement).
        """
        n = len(self.paths)
        for j in range(n):
            path = self.paths[(k + j) % n]
            try:
                img = load_rgb(path)
            except BadImageError as exc:
                if path not in {p for p, _ in self.skipped}:
                    self.skipped.append((path, str(exc)))
                    warnings.warn(f"training data: cannot decode {path} ({exc}); using the next image", stacklevel=2)
                continue
            if min(img.size) < self.crop:
                continue
            return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        raise ValueError(f"no training image in {self.folder} decodes: check the files listed above")

    def __len__(self) -> int:
        """Images per epoch (the stream itself is infinite)."""
        return len(self.paths)

    def image_index(self, i: int) -> int:
        """Which image sample i crops: position i mod n of epoch i // n's permutation."""
        n = len(self.paths)
        g = torch.Generator().manual_seed(image_seed(self.seed, f"epoch:{i // n}"))
        return int(torch.randperm(n, generator=g)[i % n])

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        """Sample i: a (3,crop,crop) uint8 crop, randomly placed and (optionally) flipped (and its class)."""
        k = self.image_index(i)
        if self.labels is not None:
            return self._crop(i, k), self.classes.index(self.labels[self.paths[k]])
        return self._crop(i, k)

    def _crop(self, i: int, k: int) -> torch.Tensor:
        img = self._load(k)
        g = torch.Generator().manual_seed(image_seed(self.seed, f"crop:{i}"))
        _, h, w = img.shape
        top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
        left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
        out = img[:, top : top + self.crop, left : left + self.crop]
        if self.flip and bool(torch.randint(0, 2, (1,), generator=g)):
            out = out.flip(-1)
        return out.contiguous()


class BatchIndices(torch.utils.data.Sampler):
    """This rank's micro-batches of each global batch, from a start position, for `steps` optimizer steps."""

    def __init__(self, start: int, global_batch: int, steps: int, rank: int = 0, world: int = 1, accum: int = 1):
        """Step b, micro-step j covers samples start + b*global_batch + rank*local + j*micro + [0, micro)."""
        if global_batch % (world * accum):
            raise ValueError(
                f"batch size {global_batch} is not divisible by the {world} processes x {accum} accumulation "
                "micro-steps; choose --batch-size as a multiple of their product"
            )
        self.start, self.global_batch, self.steps, self.rank = start, global_batch, steps, rank
        self.local = global_batch // world
        self.micro, self.accum = self.local // accum, accum

    def __iter__(self) -> Iterator[list[int]]:
        """Lists of sample indices, `accum` per step: the rank's slice of the global batch, in order."""
        for b in range(self.steps):
            for j in range(self.accum):
                base = self.start + b * self.global_batch + self.rank * self.local + j * self.micro
                yield list(range(base, base + self.micro))

    def __len__(self) -> int:
        """Number of micro-batches."""
        return self.steps * self.accum


def crop_loader(
    dataset: CropDataset,
    start: int,
    global_batch: int,
    steps: int,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
    accum: int = 1,
) -> torch.utils.data.DataLoader:
    """A DataLoader of uint8 HR crop micro-batches (B_micro,3,crop,crop), `accum` per step, from sample `start`."""
    sampler = BatchIndices(start, global_batch, steps, rank, world, accum)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        # Its own generator: iterating must not draw from the global RNG, which resume restores exactly.
        generator=torch.Generator().manual_seed(0),
    )


def gaussian_blur_aug(x_lr: torch.Tensor, p: float = 0.5, sigma: tuple[float, float] = (0.4, 0.6)) -> torch.Tensor:
    """CDM conditioning augmentation: 3x3 Gaussian blur, sigma ~ U(sigma), on a fraction p of examples."""
    b = x_lr.shape[0]
    # Which examples are blurred, and each one's sigma (global RNG, so resume reproduces it).
    use = torch.rand(b, device=x_lr.device) < p
    s = torch.empty(b, device=x_lr.device).uniform_(*sigma)
    # Per-example separable 3-tap kernel [e, 1, e] / (1 + 2e), e = exp(-1 / (2 sigma^2)).
    e = torch.exp(-0.5 / s**2)
    k1 = torch.stack([e, torch.ones_like(e), e], dim=1) / (1 + 2 * e)[:, None]  # (B,3)
    k2 = k1[:, :, None] * k1[:, None, :]  # (B,3,3)
    c = x_lr.shape[1]
    weight = k2[:, None].repeat_interleave(c, dim=0).to(x_lr.dtype)  # (B*C,1,3,3)
    padded = F.pad(x_lr.reshape(1, b * c, *x_lr.shape[-2:]), (1, 1, 1, 1), mode="reflect")
    blurred = F.conv2d(padded, weight, groups=b * c).reshape_as(x_lr)
    return torch.where(use[:, None, None, None], blurred, x_lr)
