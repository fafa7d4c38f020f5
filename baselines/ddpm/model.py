"""The cascade's base generator: an unconditional or class-conditional diffusion model at low resolution.

The same U-Net, preconditioning, loss, schedules and samplers as SR3, without the LR input: the U-Net takes
y_t alone (3 input channels) and, when class-conditional, a class embedding added to its noise embedding
(CDM's base model). Trained by the one loop (`evalsuite train ddpm --data DIR --size 32 [--crop C]`): the
loop's crops of `--crop` px are made `--size` px by THE degradation (`batch.lr` with scale crop // size),
so `--crop` equal to the images' side trains on whole images downscaled. A trained base is `ddpm:CKPT`.
The training recipe lives in `baselines.ddpm.recipe` (so sampling never imports the training loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines.checkpoint import load_checkpoint
from baselines.sr3.model import NOISE_SCALE, SamplingConfig, SR3Config, noise_condition
from baselines.sr3.precond import get_precond
from baselines.sr3.samplers import get_sampler, per_image_noise, per_image_normal
from baselines.sr3.schedule import TRAIN_DEFAULT, Schedule, from_spec
from baselines.unet import UNet, UNetConfig, unet_config_from_dict
from evalsuite.methods import image_generators


@dataclass(frozen=True)
class DDPMConfig:
    """Everything needed to rebuild a base denoiser (stored in its checkpoint); SR3's defaults otherwise."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    size: int = 32  # generated side in px
    classes: tuple[str, ...] = ()  # class names in label order; empty: unconditional
    parameterization: str = SR3Config.parameterization
    embedding: str = SR3Config.embedding
    loss: str = SR3Config.loss
    train_schedule: dict[str, Any] = field(default_factory=lambda: dict(TRAIN_DEFAULT))

    def __post_init__(self) -> None:
        """Validate the parameterization (lists the valid ones) and the size."""
        get_precond(self.parameterization)
        if self.size % self.unet.multiple:
            raise ValueError(f"--size {self.size} must be a multiple of {self.unet.multiple} for this U-Net")


def ddpm_config_from_dict(d: dict[str, Any]) -> DDPMConfig:
    """Rebuild a DDPMConfig from a checkpoint's JSON config."""
    d = dict(d)
    return DDPMConfig(unet=unet_config_from_dict(d.pop("unet")), classes=tuple(d.pop("classes", ())), **d)


class DDPMDenoiser(nn.Module):
    """U-Net without the LR input + preconditioning: forward(y_t, γ, labels) -> ŷ0 (fp32)."""

    def __init__(self, cfg: DDPMConfig):
        """Build the U-Net: 3 input channels, a class embedding when there are classes."""
        super().__init__()
        self.cfg = cfg
        self.precond = get_precond(cfg.parameterization)
        unet = replace(
            cfg.unet,
            in_channels=3,
            out_channels=3,
            noise_scale=NOISE_SCALE[cfg.embedding],
            num_classes=len(cfg.classes),
        )
        self.net = UNet(unet)

    def forward(
        self, x_unused: torch.Tensor | None, y_t: torch.Tensor, gamma: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ŷ0 (B,3,H,W) for y_t in [-1,1]-ish and γ (B,); the first argument (SR3's x_up) is ignored."""
        c = noise_condition(gamma, self.cfg.embedding)
        return self.precond.y0(self.net(y_t, c, labels=labels).float(), y_t.float(), gamma)


@dataclass
class DDPMBase:
    """A trained base as a generator: sample(ids, labels) -> (B,3,size,size) in [0,1], image k seeded by its id."""

    name: str
    model: DDPMDenoiser
    schedule: Schedule
    sampler: str = SamplingConfig.sampler
    clip_x0: bool = SamplingConfig.clip_x0
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Generated side in px."""
        return self.model.cfg.size

    @torch.no_grad()
    def sample(self, ids: Sequence[str], labels: Sequence[int] | None = None) -> torch.Tensor:
        """One image per id (its noise from the id's own generator, so any batch gives the same image)."""
        classes = self.model.cfg.classes
        if classes and labels is None:
            raise ValueError(f"{self.name} is class-conditional ({len(classes)} classes): pass labels")
        y = None if not classes else torch.as_tensor(list(labels or []), device=self.device)
        gens = image_generators(self.seed, list(ids), self.device)
        shape = (3, self.size, self.size)
        # y_T, then every ancestral draw of image k, from generator k.
        y_T = per_image_normal(shape, gens, self.device)  # noqa: N806 - the paper's name

        def denoise(y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
            y0 = self.model(None, y_t, gamma, y)
            return y0.clamp(-1, 1) if self.clip_x0 else y0

        extra = {} if self.sampler == "ddim" else {"variance": "beta"}
        y0 = get_sampler(self.sampler)(
            denoise, y_T, self.schedule.sampling_gammas(), per_image_noise(shape, gens, self.device), **extra
        )
        return ((y0 + 1) / 2).clamp(0, 1)


def load_ddpm(
    path: str | Path,
    device: torch.device | str = "cpu",
    steps: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
) -> DDPMBase:
    """`ddpm:CKPT` -> a base generator (eval mode on `device`), sampling defaults from the checkpoint."""
    ck = load_checkpoint(path, kind="ddpm")
    cfg = ddpm_config_from_dict(ck.config)
    model = DDPMDenoiser(cfg)
    model.load_state_dict(ck.state_dict)
    device = torch.device(device)
    model = model.to(device).eval().requires_grad_(False)
    # The checkpoint's sampling settings (SR3's SamplingConfig), the sampler given here replacing its own.
    sampling = SamplingConfig.from_dict(ck.extra.get("sampling"), cfg.train_schedule).override(sampler=sampler)
    schedule = from_spec(sampling.schedule)
    if steps is not None and int(steps) != schedule.T:
        schedule = schedule.respace(int(steps))
    sampler = sampling.sampler
    info = {"checkpoint": str(path), "sampler": sampler, "steps": schedule.T, "size": cfg.size}
    info["classes"] = len(cfg.classes)
    return DDPMBase(
        f"ddpm:{path}", model, schedule, sampler, bool(sampling.clip_x0), seed, device, info
    )
