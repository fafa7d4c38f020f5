"""The regression baseline: the SR3 U-Net trained with MSE on LR -> HR, one forward pass (SR3 §4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.checkpoint import load_checkpoint
from baselines.tiling import pad_to_multiple, tiled_apply
from baselines.train import Batch, StepOutput, TrainConfig, config_from_options
from baselines.unet import UNet, UNetConfig, training_preset, unet_config_from_dict
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


@dataclass(frozen=True)
class RegressionOptions:
    """`evalsuite train regression --preset P --set KEY=VALUE` options."""

    preset: str = "small"
    dropout: float = -1.0


class RegressionRecipe:
    """One module `net`; Adam at 1e-5 (the paper); MSE on [-1,1] images."""

    kind = "regression"
    export = "net"
    metrics = ("loss",)

    def __init__(self, config: RegressionConfig):
        """Keep the config."""
        self.config = config

    def build_modules(self) -> dict[str, nn.Module]:
        """The regression U-Net."""
        return {"net": RegressionNet(self.config)}

    def build_optimizers(self, modules: dict[str, nn.Module], lr: float | None) -> dict[str, torch.optim.Optimizer]:
        """Adam, lr 1e-5 unless given."""
        return {"net": torch.optim.Adam(modules["net"].parameters(), lr=lr or 1e-5)}

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int) -> StepOutput:
        """MSE between f(upsample(x_lr)) and the HR crop, both in [-1,1]."""
        x_up = upsample(batch.lr, batch.scale) * 2 - 1
        loss = F.mse_loss(models["net"](x_up).float(), batch.hr * 2 - 1)
        return StepOutput(losses={"net": loss}, metrics={"loss": loss.detach()})

    def checkpoint_extra(self) -> dict[str, Any]:
        """Nothing beyond the config."""
        return {}


def make_recipe(cfg: TrainConfig, options: dict[str, Any]) -> RegressionRecipe:
    """Build the regression recipe from the run config and `--preset/--set` options."""
    o = config_from_options(RegressionOptions, options, "regression")
    unet = training_preset(o.preset, cfg.crop, o.dropout)
    return RegressionRecipe(RegressionConfig(unet=unet, scale=cfg.scale, blur_aug=cfg.blur_aug))


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
        return tiled_apply(self._forward, x_lr, self.scale, self.tile, max(1, self.tile // 8))


def load_regression(path: str, device: torch.device | str = "cpu") -> RegressionNet:
    """Load a regression checkpoint (eval mode, on `device`)."""
    ck = load_checkpoint(path, kind="regression")
    d = dict(ck.config)
    model = RegressionNet(RegressionConfig(unet=unet_config_from_dict(d.pop("unet")), **d))
    model.load_state_dict(ck.state_dict)
    return model.to(device).eval().requires_grad_(False)


def build_regression(arg: str, ctx: MethodContext) -> RegressionMethod:
    """`regression:CKPT` factory; option `tile` sets the LR tile size (default: the training LR size)."""
    model = load_regression(arg, ctx.device)
    cfg = model.cfg
    tile = int(ctx.option("tile", cfg.unet.image_size // cfg.scale))
    bf16 = ctx.device.type == "cuda" and ctx.option("precision", "bf16") == "bf16"
    return RegressionMethod(
        f"regression:{arg}",
        cfg.scale,
        model,
        tile,
        ctx.device,
        bf16,
        {"checkpoint": arg, "tile": tile, "bf16": bf16},
    )
