"""A self-check for imported SR3 checkpoints: does the denoiser predict ε on natural images?

An import can only check what the weights show (key names and shapes). `norm_groups` is not among them: any
divisor of every channel count loads, and a wrong one changes every GroupNorm's statistics, so the network
predicts ε far off (mean squared error near or above 1, as predicting 0 would) while the right one predicts it
well. This check noises natural photos (scikit-image's bundled ones) at a few noise levels, conditions on
their bicubic LR, and measures the ε error of the configured `norm_groups` and of every other valid value.
A trained model gives an error well below 1 with the right value; an alternative that fits clearly better
than the configured one means the config is wrong. (An untrained or barely trained checkpoint fails the
absolute test whatever the config: the verdict then says so and the import goes on.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from baselines.checkpoint import Checkpoint
from baselines.sr3.model import SR3Denoiser, sr3_config_from_dict
from baselines.unet import UNetConfig
from evalsuite.degrade import degrade, prepare_hr, to_tensor, upsample
from evalsuite.tasks import Task

GAMMAS = (0.2, 0.5, 0.8)  # noise levels (γ = signal fraction): moderate to high noise, where ε is predictable
MAX_ERROR = 0.5  # ε MSE a trained model stays well below (predicting 0 scores 1)
BETTER = 0.5  # an alternative norm_groups "fits clearly better" below this fraction of the configured error
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
MAX_SIDE = 128  # HR side of the check images (the U-Net is convolutional: smaller than its training size is fine)


@dataclass(frozen=True)
class SelfCheck:
    """The verdict: ε MSE per norm_groups tried, the configured one, and whether it passed."""

    norm_groups: int
    errors: dict[int, float]  # norm_groups -> ε MSE on the check images
    passed: bool
    best: int  # the norm_groups with the lowest error
    message: str
    wrong_groups: bool = False  # another norm_groups fits clearly better: the config is wrong

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (recorded in the imported checkpoint)."""
        return {
            "eps_mse": {str(k): round(v, 4) for k, v in self.errors.items()},
            "norm_groups": self.norm_groups,
            "best_norm_groups": self.best,
            "passed": self.passed,
            "wrong_norm_groups": self.wrong_groups,
            "max_error": MAX_ERROR,
            "inputs": f"scikit-image photos {', '.join(PHOTOS)}, noised at gamma {', '.join(map(str, GAMMAS))}",
            "message": self.message,
        }


def valid_groups(unet: UNetConfig) -> list[int]:
    """Every norm_groups that divides all the U-Net's channel counts (each one loads without error)."""
    channels = {unet.width * m for m in unet.mults} | {unet.width}
    return [g for g in (1, 2, 4, 8, 16, 32, 64) if all(c % g == 0 for c in channels)]


def check_images(scale: int, side: int, n: int = len(PHOTOS)) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_cond, y0) in [-1, 1]: HR photos at `side` px and their bicubic-upsampled protocol LR, (n,3,side,side)."""
    from PIL import Image
    from skimage import data

    side -= side % scale
    task = Task(name="check", scale=scale, hr_size=side, lr_size=side // scale)
    hr = torch.stack(
        [to_tensor(prepare_hr(Image.fromarray(getattr(data, p)()).convert("RGB"), task)) for p in PHOTOS[:n]]
    )
    x_cond = upsample(degrade(hr, scale), scale)
    return x_cond * 2 - 1, hr * 2 - 1


@torch.no_grad()
def eps_error(model: SR3Denoiser, x_cond: torch.Tensor, y0: torch.Tensor, seed: int = 0) -> float:
    """Mean squared ε error over the check images at each of GAMMAS (one fixed noise draw)."""
    g = torch.Generator().manual_seed(seed)
    errs = []
    for gamma in GAMMAS:
        eps = torch.randn(y0.shape, generator=g)
        gam = torch.full((y0.shape[0],), gamma, dtype=torch.float64)
        # ỹ = √γ·y0 + √(1−γ)·ε (the forward process at noise level γ)
        y_t = gamma**0.5 * y0 + (1 - gamma) ** 0.5 * eps
        errs.append(float(((model.eps(x_cond, y_t, gam) - eps) ** 2).mean()))
    return sum(errs) / len(errs)


def self_check(ck: Checkpoint, max_side: int = MAX_SIDE, try_others: bool = True) -> SelfCheck:
    """Measure the imported denoiser's ε error with its norm_groups and (if `try_others`) every other valid one."""
    cfg = sr3_config_from_dict(ck.config)
    side = min(cfg.unet.image_size, max_side)
    x_cond, y0 = check_images(cfg.scale, max(side, cfg.scale * 8))
    groups = valid_groups(cfg.unet) if try_others else [cfg.unet.groups]
    errors: dict[int, float] = {}
    for g in groups:
        trial = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, groups=g))
        model = SR3Denoiser(trial)
        model.load_state_dict(ck.state_dict)
        errors[g] = eps_error(model.eval(), x_cond, y0)
    mine = errors[cfg.unet.groups]
    best = min(errors, key=errors.__getitem__)
    wrong_groups = best != cfg.unet.groups and errors[best] < MAX_ERROR and errors[best] < BETTER * mine
    if wrong_groups:
        passed = False
        message = (
            f"norm_groups {cfg.unet.groups} predicts eps with error {mine:.3f} but norm_groups {best} gives "
            f"{errors[best]:.3f}: the config's norm_groups is most likely wrong (set model.unet.norm_groups to {best})"
        )
    elif mine >= MAX_ERROR:
        passed = False
        message = (
            f"eps error {mine:.3f} on natural photos (a trained model stays well below {MAX_ERROR}; predicting 0 "
            "scores 1) and no other norm_groups does clearly better: an untrained checkpoint, or a config value "
            "the weights cannot confirm (image_size, schedule) is wrong"
        )
    else:
        passed = True
        message = f"eps error {mine:.3f} on natural photos with norm_groups {cfg.unet.groups} (below {MAX_ERROR})"
    return SelfCheck(cfg.unet.groups, errors, passed, best, message, wrong_groups)
