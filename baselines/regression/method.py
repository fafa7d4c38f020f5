"""The regression baseline: the SR3 U-Net trained with MSE on LR -> HR, one forward pass (SR3 §4)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from baselines.checkpoint import load_checkpoint
from baselines.options import RegressionMethodOptions
from baselines.tiling import default_overlap, pad_to_multiple, tiled_apply
from baselines.unet import UNet, UNetConfig, unet_config_from_dict
from evalsuite.degrade import upsample
from evalsuite.methods import MethodContext


@dataclass(frozen=True)
class RegressionConfig:
    """Rebuilds a regression model: the U-Net (3 input channels) and the scale."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    scale: int = 4
    blur_aug: bool = False  # trained with the loop's `--blur-aug` (CDM conditioning augmentation; training only)


class RegressionNet(nn.Module):
    """y0 = f(upsample(x_lr)) in [-1,1]; the noise embedding input is a constant 0."""

    def __init__(self, cfg: RegressionConfig):
        """Build the U-Net with 3 input channels."""
        super().__init__()
        self.cfg = cfg
        self.net = UNet(replace(cfg.unet, in_channels=3, out_channels=3))

    def forward(self, x_up: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [-1,1] -> (B,3,H,W) prediction of y0 in [-1,1]."""
        c = torch.zeros(x_up.shape[0], device=x_up.device)
        return self.net(x_up, c)


@dataclass
class RegressionMethod:
    """The regression model as a harness method (one forward pass, bf16 on CUDA, tiles for large images)."""

    name: str
    scale: int
    model: RegressionNet
    tile: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def _forward(self, x_lr: torch.Tensor) -> torch.Tensor:
        x_lr, ph, pw = pad_to_multiple(x_lr, self.scale, self.model.cfg.unet.multiple)
        x_up = upsample(x_lr, self.scale) * 2 - 1
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            y0 = self.model(x_up).float()
        out = ((y0 + 1) / 2).clamp(0, 1)
        h, w = out.shape[-2:]
        return out[:, :, : h - ph * self.scale, : w - pw * self.scale]

    @torch.no_grad()
    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """(B,3,h,w) -> (B,3,h*s,w*s)."""
        x_lr = x_lr.to(self.device).float()
        if not self.tile:
            return self._forward(x_lr)
        # tiled_apply runs images no larger than a tile whole.
        return tiled_apply(self._forward, x_lr, self.scale, self.tile, default_overlap(self.tile))


def load_regression(path: str, device: torch.device | str = "cpu") -> RegressionNet:
    """Load a regression checkpoint (eval mode, on `device`)."""
    ck = load_checkpoint(path, kind="regression")
    d = dict(ck.config)
    model = RegressionNet(RegressionConfig(unet=unet_config_from_dict(d.pop("unet")), **d))
    model.load_state_dict(ck.state_dict)
    return model.to(device).eval().requires_grad_(False)


def build_regression(arg: str, ctx: MethodContext) -> RegressionMethod:
    """`regression:CKPT` factory; option `tile` sets the LR tile size (default: the training LR size)."""
    o = ctx.options_of(RegressionMethodOptions)
    model = load_regression(arg, ctx.device)
    cfg = model.cfg
    trained = cfg.unet.image_size // cfg.scale  # the LR size of the training crops
    tile = int(trained if o.tile is None else o.tile)
    if tile == 0 or tile > trained:
        # Measured on regression-demo (12 held-out photos, 32 px LR): consistency 2.7 at tile 8, 20 at 16, 51 whole.
        warnings.warn(
            f"regression:{arg} was trained on {trained} px LR crops and runs with "
            f"{'no tiles' if tile == 0 else f'{tile} px LR tiles'}: its GroupNorm statistics change with the input "
            "size, and outputs at larger sizes can be far off (the demo model's consistency is 7x worse at twice "
            "its size). Leave the `tile` option unset to run at the training size.",
            stacklevel=2,
        )
    bf16 = ctx.device.type == "cuda" and o.precision == "bf16"
    return RegressionMethod(
        f"regression:{arg}",
        cfg.scale,
        model,
        tile,
        ctx.device,
        bf16,
        {"checkpoint": arg, "tile": tile, "bf16": bf16},
    )
