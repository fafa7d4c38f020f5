"""SR3 Table 3: ResNet-50 top-1/top-5 error on super-resolved 56x56 central crops.

Protocol, per HR image (as the 64x64 ImageNet image the paper starts from):
1. the largest central square, area-resized to 64x64 when larger (the paper's 64x64 input scale);
2. its 56x56 central crop, bicubic-resized to 64x64: the method's input x_lr;
3. the method's 4x output (256x256), rounded to 8 bits, resized to 224x224 (bicubic, anti-aliased);
4. torchvision's ResNet-50 (IMAGENET1K_V1) with ImageNet normalization -> top-5 classes.
The reference row classifies the same 56/64 central region of the HR image itself, resized to 224.
This metric drives the method on its own inputs (declared `drives_method=True`): the runner calls `evaluate`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalsuite import distributed as D
from evalsuite.bootstrap import bootstrap_ci
from evalsuite.degrade import quantize, to_tensor
from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, register
from evalsuite.metrics.weights import checked_weight

BASE = 64  # the paper's ImageNet image size before cropping
CROP = 56  # the central crop that is super-resolved
CLS_SIZE = 224  # ResNet-50's input size
SCALE = 4
BATCH = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def central_square(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,3,S,S), S = min(H,W), centered."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def central_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B,3,S,S) -> (B,3,size,size), centered."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic to size x size, anti-aliased when shrinking (as evalsuite.degrade), clamped to [0,1]."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = x.shape[-1] > size
    out = F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=shrink, align_corners=False)
    return out.clamp(0, 1)


def base_image(hr: torch.Tensor) -> torch.Tensor:
    """Step 1: the central square at the paper's 64x64 scale (area resampling when larger)."""
    sq = central_square(hr)
    if sq.shape[-1] > BASE:
        return F.interpolate(sq.float(), size=(BASE, BASE), mode="area")
    return resize(sq, BASE)


def lr_input(hr: torch.Tensor) -> torch.Tensor:
    """Steps 1-2: (B,3,H,W) HR -> (B,3,64,64) x_lr: 56x56 central crop bicubic-resized to 64, 8-bit."""
    return quantize(resize(central_crop(base_image(hr), CROP), BASE))


