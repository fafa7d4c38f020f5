"""The γ-conditioned SR3 denoiser: the U-Net, its noise-level conditioning and its preconditioning.

The paper's network predicts ε from (x, ỹ, γ) with ỹ = sqrt(γ)·y0 + sqrt(1−γ)·ε. Options measured against
the colour shift of short runs: the embedding input (`gamma`: sin/cos of 1000·γ, as the paper's
re-implementations; `logsnr`: of 50·log(γ/(1−γ)), which resolves the high-noise end; `sqrt_gamma`: of √γ
unscaled, the public re-implementation's convention, for its checkpoints) and the parameterization of the
output (`precond.py`: `eps` as the paper, `x0`, `v`, or `edm`). `SR3Denoiser(x_up, y_t, γ)` returns ŷ0
whatever the parameterization; `eps(...)` returns ε̂.

`SR3Config` holds the model's defaults (its fields); `SamplingConfig` is the one home of the sampling settings:
their defaults, what a checkpoint stores under `sampling`, and what method options override.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from baselines.sr3.precond import get_precond
from baselines.sr3.samplers import VARIANCES, get_sampler
from baselines.sr3.schedule import TRAIN_DEFAULT
from baselines.unet import UNet, UNetConfig, unet_config_from_dict
from evalsuite.degrade import backproject

EMBEDDINGS = ("gamma", "logsnr", "sqrt_gamma")
NOISE_SCALE = {"gamma": 1000.0, "logsnr": 50.0, "sqrt_gamma": 1.0}
LOSSES = ("l1", "l2")


@dataclass(frozen=True)
class SR3Config:
    """Everything needed to rebuild an SR3 denoiser (stored as JSON in its checkpoint), with SR3's defaults."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    scale: int = 8
    parameterization: str = "v"  # eps (the paper) | x0 | v | edm; v by measurement (docs/sr3.md)
    embedding: str = "logsnr"  # gamma (sin/cos of 1000·γ) | logsnr | sqrt_gamma
    loss: str = "l1"  # l1 | l2
    train_schedule: dict[str, Any] = field(default_factory=lambda: dict(TRAIN_DEFAULT))
    # Conditioning augmentation (CDM, docs/cascade.md), training only; recorded here so a checkpoint says
    # how it was trained. blur_aug: the loop's `--blur-aug` (3x3 Gaussian, sigma ~ U(0.4, 0.6), 50% of
    # examples). noise_aug > 0: Gaussian noise of std a ~ U(0, noise_aug) (in the model's [-1, 1] units) added
    # to the LR, and a fed to the U-Net as an extra embedding; the method chooses a (option `noise_aug`, 0).
    blur_aug: bool = False
    noise_aug: float = 0.0
    # What is diffused. 0: the HR image y0 (the paper). s > 0: the residual over the conditioning input,
    # s·(y0 − x_up) (SRDiff's residual target, scaled by s towards the spread of an image): the network then
    # only generates detail and the LR band comes from x_up, not from a tiny network's estimate of it
    # (MODEL_CARD.md in baselines/demo: the demo SR3's per-tile brightness drift).
    residual: float = 0.0
    # The base of the residual (residual > 0 only). 0: x_up, the bicubic upsampling. n > 0: x_up corrected by n
    # iterations of back-projection (`evalsuite.degrade.backproject`), whose degradation is the LR input: the
    # network then only generates detail and need not also learn bicubic's error in the LR band, which the
    # tiny demo SR3 only half learned. The conditioning input stays x_up. Experimental: with the L1 loss the
    # tiny model then generates no texture (docs/sr3.md, baselines/demo/MODEL_CARD.md).
    backproject: int = 0

    def __post_init__(self) -> None:
        """Validate the choices (an unknown parameterization lists the valid ones)."""
        get_precond(self.parameterization)
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.residual < 0:
            raise ValueError(f"residual must be 0 (diffuse the image) or a positive scale, got {self.residual}")
        if self.backproject < 0 or (self.backproject and not self.residual):
            raise ValueError(
                f"backproject must be 0 or a number of iterations with a residual target (residual > 0), got "
                f"backproject={self.backproject}, residual={self.residual}"
            )
        if not 0.0 <= self.noise_aug <= 1.0:
            raise ValueError(f"noise_aug must be in [0, 1] (std in [-1, 1] units; 0: off), got {self.noise_aug}")


@dataclass(frozen=True)
class SamplingConfig:
    """SR3's sampling settings: their one home. A checkpoint stores them (`sampling`); method options override them.

    `steps` is the number of sampler steps; `schedule` the inference schedule's spec (None: the training
    schedule respaced to `steps`, over the same γ range).
    """

    sampler: str = "ancestral"  # ancestral (Algorithm 2) | ddim
    steps: int = 100  # the paper samples with at most 100 steps
    clip_x0: bool = True  # clip the predicted y0 to [-1, 1] at every step
    variance: str = "beta"  # ancestral noise: β_t (Algorithm 2) or `posterior` (β̃_t, the public code)
    schedule: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Validate the choices (names listed)."""
        get_sampler(self.sampler)  # an unknown name lists the valid ones
        if self.variance not in VARIANCES:
            raise ValueError(f"sampling variance must be one of {VARIANCES}, got {self.variance!r}")
        if int(self.steps) < 1:
            raise ValueError(f"sampling steps must be at least 1, got {self.steps}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, train_schedule: dict[str, Any] | None = None) -> SamplingConfig:
        """A checkpoint's `sampling` dict (keys it lacks take the defaults) -> the config with its schedule."""
        known = {f: v for f, v in (d or {}).items() if f in cls.__dataclass_fields__}
        cfg = cls(**known)
        if cfg.schedule is None and train_schedule is not None:
            cfg = replace(cfg, schedule={"kind": "respace", "steps": int(cfg.steps), "base": dict(train_schedule)})
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in a checkpoint's extras under `sampling`."""
        return {"sampler": self.sampler, "steps": int(self.steps), "clip_x0": bool(self.clip_x0),
                "variance": self.variance, "schedule": self.schedule}

    def override(self, **options: Any) -> SamplingConfig:
        """The settings with the given options replacing the stored ones (None: keep the stored value)."""
        return replace(self, **{k: v for k, v in options.items() if v is not None})



