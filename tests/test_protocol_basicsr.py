"""--protocol basicsr: our PSNR/SSIM equal BasicSR's published formulas (Y channel, border crop) on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evalsuite.degrade import degrade, quantize, to_tensor, upsample
from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.pixel import PSNR, SSIM
from evalsuite.spec import BenchmarkSpec


def y_basicsr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] from 8-bit RGB, as BasicSR's to_y_channel computes it (float64 here)."""
    x = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def psnr_basicsr(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """BasicSR's calculate_psnr with test_y_channel: crop the border, Y, 10 log10(255^2 / MSE)."""
    a, b = y_basicsr(sr[crop:-crop, crop:-crop]), y_basicsr(hr[crop:-crop, crop:-crop])
    return float(10.0 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def _gauss_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Correlation with the separable window outer(taps, taps), valid region only (filter2D then [5:-5, 5:-5])."""
    k = len(taps)
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=1) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=0) @ taps


def ssim_basicsr(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """BasicSR's calculate_ssim with test_y_channel: Gaussian window 11, sigma 1.5, C1=(0.01*255)^2, C2=(0.03*255)^2."""
    a, b = y_basicsr(sr[crop:-crop, crop:-crop]), y_basicsr(hr[crop:-crop, crop:-crop])
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = np.arange(11) - 5
    taps = np.exp(-(x**2) / (2 * 1.5**2))
    taps /= taps.sum()
    mu1, mu2 = _gauss_valid(a, taps), _gauss_valid(b, taps)
    s11 = _gauss_valid(a * a, taps) - mu1**2
    s22 = _gauss_valid(b * b, taps) - mu2**2
    s12 = _gauss_valid(a * b, taps) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_protocol_matches_the_published_formulas(scale: int) -> None:
    from skimage import data

    spec = BenchmarkSpec(protocol="basicsr").with_protocol(scale)
    assert (spec.y_channel, spec.crop_border) == (True, scale)
    ctx = MetricContext(device=torch.device("cpu"), scale=scale, y_channel=spec.y_channel, crop_border=spec.crop_border)
    plain = MetricContext(device=torch.device("cpu"), scale=scale)
    for name in ("astronaut", "coffee", "chelsea"):
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        side = 120 - 120 % scale
        hr = to_tensor(img.resize((side, side), Image.BICUBIC))[None]
        # SR = bicubic upsampling of our degradation, 8-bit as saved: a real, imperfect reconstruction.
        sr = quantize(upsample(quantize(degrade(hr, scale)), scale))
        sr_np = (sr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        hr_np = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ours_psnr = float(PSNR(ctx).update(sr, hr, hr, [name])["psnr"][0])
        ours_ssim = float(SSIM(ctx).update(sr, hr, hr, [name])["ssim"][0])
        assert ours_psnr == pytest.approx(psnr_basicsr(sr_np, hr_np, scale), abs=1e-4), name
        assert ours_ssim == pytest.approx(ssim_basicsr(sr_np, hr_np, scale), abs=1e-4), name
        # The protocol matters: RGB without the crop gives another number.
        assert abs(float(PSNR(plain).update(sr, hr, hr, [name])["psnr"][0]) - ours_psnr) > 0.05, name
