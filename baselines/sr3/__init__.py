"""SR3 (Saharia et al. 2021): schedule, loss, samplers, the γ-conditioned denoiser and the harness method.

`load_denoiser(path)` is the stable way to probe a checkpoint (this project's `.safetensors`, or the public
re-implementation's `I…_gen.pth` with its config): `load_denoiser(path).eps(x_cond, y_t, gamma)`. For a
checkpoint trained with `--set residual=s` (`cfg.residual`), y_t is the noisy residual s·(y0 − base) over
`base = denoiser.base(x_cond, x_lr)` (x_cond itself, or with `cfg.backproject` its back-projection onto the LR
x_lr); `denoiser.diffused(base, y0)` and `denoiser.image(base, z0)` convert between the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baselines.sr3.model import SR3Denoiser


def load_denoiser(path: str | Path, config: str | Path | None = None) -> SR3Denoiser:
    """The denoiser of an SR3 checkpoint (CPU, eval mode); `config`: the public code's JSON for a `.pth`."""
    from baselines.sr3.method import load_sr3

    return load_sr3(path, "cpu", config)[0]
