"""The training recipe of the cascade's base generator (`evalsuite train ddpm`); the model is `baselines.ddpm.model`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from baselines.data import read_labels
from baselines.ddpm.model import DDPMConfig, DDPMDenoiser
from baselines.sr3.loss import sr3_loss
from baselines.sr3.recipe import DiffusionOptions, DiffusionRecipe
from baselines.sr3.schedule import training_schedule
from baselines.train import Batch, StepOutput, TrainConfig, config_from_options
from baselines.unet import training_preset


@dataclass(frozen=True)
class DDPMOptions(DiffusionOptions):
    """`evalsuite train ddpm --set KEY=VALUE` options: SR3's shared ones (the size comes from --size)."""


class DDPMRecipe(DiffusionRecipe):
    """One module `net` (DDPMDenoiser) trained with SR3's loss on the loop's `batch.lr` images."""

    kind = "ddpm"
    uses_labels = True  # `--labels` gives the loop's batches class indices (class-conditional when classes)
    config: DDPMConfig
    options: DDPMOptions

    def build_modules(self) -> dict[str, nn.Module]:
        """The denoiser."""
        return {"net": DDPMDenoiser(self.config)}

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int) -> StepOutput:
        """SR3's loss without the conditioning input: the images are the loop's LR crops, in [-1, 1]."""
        y0 = batch.lr * 2 - 1
        if y0.shape[-1] != self.config.size or y0.shape[-2] != self.config.size:
            raise ValueError(f"ddpm: got {tuple(y0.shape[-2:])} training images, expected {self.config.size} px")
        net = models["net"]
        if self.config.classes:
            if batch.labels is None:
                raise ValueError("ddpm: this base is class-conditional; train it with --labels")
            labels = batch.labels
            net = lambda x, y_t, gamma: models["net"](x, y_t, gamma, labels)  # noqa: E731
        loss = sr3_loss(net, self.precond, y0, y0, self.gamma_table(y0.device), self.config.loss)
        return StepOutput(losses={"net": loss}, metrics={"loss": loss.detach()})


def make_recipe(cfg: TrainConfig, options: dict[str, Any]) -> DDPMRecipe:
    """Build the base recipe: generated size crop // scale (the CLI's --size), `--preset/--set` options."""
    if cfg.blur_aug:
        raise ValueError("--blur-aug is conditioning augmentation of an SR stage's LR input; a base has no input")
    o = config_from_options(DDPMOptions, options, "ddpm")
    size = cfg.crop // cfg.scale
    unet = training_preset(o.preset, size, o.dropout, o.width)
    sched = training_schedule(o.schedule, o.T)
    # Class-conditional with --labels: the class names in the order the data stream indexes them.
    classes = tuple(sorted(set(read_labels(cfg.data, cfg.labels).values()))) if cfg.labels else ()
    config = DDPMConfig(
        unet=unet,
        size=size,
        classes=classes,
        parameterization=o.parameterization,
        embedding=o.embedding,
        loss=o.loss,
        train_schedule=sched,
    )
    return DDPMRecipe(config, o)
