"""The SR3 training loss: per-example γ, noisy target, one weighted L1 (or L2) over ŷ0 − y0."""

from __future__ import annotations

import torch
from torch import nn

from baselines.sr3.precond import Precond, alpha_sigma
from baselines.sr3.schedule import sample_gamma


def sr3_loss(
    net: nn.Module,
    precond: Precond,
    x_up: torch.Tensor,
    y0: torch.Tensor,
    gamma_table: torch.Tensor,
    loss: str = "l1",
) -> torch.Tensor:
    """E_{γ,ε} |w(γ)·(ŷ0 − y0)|^p (SR3 eq. 6 in each parameterization's units); x_up, y0: (B,3,H,W) in [-1,1].

    `net(x_up, y_t, γ)` returns ŷ0 (an `SR3Denoiser`, possibly DDP-wrapped); `gamma_table` is the training
    schedule's `gamma_table()` on y0's device.
    """
    if loss not in ("l1", "l2"):
        raise ValueError(f"loss must be l1 or l2, got {loss!r}")
    # γ per example: t ~ U{1..T}, γ ~ U(γ_t, γ_{t−1}).
    gamma = sample_gamma(gamma_table, y0.shape[0])
    # ε ~ N(0, I) and the noisy target ỹ = sqrt(γ)·y0 + sqrt(1−γ)·ε.
    eps = torch.randn_like(y0)
    a, s = alpha_sigma(gamma)
    y_t = a * y0 + s * eps
    # One line for every parameterization: the error on ŷ0, weighted back to the raw output's units.
    err = precond.weight(gamma) * (net(x_up, y_t, gamma) - y0)
    return err.abs().mean() if loss == "l1" else err.square().mean()