def hr_view(hr: torch.Tensor) -> torch.Tensor:
    """The reference row's input: the same 56/64 central region of the HR square, resized to 224."""
    sq = central_square(hr)
    side = round(sq.shape[-1] * CROP / BASE)
    return resize(central_crop(sq, side), CLS_SIZE)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalization of a (B,3,H,W) batch in [0,1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def load_labels(option: Any, ids: Sequence[str]) -> tuple[dict[str, int], str]:
    """Class indices by image id from a CSV (image_id,label) or 'folders' (ImageNet-style class folders)."""
    if option == "folders":
        # Ids of files in class folders are "<class>__<name>" (evalsuite.datasets.scan_folder).
        folders = {i: i.split("__")[0] for i in ids if "__" in i}
        missing = [i for i in ids if i not in folders]
        if missing:
            raise ValueError(f"labels=folders, but image {missing[0]!r} is not inside a class folder")
        names = sorted(set(folders.values()))
        if all(n.isdigit() for n in names):
            return {i: int(c) for i, c in folders.items()}, "class folders named by index"
        if len(names) == 1000:
            index = {n: k for k, n in enumerate(names)}  # ImageNet's sorted-wnid class order
            return {i: index[c] for i, c in folders.items()}, "class folders (sorted wnids)"
        raise ValueError(
            f"labels=folders: {len(names)} class folders named by wnid can only be mapped to ResNet-50's indices "
            "when all 1000 ImageNet classes are present; name the folders by class index (0-999) or pass a CSV"
        )
    path = Path(str(option)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist; pass a CSV with columns image_id,label")
    out: dict[str, int] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image_id", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the labels CSV needs a header with columns image_id,label")
        for row_no, row in enumerate(reader, start=2):
            try:
                out[row["image_id"]] = int(row["label"])
            except ValueError:
                raise ValueError(f"{path} line {row_no}: label {row['label']!r} is not a class index (0-999)") from None
    return out, f"labels from {path.name}"


@dataclass(frozen=True)
class ClassificationOptions:
    """`metric_options` of classification."""

    labels: str | None = None  # a CSV image_id,label or 'folders' (ImageNet-style class folders)


class Classification:
    """ResNet-50 top-1/top-5 error of a 4x method on SR3's 56->64->256->224 protocol, and of the HR images."""

    def __init__(self, ctx: MetricContext) -> None:
        import torchvision.models as tvm

        self.ctx = ctx
        self.weight = checked_weight("resnet50", "ResNet-50 classification error", ctx.options)
        self.nonstandard = self.weight.note  # the runner marks every stored value with it
        model = tvm.resnet50(weights=None)
        model.load_state_dict(torch.load(self.weight.path, map_location="cpu", weights_only=True))
        self.model = model.to(ctx.device).eval().requires_grad_(False)
        self.top5: dict[str, list[int]] = {}
        self.problem = ""

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> (B,5) top-5 class indices, best first."""
        with torch.no_grad():
            logits = self.model(normalize(resize(x, CLS_SIZE).to(self.ctx.device)))
        return logits.topk(5, dim=1).indices.cpu()

    def _batches(self, ids: Sequence[str], hr_dir: Path):
        """HR images of `ids` in batches, as (ids, list of (3,H,W) tensors)."""
        for k in range(0, len(ids), BATCH):
            chunk = list(ids[k : k + BATCH])
            images = []
            for i in chunk:
                with Image.open(hr_dir / f"{i}.png") as im:
                    images.append(to_tensor(im.convert("RGB")))
            yield chunk, images

    def evaluate(self, method: Any, ids: Sequence[str], hr_dir: Path) -> None:
        """Run the method on the protocol's 64x64 inputs of `ids` (this rank's share) and keep the top-5."""
        scale = getattr(method, "scale", None)
        if scale != SCALE:
            self.problem = f"the SR3 classification protocol needs a 4x method, this one is x{scale}"
            return
        for chunk, images in self._batches(ids, hr_dir):
            x_lr = torch.cat([lr_input(im[None]) for im in images]).to(self.ctx.device)  # (B,3,64,64)
            try:
                with torch.no_grad():
                    sr = method(x_lr, [f"{i}#cls" for i in chunk])  # (B,3,256,256)
            except Exception as exc:
                self.problem = f"method raised {type(exc).__name__}: {exc}"
                return
            preds = self.classify(quantize(sr.float()))
            self.top5.update({i: p.tolist() for i, p in zip(chunk, preds, strict=True)})

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor] | None:
        """Nothing: this metric drives the method itself through `evaluate`."""
        return None

    def errors(self, top5: dict[str, list[int]], problem: str = "") -> dict[str, MetricValue]:
        """Top-1/top-5 error of the gathered predictions against the labels, with bootstrap CIs.

        `problem` is this rank's reason not to score (any rank's reason voids the number on every rank).
        """
        merged = {i: p for part in D.gather_objects(top5) for i, p in part.items()}
        problem = next((p for p in D.gather_objects(problem) if p), "")
        option = self.ctx.options_of(ClassificationOptions).labels
        ids = sorted(merged)
        if not problem and option is None:
            problem = "no labels: set metric option labels to a CSV (image_id,label) or 'folders'"
        if not problem:
            try:
                labels, source = load_labels(option, ids)
            except (ValueError, FileNotFoundError) as exc:
                problem = str(exc)
        scored = [] if problem else [i for i in ids if i in labels]
        if not problem and not scored:
            problem = f"none of the {len(ids)} images has a label ({source})"
        if problem:
            return {"top1_error": MetricValue(None, note=problem), "top5_error": MetricValue(None)}
        top1 = np.array([merged[i][0] != labels[i] for i in scored], dtype=np.float64)
        top5 = np.array([labels[i] not in merged[i] for i in scored], dtype=np.float64)
        note = f"{len(scored)} labelled images of {len(ids)} ({source}); ResNet-50 {self.weight.path.name}"
        if self.weight.note:
            note += f"; {self.weight.note}"
        out = {}
        for col, v in (("top1_error", top1), ("top5_error", top5)):
            lo, hi = bootstrap_ci(v, 2000, self.ctx.seed)
            out[col] = MetricValue(float(v.mean()), lo, hi, note=note if col == "top1_error" else "")
        return out

    def compute(self) -> dict[str, MetricValue]:
        """Top-1/top-5 error of the method's predictions (gathered over ranks)."""
        return self.errors(self.top5, self.problem)

    def reference(self, ids: Sequence[str], hr_dir: Path) -> dict[str, MetricValue]:
        """The reference row: the same numbers for the HR images (sharded over ranks)."""
        mine = list(ids)[D.rank() :: D.world_size()]
        top5: dict[str, list[int]] = {}
        for chunk, images in self._batches(mine, hr_dir):
            preds = self.classify(torch.cat([hr_view(im[None]) for im in images]))
            top5.update({i: p.tolist() for i, p in zip(chunk, preds, strict=True)})
        return self.errors(top5)


register(
    MetricInfo(
        name="classification",
        factory=Classification,
        columns=(
            Column("top1_error", "Top-1 error", "Top-1 err.", "ResNet-50 top-1 error on the outputs", False),
            Column("top5_error", "Top-5 error", "Top-5 err.", "ResNet-50 top-5 error on the outputs", False),
        ),
        help="ResNet-50 top-1/top-5 error, SR3 Table 3 protocol (lower)",
        source="SR3 Table 3 protocol; torchvision ResNet-50 IMAGENET1K_V1",
        needs="resnet50-0676ba61.pth (resnet50) and image labels (metric option labels)",
        per_image=False,
        full_reference=False,
        drives_method=True,
        hr_row=True,
        options=ClassificationOptions,
        aliases=("top1_error", "top5_error", "top1", "top5"),
    )
)
