"""SR3 samplers: pure functions in k-diffusion's shape.

A sampler takes `denoise(y_t, gamma) -> ŷ0` ((B,C,H,W) and (B,) noise levels; the conditioning input is
closed over by the caller), the starting noise y_T, the noise levels as a tensor and, for the stochastic
sampler, a noise source (a callable returning the next standard-normal draw), plus an optional per-step
callback. `gammas` runs from the noisiest level to 1 (clean): (N+1,), gammas[i] is the level of step i and
gammas[N] = 1, like k-diffusion's sigmas ending in 0. Per-image generators (`per_image_normal`,
`per_image_noise`) make image k the same at any batch size or rank. Values are in the model's [-1, 1] range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseSource = Callable[[], torch.Tensor]
Callback = Callable[[dict[str, Any]], None]
VARIANCES = ("beta", "posterior")


def per_image_normal(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """(B,*shape) standard normal noise, example k drawn from generators[k] only."""
    return torch.stack([torch.randn(tuple(shape), generator=g, device=device) for g in generators])


def per_image_noise(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device) -> NoiseSource:
    """A noise source whose every draw takes example k's noise from generators[k] only."""
    return lambda: per_image_normal(shape, generators, device)


def _levels(gammas: torch.Tensor) -> list[float]:
    """The noise levels as host floats (float64 math, no device syncs inside the loops)."""
    g = [float(x) for x in gammas.detach().double().cpu()]
    if len(g) < 2 or g[-1] != 1.0 or any(b <= a for a, b in zip(g, g[1:], strict=False)):
        raise ValueError("gammas must increase strictly and end at 1.0 (see Schedule.sampling_gammas)")
    return g


def _predict(denoise: Denoise, y: torch.Tensor, g_t: float, i: int, callback: Callback | None) -> torch.Tensor:
    """ŷ0 (fp32) of every image at noise level γ_t, reported to the callback with the step's state."""
    y0 = denoise(y, torch.full((y.shape[0],), g_t, device=y.device)).float()
    if callback is not None:
        callback({"i": i, "y": y, "gamma": g_t, "y0": y0})
    return y0


def ancestral(
    denoise: Denoise,
    y_T: torch.Tensor,  # noqa: N803 - the paper's name
    gammas: torch.Tensor,
    noise: NoiseSource | None = None,
    callback: Callback | None = None,
    variance: str = "beta",
) -> torch.Tensor:
    """SR3 Algorithm 2 written with ŷ0: y_{t−1} ~ q(y_{t−1} | y_t, ŷ0) with variance β_t or the posterior's."""
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    g = _levels(gammas)
    noise = noise or (lambda: torch.randn_like(y_T))
    y = y_T
    for i in range(len(g) - 1):
        g_t, g_prev = g[i], g[i + 1]
        # α_t = γ_t / γ_{t−1}, β_t = 1 − α_t: one step of the (possibly respaced) chain.
        alpha = g_t / g_prev
        beta = 1.0 - alpha
        y0 = _predict(denoise, y, g_t, i, callback)
        # Posterior mean c0·ŷ0 + ct·y_t (DDPM eq. 7); with ŷ0 from ε̂ this is exactly Algorithm 2's mean.
        c0 = math.sqrt(g_prev) * beta / (1 - g_t)
        ct = math.sqrt(alpha) * (1 - g_prev) / (1 - g_t)
        mean = c0 * y0 + ct * y.float()
        if g_prev == 1.0:
            # Last step: no noise.
            y = mean
            continue
        # z ~ N(0, I) scaled by sqrt(β_t) (Algorithm 2) or by the posterior's sqrt(β̃_t) (the public code).
        var = beta if variance == "beta" else (1 - g_prev) / (1 - g_t) * beta
        y = mean + math.sqrt(var) * noise()
    return y


def ddim(
    denoise: Denoise,
    y_T: torch.Tensor,  # noqa: N803 - the paper's name
    gammas: torch.Tensor,
    noise: NoiseSource | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (η = 0): only y_T is random (`noise` is accepted for a common signature, unused)."""
    g = _levels(gammas)
    y = y_T
    for i in range(len(g) - 1):
        g_t, g_prev = g[i], g[i + 1]
        y0 = _predict(denoise, y, g_t, i, callback)
        # ε̂ implied by ŷ0, then y_{t−1} = sqrt(γ_{t−1})·ŷ0 + sqrt(1−γ_{t−1})·ε̂ (DDIM eq. 12, σ = 0).
        eps = (y.float() - math.sqrt(g_t) * y0) / math.sqrt(1 - g_t)
        y = math.sqrt(g_prev) * y0 + math.sqrt(1 - g_prev) * eps
    return y


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ancestral": ancestral, "ddim": ddim}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """A sampler by name (ancestral, ddim)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
