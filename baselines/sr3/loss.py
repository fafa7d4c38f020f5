"""The SR3 training loss: per-example γ, noisy target, L1 (or L2) on the network's prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.sr3.model import target
from baselines.sr3.schedule import Schedule


def sr3_loss(
    net: nn.Module,
    x_up: torch.Tensor,
    y0: torch.Tensor,
    schedule: Schedule,
    param: str = "eps",
    loss: str = "l1",
) -> torch.Tensor:
    """E_{γ,ε} ||f(x, sqrt(γ)·y0 + sqrt(1−γ)·ε, γ) − target||_p (SR3 eq. 6); x_up, y0: (B,3,H,W) in [-1,1]."""
    b = y0.shape[0]
    # γ per example: t ~ U{1..T}, γ ~ U(γ_t, γ_{t−1}).
    gamma = schedule.sample_gamma(b, y0.device)
    # ε ~ N(0, I) and the noisy target ỹ = sqrt(γ)·y0 + sqrt(1−γ)·ε.
    eps = torch.randn_like(y0)
    a, s = gamma.sqrt()[:, None, None, None], (1 - gamma).sqrt()[:, None, None, None]
    y_t = a * y0 + s * eps
    # Prediction vs target (ε, y0 or v), L1 by default (the CDM ablation), L2 selectable.
    pred = net(x_up, y_t, gamma).float()
    tgt = target(y0, eps, gamma, param)
    return F.l1_loss(pred, tgt) if loss == "l1" else F.mse_loss(pred, tgt)
