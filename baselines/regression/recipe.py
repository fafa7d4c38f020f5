"""The regression baseline's training recipe for the ONE loop (`baselines/train.py`): the SR3 U-Net, MSE.

Apart from `baselines/regression/method.py` (network and method), so that evaluation never imports the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.regression.method import RegressionConfig, RegressionNet
from baselines.train import Batch, StepOutput, TrainConfig, config_from_options
from baselines.unet import training_preset
from evalsuite.degrade import upsample


@dataclass(frozen=True)
class RegressionOptions:
    """`evalsuite train regression --preset P --set KEY=VALUE` options."""

    preset: str = "small"
    dropout: float = -1.0  # < 0: the preset's
    width: int = 0  # the U-Net's base channel count; 0: the preset's


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
    unet = training_preset(o.preset, cfg.crop, o.dropout, o.width)
    return RegressionRecipe(RegressionConfig(unet=unet, scale=cfg.scale, blur_aug=cfg.blur_aug))
