"""Pixel metrics: PSNR and SSIM (torchmetrics) on RGB or BasicSR's Y channel, and SR3's consistency."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from evalsuite.degrade import degrade
from evalsuite.metrics.base import MetricContext, MetricValue


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,1,H,W) Y of ITU-R BT.601 (16..235 range) in [0,1], as BasicSR computes it."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def prepare_pair(
    sr: torch.Tensor, hr: torch.Tensor, y_channel: bool, crop_border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the SR-paper conventions: optional Y channel, then crop `crop_border` px from each side."""
    sr, hr = sr.double(), hr.double()  # float64: sums over large images stay exact to 1e-4
    if y_channel:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    if crop_border:
        c = crop_border
        sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
    return sr, hr


class _PairMetric:
    """Shared plumbing of PSNR and SSIM: per-image values, nothing at dataset level."""

    name = ""
    per_image = True

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx
        self.columns = (self.name,)

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image values (B,)."""
        a, b = prepare_pair(sr, hr, self.ctx.y_channel, self.ctx.crop_border)
        return {self.name: self._value(a, b).reshape(-1).float()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}


class PSNR(_PairMetric):
    """Peak signal-to-noise ratio in dB, data range 1."""

    name = "psnr"

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return peak_signal_noise_ratio(sr, hr, data_range=1.0, reduction="none", dim=(1, 2, 3))


class SSIM(_PairMetric):
    """Structural similarity: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, mean over channels.

    The mean is taken over the positions whose window lies inside the image (Wang et al.'s MATLAB code,
    scikit-image and BasicSR). torchmetrics' own mean also counts the reflect-padded border, which moves
    SSIM by up to ~0.01 on real photos, so its full SSIM map is cropped by the window radius first.
    """

    name = "ssim"
    RADIUS = 5  # (11 - 1) // 2 for sigma 1.5 (torchmetrics: int(3.5 * sigma + 0.5))

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        r = self.RADIUS
        if min(sr.shape[-2:]) <= 2 * r:
            raise ValueError(f"SSIM needs images larger than {2 * r + 1}px, got {tuple(sr.shape[-2:])}")
        _, ssim_map = structural_similarity_index_measure(
            sr, hr, data_range=1.0, reduction="none", return_full_image=True
        )
        return ssim_map[..., r:-r, r:-r].mean(dim=(1, 2, 3))


class Consistency:
    """SR3's consistency: MSE between degrade(SR) and the LR input on [0,1], reported x1e5."""

    name = "consistency"
    columns = ("consistency",)
    per_image = True
    FACTOR = 1e5

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image MSE x1e5 (B,)."""
        down = degrade(sr.double(), self.ctx.scale)
        mse = (down - lr.double()).pow(2).mean(dim=(1, 2, 3))
        return {"consistency": (mse * self.FACTOR).float()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: nothing at dataset level."""
        return {}
