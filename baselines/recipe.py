"""What a trainable baseline gives the one training loop: the Recipe protocol and its batch and step types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Batch:
    """One training micro-batch: HR crops and their LR inputs, both (B,3,*,*) float in [0,1]."""

    hr: torch.Tensor  # (B,3,H,W)
    lr: torch.Tensor  # (B,3,H/s,W/s)
    scale: int
    labels: torch.Tensor | None = None  # (B,) class indices with --labels (class-conditional recipes)


@dataclass(frozen=True)
class StepOutput:
    """What `Recipe.train_step` returns for one micro-batch."""

    losses: dict[str, torch.Tensor]  # optimizer name -> 0-dim loss that depends on that optimizer's parameters only
    metrics: dict[str, torch.Tensor]  # Recipe.metrics name -> 0-dim tensor for log.csv (kept on the device)


class Recipe(Protocol):
    """What a trainable baseline gives the loop (see docs/training.md)."""

    kind: str  # checkpoint kind: sr3 | regression | gan | ...
    export: str  # name of the module whose EMA weights are the checkpoint
    config: Any  # frozen dataclass (or dict): everything needed to rebuild the exported module
    metrics: tuple[str, ...]  # the names of StepOutput.metrics, in log.csv's column order

    def build_modules(self) -> dict[str, nn.Module]:
        """Fresh modules by name, e.g. {"net": unet} or {"generator": g, "discriminator": d}."""
        ...

    def build_optimizers(self, modules: dict[str, nn.Module], lr: float | None) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per name (names are free; `StepOutput.losses` refers to them)."""
        ...

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int) -> StepOutput:
        """The forward pass of one micro-batch (under autocast): a loss per optimizer and the metrics."""
        ...

    def checkpoint_extra(self) -> dict[str, Any]:
        """Extra JSON stored in the checkpoint (e.g. sampling defaults)."""
        ...
