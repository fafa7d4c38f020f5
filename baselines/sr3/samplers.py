"""SR3 samplers: pure functions of a denoise callable, a schedule and per-image generators.

`denoise(y_t, gamma) -> (eps_hat, y0_hat)` takes (B,3,H,W) and (B,) noise levels (the conditioning
input is closed over by the caller). All noise of image k comes from generator k, so image k is the same
at any batch size or rank. Values are in the model's [-1, 1] range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from baselines.sr3.schedule import Schedule, posterior

Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def per_image_normal(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """(B,*shape) standard normal noise, example k drawn from generators[k] only."""
    return torch.stack([torch.randn(tuple(shape), generator=g, device=device) for g in generators])


def ancestral(
    denoise: Denoise,
    shape: Sequence[int],
    schedule: Schedule,
    generators: Sequence[torch.Generator],
    device: torch.device | str = "cpu",
    clip_x0: bool = False,
) -> torch.Tensor:
    """SR3 Algorithm 2 over `schedule`; with clip_x0, ŷ0 is clipped to [-1,1] (posterior-mean form)."""
    device = torch.device(device)
    b = len(generators)
    # Per-step scalars as Python floats (float64 math on the host, no device syncs inside the loop).
    alpha, gamma = schedule.alpha().tolist(), schedule.gamma().tolist()
    c0, ct, _ = (c.tolist() for c in posterior(schedule))
    # y_T ~ N(0, I), per image.
    y = per_image_normal(shape, generators, device)
    for i in reversed(range(schedule.T)):
        g_t = torch.full((b,), gamma[i], device=device)
        eps, y0 = denoise(y, g_t)
        if clip_x0:
            # Posterior mean of q(y_{t-1} | y_t, ŷ0) with ŷ0 clipped to the data range.
            mean = c0[i] * y0.float().clamp(-1, 1) + ct[i] * y
        else:
            # Algorithm 2: y_{t-1} = (y_t − (1−α_t)/sqrt(1−γ_t)·f(x, y_t, γ_t)) / sqrt(α_t) + sqrt(1−α_t)·z.
            mean = (y - (1 - alpha[i]) / math.sqrt(1 - gamma[i]) * eps.float()) / math.sqrt(alpha[i])
        if i > 0:
            # z ~ N(0, I) per image; no noise on the last step.
            y = mean + math.sqrt(1 - alpha[i]) * per_image_normal(shape, generators, device)
        else:
            y = mean
    return y


def ddim(
    denoise: Denoise,
    shape: Sequence[int],
    schedule: Schedule,
    generators: Sequence[torch.Generator],
    device: torch.device | str = "cpu",
    clip_x0: bool = False,
) -> torch.Tensor:
    """Deterministic DDIM (η = 0) over `schedule`: only y_T is random."""
    device = torch.device(device)
    b = len(generators)
    gamma, gamma_prev = schedule.gamma().tolist(), schedule.gamma_prev().tolist()
    y = per_image_normal(shape, generators, device)
    for i in reversed(range(schedule.T)):
        g_t = torch.full((b,), gamma[i], device=device)
        eps, y0 = denoise(y, g_t)
        eps, y0 = eps.float(), y0.float()
        if clip_x0:
            # Clip ŷ0 and re-derive ε̂ from it, so the update stays on the same trajectory family.
            y0 = y0.clamp(-1, 1)
            eps = (y - math.sqrt(gamma[i]) * y0) / math.sqrt(1 - gamma[i])
        # y_{t-1} = sqrt(γ_{t-1})·ŷ0 + sqrt(1−γ_{t-1})·ε̂ (DDIM eq. 12, σ = 0).
        y = math.sqrt(gamma_prev[i]) * y0 + math.sqrt(1 - gamma_prev[i]) * eps
    return y


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ancestral": ancestral, "ddim": ddim}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """A sampler by name (ancestral, ddim)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
