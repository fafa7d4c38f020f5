"""THE degradation of the SR3 protocol, used everywhere: anti-aliased bicubic downsampling.

Datasets make LR inputs with it, the consistency metric re-applies it to SR outputs, and training makes
its LR crops with it, so evaluation never degrades differently from training.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalsuite.tasks import Task


def _down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The protocol's kernel, unclamped: bicubic with anti-aliasing (the kernel widened by the scale), as PIL
    and TF's resize do."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)


def _up(x_lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by an integer factor, unclamped."""
    h, w = x_lr.shape[-2:]
    return F.interpolate(x_lr, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Anti-aliased bicubic downsampling by an integer factor: (B,3,H,W) in [0,1] -> (B,3,H/s,W/s)."""
    if hr.ndim != 4:
        raise ValueError(f"degrade expects a (B,C,H,W) batch, got shape {tuple(hr.shape)}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not a multiple of the scale {scale}")
    x = hr if hr.dtype in (torch.float32, torch.float64) else hr.float()
    return _down(x, scale).clamp(0.0, 1.0)


def upsample(x_lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by an integer factor (the SR3 conditioning input and the bicubic baseline)."""
    return _up(x_lr.float(), scale).clamp(0.0, 1.0)


def backproject(x_lr: torch.Tensor, scale: int, iters: int) -> torch.Tensor:
    """The bicubic upsampling of x_lr corrected by iterative back-projection (Irani & Peleg 1991), unclamped.

    Each iteration adds the upsampled LR error: x ← x + up(x_lr − down(x)), with `degrade`'s and `upsample`'s
    kernels but no clamping (so the map stays linear), until down(x) = x_lr up to a residual that shrinks
    every iteration. iters = 0 is `upsample` without its clamp. Used as the base of SR3's residual target.
    """
    x_lr = x_lr.float()
    # Start from the bicubic upsampling (the paper's conditioning input).
    x = _up(x_lr, scale)
    for _ in range(iters):
        # The LR error of the current estimate under the protocol's degradation, upsampled and added back.
        x = x + _up(x_lr - _down(x, scale), scale)
    return x


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round a [0,1] tensor to 8-bit levels, as when it is saved to PNG."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def central_crop_box(width: int, height: int, aspect: float = 1.0) -> tuple[int, int, int, int]:
    """The largest central crop of the given aspect ratio (width / height), as a PIL box."""
    if width / height > aspect:
        cw, ch = round(height * aspect), height
    else:
        cw, ch = width, round(width / aspect)
    left, top = (width - cw) // 2, (height - ch) // 2
    return left, top, left + cw, top + ch


class TooSmallError(ValueError):
    """An HR image is smaller than the task needs."""


def prepare_hr(image: Image.Image, task: Task) -> Image.Image:
    """Prepare an RGB HR image for a task.

    Fixed-size tasks (the paper's ImageNet rule): drop images whose shorter side is below the target,
    take the largest central square crop, then resize to the target with area (box) resampling.
    Custom scales: keep the image, centrally cropped down to a multiple of the scale.
    """
    w, h = image.size
    if task.fixed_size:
        target = int(task.hr_size)
        if min(w, h) < target:
            raise TooSmallError(f"image is {w}x{h}; task {task.name} needs a shorter side of at least {target} px")
        # Largest central square crop.
        sq = image.crop(central_crop_box(w, h, 1.0))
        # Area resampling to the target size (exact box filter; a no-op when already at size).
        return sq if sq.size == (target, target) else sq.resize((target, target), Image.BOX)
    s = task.scale
    cw, ch = w - w % s, h - h % s
    if cw < s or ch < s:
        raise TooSmallError(f"image is {w}x{h}; scale {s} needs at least {s}x{s} px")
    if (cw, ch) == (w, h):
        return image
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (3,H,W) float32 tensor in [0,1]."""
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def to_image(x: torch.Tensor) -> Image.Image:
    """(3,H,W) tensor in [0,1] -> 8-bit RGB PIL image (rounded)."""
    arr = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")
