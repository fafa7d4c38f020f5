"""The SR3 training recipe for `baselines.train` (ε/y0/v prediction, L1/L2, per-example γ)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from baselines.sr3.loss import sr3_loss
from baselines.sr3.model import SR3Config, SR3Denoiser
from baselines.sr3.schedule import cosine, from_spec, linear
from baselines.train import Batch, StepOutput, TrainConfig, config_from_options
from baselines.unet import training_preset
from evalsuite.degrade import upsample


@dataclass(frozen=True)
class SR3Options:
    """`evalsuite train sr3 --preset P --set KEY=VALUE` options."""

    preset: str = "small"
    parameterization: str = "v"  # eps (the paper) | x0 | v | edm; v by measurement (docs/sr3.md)
    embedding: str = "logsnr"  # gamma (sin/cos of 1000·γ) | logsnr
    loss: str = "l1"
    schedule: str = "cosine"  # training schedule: cosine (by measurement) | linear (the paper: beta_start..beta_end)
    T: int = 2000  # noqa: N815 - the paper's name
    beta_start: float = 1e-6
    beta_end: float = 0.01
    dropout: float = -1.0  # < 0: the preset's
    sampler: str = "ancestral"  # sampling defaults stored in the checkpoint
    steps: int = 100
    clip_x0: bool = True


def sampling_defaults(cfg: SR3Config, sampler: str = "ancestral", steps: int = 100, clip_x0: bool = True) -> dict:
    """Default inference settings: the training γ range respaced to `steps` steps."""
    return {
        "sampler": sampler,
        "steps": steps,
        "clip_x0": clip_x0,
        "schedule": {"kind": "respace", "steps": steps, "base": dict(cfg.train_schedule)},
    }


class SR3Recipe:
    """One module `net` (SR3Denoiser); Adam at 1e-4; the loss of `sr3_loss`."""

    kind = "sr3"
    export = "net"
    metrics = ("loss",)

    def __init__(self, config: SR3Config, options: SR3Options):
        """Keep the config and the training schedule."""
        self.config, self.options = config, options
        self.schedule = from_spec(config.train_schedule)

    def build_modules(self) -> dict[str, nn.Module]:
        """The denoiser."""
        return {"net": SR3Denoiser(self.config)}

    def build_optimizers(self, modules: dict[str, nn.Module], lr: float | None) -> dict[str, torch.optim.Optimizer]:
        """Adam, lr 1e-4 unless given (the paper)."""
        return {"net": torch.optim.Adam(modules["net"].parameters(), lr=lr or 1e-4)}

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int) -> StepOutput:
        """One step of SR3 eq. 6 on the batch, images scaled to [-1, 1]."""
        x_up = upsample(batch.lr, batch.scale) * 2 - 1
        y0 = batch.hr * 2 - 1
        loss = sr3_loss(models["net"], x_up, y0, self.schedule, self.config.parameterization, self.config.loss)
        return StepOutput(losses={"net": loss}, metrics={"loss": loss.detach()})

    def checkpoint_extra(self) -> dict[str, Any]:
        """Sampling defaults."""
        o = self.options
        return {"sampling": sampling_defaults(self.config, o.sampler, o.steps, o.clip_x0)}


def make_recipe(cfg: TrainConfig, options: dict[str, Any]) -> SR3Recipe:
    """Build the SR3 recipe from the run config and `--preset/--set` options."""
    o = config_from_options(SR3Options, options, "sr3")
    unet = training_preset(o.preset, cfg.crop, o.dropout)
    if o.schedule == "linear":
        sched = linear(o.T, o.beta_start, o.beta_end).to_spec()
    elif o.schedule == "cosine":
        sched = cosine(o.T).to_spec()
    else:
        raise ValueError(f"--set schedule={o.schedule}: the training schedule must be linear or cosine")
    config = SR3Config(
        unet=unet,
        scale=cfg.scale,
        parameterization=o.parameterization,
        embedding=o.embedding,
        loss=o.loss,
        train_schedule=sched,
    )
    return SR3Recipe(config, o)
