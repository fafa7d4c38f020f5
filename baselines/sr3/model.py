"""The γ-conditioned SR3 denoiser: the U-Net plus noise-level conditioning and the output parameterization.

The paper's network predicts ε from (x, ỹ, γ) with ỹ = sqrt(γ)·y0 + sqrt(1−γ)·ε. Options measured against
the colour shift of short runs: the embedding input (`gamma`: sin/cos of 1000·γ, as the paper's
re-implementations; `logsnr`: of 50·log(γ/(1−γ)), which resolves the high-noise end) and the prediction
target (`eps` as the paper, `x0`, `v` = sqrt(γ)·ε − sqrt(1−γ)·y0, or `edm`: ŷ0 = c_skip·ỹ + c_out·F with
Karras et al.'s (2022) preconditioning written for the variance-preserving process and σ_data = 0.5, so the
network refines the noisy image instead of redrawing it, and its target F has unit variance at every γ).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from baselines.sr3.schedule import TRAIN_DEFAULT
from baselines.unet import UNet, UNetConfig, unet_config_from_dict

PARAMETERIZATIONS = ("eps", "x0", "v", "edm")
SIGMA_DATA = 0.5  # std of images in [-1, 1], the `edm` preconditioning's σ_data
EMBEDDINGS = ("gamma", "logsnr", "sqrt_gamma")
# `sqrt_gamma`: sin/cos of √γ itself, unscaled (the public re-implementation's convention, for its checkpoints).
NOISE_SCALE = {"gamma": 1000.0, "logsnr": 50.0, "sqrt_gamma": 1.0}


@dataclass(frozen=True)
class SR3Config:
    """Everything needed to rebuild an SR3 denoiser (stored as JSON in its checkpoint)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    scale: int = 8
    parameterization: str = "v"
    embedding: str = "logsnr"
    loss: str = "l1"
    train_schedule: dict[str, Any] = field(default_factory=lambda: dict(TRAIN_DEFAULT))

    def __post_init__(self) -> None:
        """Validate the choices."""
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be l1 or l2, got {self.loss!r}")


def sampling_defaults(cfg: SR3Config, sampler: str = "ancestral", steps: int = 100, clip_x0: bool = True) -> dict:
    """Default inference settings: the training γ range respaced to `steps` steps."""
    return {
        "sampler": sampler,
        "steps": steps,
        "clip_x0": clip_x0,
        "schedule": {"kind": "respace", "steps": steps, "base": dict(cfg.train_schedule)},
    }


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


class SR3Denoiser(nn.Module):
    """U-Net + conditioning: forward(x_up, y_t, γ) -> the raw prediction (ε, y0 or v)."""

    def __init__(self, cfg: SR3Config):
        """Build the U-Net (6 input channels, embedding scale set by the embedding kind)."""
        super().__init__()
        self.cfg = cfg
        self.net = UNet(replace(cfg.unet, in_channels=6, out_channels=3, noise_scale=NOISE_SCALE[cfg.embedding]))

    def forward(self, x_up: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """x_up, y_t: (B,3,H,W) in [-1,1]-ish; gamma: (B,) -> (B,3,H,W) raw prediction."""
        return self.net(torch.cat([x_up, y_t.to(x_up.dtype)], dim=1), noise_condition(gamma, self.cfg.embedding))

    def predict(self, x_up: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε̂, ŷ0) in fp32 from the raw prediction, whatever the parameterization."""
        return to_eps_y0(self(x_up, y_t, gamma).float(), y_t.float(), gamma, self.cfg.parameterization)

    def eps(self, x_cond: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Predicted ε (B,3,H,W) for x_cond (the upsampled LR) and y_t in [-1, 1], γ of shape (B,)."""
        return self.predict(x_cond, y_t, gamma)[0]


def _a_s(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = sqrt(γ) and s = sqrt(1−γ) shaped (B,1,1,1), fp32."""
    g = gamma.float()[:, None, None, None]
    return g.sqrt(), (1 - g).clamp(min=0).sqrt()


def edm_coefficients(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of ŷ0 = c_skip·ỹ + c_out·F for ỹ = a·y0 + s·ε and data std σ_data (Karras et al. 2022)."""
    a, s = _a_s(gamma)
    sd2 = SIGMA_DATA**2
    # Var(ỹ) = a²σ_d² + s²; c_skip minimizes the target's variance, c_out scales it to unit variance.
    var = a * a * sd2 + s * s
    return a * sd2 / var, s * SIGMA_DATA / var.sqrt()


def to_eps_y0(
    out: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor, param: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a raw prediction to (ε̂, ŷ0) using y_t = a·y0 + s·ε, a = sqrt(γ), s = sqrt(1−γ)."""
    a, s = _a_s(gamma)
    if param == "eps":
        return out, (y_t - s * out) / a
    if param == "x0":
        return (y_t - a * out) / s.clamp(min=1e-6), out
    if param == "edm":
        c_skip, c_out = edm_coefficients(gamma)
        y0 = c_skip * y_t + c_out * out
        return (y_t - a * y0) / s.clamp(min=1e-6), y0
    # v = a·ε − s·y0  =>  y0 = a·y_t − s·v,  ε = s·y_t + a·v.
    return s * y_t + a * out, a * y_t - s * out


def target(y0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor, param: str) -> torch.Tensor:
    """The training target of a parameterization."""
    if param == "eps":
        return eps
    if param == "x0":
        return y0
    a, s = _a_s(gamma)
    if param == "edm":
        # F = (y0 − c_skip·ỹ) / c_out, with ỹ rebuilt from (y0, ε).
        c_skip, c_out = edm_coefficients(gamma)
        return (y0 - c_skip * (a * y0 + s * eps)) / c_out
    return a * eps - s * y0
