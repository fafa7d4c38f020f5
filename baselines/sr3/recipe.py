"""The SR3 training recipe for `baselines.train` (ε/y0/v prediction, L1/L2, per-example γ)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from baselines.sr3.loss import sr3_loss
from baselines.sr3.model import SamplingConfig, SR3Config, SR3Denoiser, diffused, residual_base, sampling_defaults
from baselines.sr3.precond import get_precond
from baselines.sr3.schedule import PAPER_TRAIN, TRAIN_DEFAULT, from_spec, training_schedule
from baselines.train import Batch, StepOutput, TrainConfig, config_from_options
from baselines.unet import training_preset
from evalsuite.degrade import upsample


@dataclass(frozen=True)
class DiffusionOptions:
    """The `--set KEY=VALUE` options SR3 and the cascade's base share (defaults: SR3Config's, the schedule's)."""

    preset: str = "small"
    parameterization: str = SR3Config.parameterization
    embedding: str = SR3Config.embedding
    loss: str = SR3Config.loss
    schedule: str = TRAIN_DEFAULT["kind"]  # training schedule: cosine | linear
    T: int = TRAIN_DEFAULT["T"]  # noqa: N815 - the paper's name
    dropout: float = -1.0  # < 0: the preset's
    width: int = 0  # the U-Net's base channel count; 0: the preset's
    # The sampling settings stored in the checkpoint (SamplingConfig; `run benchmark` options override them).
    sampler: str = SamplingConfig.sampler
    sample_steps: int = SamplingConfig.steps  # sampler steps (not training steps: those are `train --steps`)
    clip_x0: bool = SamplingConfig.clip_x0


@dataclass(frozen=True)
class SR3Options(DiffusionOptions):
    """`evalsuite train sr3 --preset P --set KEY=VALUE` options: the shared ones, the paper's betas, CDM's noise_aug."""

    beta_start: float = PAPER_TRAIN["beta_start"]  # the linear schedule's ends (the paper's)
    beta_end: float = PAPER_TRAIN["beta_end"]
    noise_aug: float = 0.0  # CDM noise augmentation: max std of the LR noise (model units); 0: off
    residual: float = 0.0  # s > 0: diffuse s·(y0 − x_up), the residual over the upsampled LR; 0: y0 (the paper)
    backproject: int = 0  # n > 0: the residual's base is x_up back-projected n times onto the LR (SR3Config)


class DiffusionRecipe:
    """What SR3 and the cascade's base generator share: one module `net`, Adam at 1e-4, SR3's loss, its γ table."""

    export = "net"
    metrics = ("loss",)

    def __init__(self, config: Any, options: Any):
        """Keep the config, the training schedule and the parameterization's preconditioning."""
        self.config, self.options = config, options
        self.schedule = from_spec(config.train_schedule)
        self.precond = get_precond(config.parameterization)
        self._gamma_table: torch.Tensor | None = None

    def gamma_table(self, device: torch.device) -> torch.Tensor:
        """The schedule's γ table on the training device, copied there once (a copy per step would sync)."""
        if self._gamma_table is None or self._gamma_table.device != device:
            self._gamma_table = self.schedule.gamma_table().to(device)
        return self._gamma_table

    def build_optimizers(self, modules: dict[str, nn.Module], lr: float | None) -> dict[str, torch.optim.Optimizer]:
        """Adam, lr 1e-4 unless given (the paper)."""
        return {"net": torch.optim.Adam(modules["net"].parameters(), lr=lr or 1e-4)}

    def checkpoint_extra(self) -> dict[str, Any]:
        """Sampling defaults."""
        o = self.options
        stored = SamplingConfig(sampler=o.sampler, steps=o.sample_steps, clip_x0=o.clip_x0)
        return {"sampling": sampling_defaults(self.config, stored)}


class SR3Recipe(DiffusionRecipe):
    """One module `net` (SR3Denoiser); Adam at 1e-4; the loss of `sr3_loss`."""

    kind = "sr3"
    config: SR3Config
    options: SR3Options

    def build_modules(self) -> dict[str, nn.Module]:
        """The denoiser."""
        return {"net": SR3Denoiser(self.config)}

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int) -> StepOutput:
        """One step of SR3 eq. 6 on the batch, images scaled to [-1, 1] (LR noise-augmented if configured)."""
        x_lr, aug = noise_augment(batch.lr, self.config.noise_aug)
        x_up = upsample(x_lr, batch.scale) * 2 - 1
        y0 = batch.hr * 2 - 1
        net = models["net"]
        denoiser = net if aug is None else (lambda x, y_t, gamma: net(x, y_t, gamma, aug))
        # The diffused variable: the image, or its scaled residual over x_up or its back-projection.
        z0 = diffused(residual_base(self.config, x_up, x_lr), y0, self.config.residual)
        loss = sr3_loss(denoiser, self.precond, x_up, z0, self.gamma_table(z0.device), self.config.loss)
        return StepOutput(losses={"net": loss}, metrics={"loss": loss.detach()})


def noise_augment(x_lr: torch.Tensor, noise_aug: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CDM's noise augmentation of the LR (in [0, 1]): level a ~ U(0, noise_aug) per example, x_lr + (a/2)·ε.

    a is the noise std in the model's [-1, 1] units (hence a/2 on [0, 1] images); returns (x_lr', a), or
    (x_lr, None) when noise_aug is 0. Global RNG, so resume reproduces it.
    """
    if noise_aug <= 0:
        return x_lr, None
    # One level per example, then Gaussian noise of that std on every LR pixel.
    a = torch.rand(x_lr.shape[0], device=x_lr.device) * noise_aug
    return x_lr + (a / 2)[:, None, None, None] * torch.randn_like(x_lr), a


def make_recipe(cfg: TrainConfig, options: dict[str, Any]) -> SR3Recipe:
    """Build the SR3 recipe from the run config and `--preset/--set` options."""
    o = config_from_options(SR3Options, options, "sr3")
    unet = training_preset(o.preset, cfg.crop, o.dropout, o.width)
    sched = training_schedule(o.schedule, o.T, beta_start=o.beta_start, beta_end=o.beta_end)
    config = SR3Config(
        unet=unet,
        scale=cfg.scale,
        parameterization=o.parameterization,
        embedding=o.embedding,
        loss=o.loss,
        train_schedule=sched,
        blur_aug=cfg.blur_aug,
        noise_aug=o.noise_aug,
        residual=o.residual,
        backproject=o.backproject,
    )
    return SR3Recipe(config, o)