def sampling_defaults(cfg: SR3Config, sampling: SamplingConfig | None = None, **settings: Any) -> dict[str, Any]:
    """The `sampling` dict a new checkpoint stores: `sampling` (or the defaults, with `settings`) over the
    training schedule respaced to its steps."""
    base = (sampling or SamplingConfig()).override(**settings)
    return SamplingConfig.from_dict({**base.to_dict(), "schedule": None}, cfg.train_schedule).to_dict()


def sr3_config_from_dict(d: dict[str, Any]) -> SR3Config:
    """Rebuild an SR3Config from a checkpoint's JSON config."""
    d = dict(d)
    return SR3Config(unet=unet_config_from_dict(d.pop("unet")), **d)


def noise_condition(gamma: torch.Tensor, embedding: str) -> torch.Tensor:
    """The scalar the U-Net embeds: γ, √γ, or log-SNR = log(γ/(1−γ)) clamped to [−20, 20]."""
    if embedding == "sqrt_gamma":
        return gamma.double().sqrt().float()
    g = gamma.float()
    if embedding == "gamma":
        return g
    g = g.clamp(1e-9, 1 - 1e-9)
    return (torch.log(g) - torch.log1p(-g)).clamp(-20, 20)


def diffused(x_up: torch.Tensor, y0: torch.Tensor, residual: float) -> torch.Tensor:
    """What is diffused for the image y0: y0 itself (residual 0, the paper) or residual·(y0 − x_up)."""
    return y0 if residual == 0 else residual * (y0 - x_up)


def image(x_up: torch.Tensor, z0: torch.Tensor, residual: float) -> torch.Tensor:
    """The image of a diffused variable z0: the inverse of `diffused`."""
    return z0 if residual == 0 else x_up + z0 / residual


def residual_base(cfg: SR3Config, x_up: torch.Tensor, x_lr: torch.Tensor | None = None) -> torch.Tensor:
    """The residual's base in [-1, 1] units: x_up, or with cfg.backproject x_lr's back-projection (x_lr on [0, 1])."""
    if not cfg.backproject:
        return x_up
    if x_lr is None:
        raise ValueError(f"this SR3 (backproject={cfg.backproject}) needs the LR input to build its residual's base")
    return backproject(x_lr, cfg.scale, cfg.backproject) * 2 - 1


class SR3Denoiser(nn.Module):
    """U-Net + conditioning + preconditioning: forward(x_up, y_t, γ) -> ŷ0 (fp32), whatever the parameterization."""

    def __init__(self, cfg: SR3Config):
        """Build the U-Net (6 input channels, embedding scale set by the embedding kind)."""
        super().__init__()
        self.cfg = cfg
        self.precond = get_precond(cfg.parameterization)
        self.net = UNet(
            replace(
                cfg.unet,
                in_channels=6,
                out_channels=3,
                noise_scale=NOISE_SCALE[cfg.embedding],
                aug_embedding=cfg.noise_aug > 0,
            )
        )

    def raw(
        self, x_up: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor, aug: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The network's raw output F (ε, y0, v or edm's F) in fp32; x_up, y_t: (B,3,H,W), gamma: (B,);
        aug: (B,) noise-augmentation level of x_up (only with cfg.noise_aug > 0; default 0)."""
        c = noise_condition(gamma, self.cfg.embedding)
        return self.net(torch.cat([x_up, y_t.to(x_up.dtype)], dim=1), c, aug=aug).float()

    def forward(
        self, x_up: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor, aug: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ŷ0 (B,3,H,W) in fp32 for x_up, y_t in [-1,1]-ish, γ of shape (B,) and the augmentation level."""
        return self.precond.y0(self.raw(x_up, y_t, gamma, aug), y_t.float(), gamma)

    def base(self, x_up: torch.Tensor, x_lr: torch.Tensor | None = None) -> torch.Tensor:
        """The residual's base (`residual_base` with cfg)."""
        return residual_base(self.cfg, x_up, x_lr)

    def diffused(self, base: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        """The variable this model diffuses for the image y0 (`diffused` with cfg.residual) over `base`."""
        return diffused(base, y0, self.cfg.residual)

    def image(self, base: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """The image of a diffused variable z0 (`image` with cfg.residual) over `base`."""
        return image(base, z0, self.cfg.residual)

    def eps(self, x_cond: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Predicted ε (B,3,H,W) for x_cond (the upsampled LR) and y_t in [-1, 1], γ of shape (B,)."""
        return self.precond.eps(self.raw(x_cond, y_t, gamma), y_t.float(), gamma)
