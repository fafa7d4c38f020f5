"""Interpolation baselines: nearest, bilinear, bicubic, lanczos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evalsuite.degrade import upsample
from evalsuite.methods import MethodContext


def _lanczos(x_lr: torch.Tensor, scale: int) -> torch.Tensor:
    # PIL's Lanczos-3 on float32 channels (mode "F"): no 8-bit rounding before the metrics' own.
    out = []
    for img in x_lr.detach().float().cpu().numpy():
        h, w = img.shape[-2:]
        chans = [np.asarray(Image.fromarray(c, mode="F").resize((w * scale, h * scale), Image.LANCZOS)) for c in img]
        out.append(np.stack(chans))
    return torch.from_numpy(np.stack(out)).to(x_lr.device).clamp(0.0, 1.0)


@dataclass
class Interpolation:
    """Upsample the LR image with a fixed interpolation kernel."""

    name: str
    scale: int

    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """(B,3,h,w) -> (B,3,h*s,w*s)."""
        if self.name == "bicubic":
            return upsample(x_lr, self.scale)
        if self.name == "lanczos":
            return _lanczos(x_lr, self.scale)
        h, w = x_lr.shape[-2:]
        size = (h * self.scale, w * self.scale)
        if self.name == "nearest":
            return F.interpolate(x_lr.float(), size=size, mode="nearest-exact")
        return F.interpolate(x_lr.float(), size=size, mode="bilinear", align_corners=False)


def build(name: str, ctx: MethodContext) -> Interpolation:
    """Factory for the registry."""
    return Interpolation(name, ctx.scale)
