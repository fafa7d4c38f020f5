"""Pixel metrics: PSNR and SSIM (torchmetrics) on RGB or BasicSR's Y channel, and SR3's consistency."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

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
    sr, hr = sr.float(), hr.float()
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


def gaussian_kernel(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """Normalized 1-D Gaussian taps (2*radius+1), float64."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _filter_last_dim_valid(x: torch.Tensor, taps: torch.Tensor, block: int = 32) -> torch.Tensor:
    """Correlate the last dim with `taps`, 'valid' region only, as blocked banded matmuls (BLAS-fast on CPU)."""
    n, w = taps.numel(), x.shape[-1]
    w_out = w - n + 1
    nb = -(-w_out // block)
    # Each block of `block` outputs reads block + n - 1 inputs; pad so every block is full.
    x = torch.nn.functional.pad(x, (0, nb * block + n - 1 - w))
    lead = x.shape[:-1]
    windows = x.unfold(-1, block + n - 1, block).reshape(-1, block + n - 1)  # (rows * nb, block + n - 1)
    band = torch.zeros(block + n - 1, block, dtype=x.dtype, device=x.device)
    for j in range(block):
        band[j : j + n, j] = taps.to(x.dtype)
    # One large 2-D GEMM instead of a batched one over a strided view.
    return (windows @ band).reshape(*lead, nb * block)[..., :w_out]


def ssim_per_image(sr: torch.Tensor, hr: torch.Tensor, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """Mean SSIM per image (B,), Gaussian window, over the positions whose window lies inside the image."""
    c1, c2 = 0.01**2, 0.03**2  # K1, K2 with data range 1
    taps = gaussian_kernel(sigma, radius)

    def blur(z: torch.Tensor) -> torch.Tensor:
        # Separable Gaussian: along width, then along height (valid region). The result stays
        # transposed (..., W', H'): SSIM only needs its mean, so no copy back.
        z = _filter_last_dim_valid(z, taps)
        return _filter_last_dim_valid(z.transpose(-1, -2).contiguous(), taps)

    b = sr.shape[0]
    # Local means, second moments and cross moment for all five maps in one pass.
    mu_x, mu_y, xx, yy, xy = blur(torch.cat([sr, hr, sr * sr, hr * hr, sr * hr])).split(b)
    mu_xy = mu_x * mu_y
    mu_x2, mu_y2 = mu_x.square_(), mu_y.square_()
    # SSIM map = (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)), in place.
    num = (2 * mu_xy + c1).mul_(2 * (xy - mu_xy) + c2)
    den = (mu_x2 + mu_y2 + c1).mul_(xx.add_(yy).sub_(mu_x2).sub_(mu_y2).add_(c2))
    return num.div_(den).mean(dim=(1, 2, 3))


class SSIM(_PairMetric):
    """Structural similarity: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, mean over channels.

    The convention of Wang et al.'s code, scikit-image and BasicSR: the mean over positions whose window
    lies inside the image. torchmetrics' SSIM also averages the reflect-padded border (up to ~0.01 off on
    real photos) and runs a full 2-D kernel in float64, several times slower than a per-image scipy loop
    on a CPU; this separable float32 version is checked against scikit-image to 1e-4 in the tests.
    """

    name = "ssim"

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if min(sr.shape[-2:]) < 11:
            raise ValueError(f"SSIM needs images of at least 11x11 px, got {tuple(sr.shape[-2:])}")
        # A few images at a time: the five blurred maps stay in cache instead of streaming through memory.
        return torch.cat([ssim_per_image(sr[i : i + 2], hr[i : i + 2]) for i in range(0, sr.shape[0], 2)])


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
        down = degrade(sr.float(), self.ctx.scale)
        mse = (down - lr.float()).pow(2).mean(dim=(1, 2, 3))
        return {"consistency": (mse * self.FACTOR).float()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: nothing at dataset level."""
        return {}
