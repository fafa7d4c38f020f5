"""PSNR, SSIM and consistency against independent references, on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from evalsuite.bootstrap import bootstrap_ci
from evalsuite.degrade import degrade, quantize, to_tensor, upsample
from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.pixel import PSNR, SSIM, Consistency, Detail, DetailFidelity


@pytest.fixture(scope="module")
def pairs(photos_dir):
    """(SR, HR) pairs: HR real photos cropped to 128x96, SR = bicubic from their 4x LR, 8-bit."""
    hrs = []
    for p in sorted(photos_dir.glob("*.png")):
        img = Image.open(p).convert("RGB").crop((0, 0, 128, 96))
        hrs.append(to_tensor(img))
    hr = torch.stack(hrs)
    lr = quantize(degrade(hr, 4))
    sr = quantize(upsample(lr, 4))
    return sr, hr, lr


def _np(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().numpy()


def y_reference(img: np.ndarray) -> np.ndarray:
    """BasicSR's rgb2ycbcr(y_only=True) on [0,1] RGB, written out: Y in [16,235]/255."""
    return (np.dot(img, [65.481, 128.553, 24.966]) + 16.0) / 255.0


def test_psnr_ssim_match_scikit_image_rgb(pairs):
    sr, hr, lr = pairs
    ctx = MetricContext(torch.device("cpu"), 4)
    psnr = PSNR(ctx).update(sr, hr, lr, ["a"] * len(sr))["psnr"]
    ssim = SSIM(ctx).update(sr, hr, lr, ["a"] * len(sr))["ssim"]
    for k in range(len(sr)):
        a, b = _np(sr[k]), _np(hr[k])
        ref_psnr = sk_psnr(b, a, data_range=1.0)
        ref_ssim = sk_ssim(
            b,
            a,
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert abs(float(psnr[k]) - ref_psnr) < 1e-4
        assert abs(float(ssim[k]) - ref_ssim) < 1e-4


def test_psnr_ssim_y_channel_and_crop_border(pairs):
    sr, hr, lr = pairs
    ctx = MetricContext(torch.device("cpu"), 4, y_channel=True, crop_border=4)
    psnr = PSNR(ctx).update(sr, hr, lr, ["a"] * len(sr))["psnr"]
    ssim = SSIM(ctx).update(sr, hr, lr, ["a"] * len(sr))["ssim"]
    for k in range(len(sr)):
        a, b = y_reference(_np(sr[k]))[4:-4, 4:-4], y_reference(_np(hr[k]))[4:-4, 4:-4]
        assert abs(float(psnr[k]) - sk_psnr(b, a, data_range=1.0)) < 1e-4
        ref = sk_ssim(b, a, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(float(ssim[k]) - ref) < 1e-4
    # The Y channel is not the RGB mean: the two conventions give different numbers.
    rgb = PSNR(MetricContext(torch.device("cpu"), 4)).update(sr, hr, lr, ["a"] * len(sr))["psnr"]
    assert not torch.allclose(rgb, psnr)


def test_consistency_is_mse_of_degraded_output_times_1e5(pairs):
    sr, hr, lr = pairs
    c = Consistency(MetricContext(torch.device("cpu"), 4)).update(sr, hr, lr, ["a"] * len(sr))["consistency"]
    for k in range(len(sr)):
        down = degrade(sr[k : k + 1].double(), 4)[0]
        ref = float(((down - lr[k].double()) ** 2).mean()) * 1e5
        assert abs(float(c[k]) - ref) < 1e-4 * max(1.0, ref)
    # The HR image itself is consistent up to the LR's 8-bit rounding only.
    c_hr = Consistency(MetricContext(torch.device("cpu"), 4)).update(hr, hr, lr, ["a"] * len(sr))["consistency"]
    assert float(c_hr.max()) < (0.5 / 255) ** 2 * 1e5 + 1e-6
    assert float(c.mean()) > float(c_hr.mean())


def _detail_reference(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    # Written out with numpy: Hann-windowed luminance spectra, energy outside the LR Nyquist square, in dB.
    def energy(img: np.ndarray) -> float:
        lum = img.mean(axis=2)
        lum = (lum - lum.mean()) * np.outer(np.hanning(lum.shape[0]), np.hanning(lum.shape[1]))
        power = np.abs(np.fft.fft2(lum)) ** 2
        fy, fx = np.meshgrid(np.fft.fftfreq(lum.shape[0]), np.fft.fftfreq(lum.shape[1]), indexing="ij")
        return float(power[(np.abs(fy) > 0.5 / scale) | (np.abs(fx) > 0.5 / scale)].sum())

    return 10 * np.log10(energy(sr) / energy(hr))


def test_detail_matches_a_direct_computation_and_orders_blur_and_noise(pairs):
    sr, hr, lr = pairs
    ctx = MetricContext(torch.device("cpu"), 4)
    d = Detail(ctx).update(sr, hr, lr, ["a"] * len(sr))["detail"]
    for k in range(len(sr)):
        assert abs(float(d[k]) - _detail_reference(_np(sr[k]), _np(hr[k]), 4)) < 1e-3
    # The truth scores 0 dB; bicubic from 4x LR is far below it; HR plus noise is above it.
    assert float(Detail(ctx).update(hr, hr, lr, ["a"] * len(sr))["detail"].abs().max()) < 1e-4
    assert float(d.max()) < -6
    noisy = (hr + 0.1 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(Detail(ctx).update(noisy, hr, lr, ["a"] * len(sr))["detail"].min()) > 0
    # More blur, less detail, image by image.
    blur1 = upsample(degrade(hr, 2), 2)
    d1 = Detail(ctx).update(blur1, hr, lr, ["a"] * len(sr))["detail"]
    assert bool((d1 > d).all()) and bool((d1 < 0).all())
    # A flat HR image has no reference detail: NaN, not a huge number.
    flat = torch.full_like(hr[:1], 0.5)
    assert bool(torch.isnan(Detail(ctx).update(sr[:1], flat, lr[:1], ["a"])["detail"]).all())


def _fidelity_reference(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """The index in pixel space: both luminances high-passed above LR Nyquist (full FFT), then 2<a,b>/(|a|²+|b|²)."""

    def band(img: np.ndarray) -> np.ndarray:
        lum = img.mean(axis=2)
        lum = (lum - lum.mean()) * np.outer(np.hanning(lum.shape[0]), np.hanning(lum.shape[1]))
        fy, fx = np.meshgrid(np.fft.fftfreq(lum.shape[0]), np.fft.fftfreq(lum.shape[1]), indexing="ij")
        keep = (np.abs(fy) > 0.5 / scale) | (np.abs(fx) > 0.5 / scale)
        return np.fft.ifft2(np.fft.fft2(lum) * keep).real

    a, b = band(sr), band(hr)
    return float(2 * (a * b).sum() / ((a * a).sum() + (b * b).sum()))


def test_detail_fidelity_scores_true_detail_high_and_noise_shift_blur_low(pairs):
    sr, hr, lr = pairs
    ctx = MetricContext(torch.device("cpu"), 4)

    def fid(x: torch.Tensor, ref: torch.Tensor = hr) -> torch.Tensor:
        return DetailFidelity(ctx).update(x, ref, lr[: len(x)], ["a"] * len(x))["detail_fidelity"]

    g = torch.Generator().manual_seed(0)
    near = (hr + 0.01 * torch.randn(hr.shape, generator=g)).clamp(0, 1)  # the true detail, lightly perturbed
    for k in range(len(hr)):
        assert abs(float(fid(near)[k]) - _fidelity_reference(_np(near[k]), _np(hr[k]), 4)) < 1e-4
    assert float(fid(hr).min()) > 0.9999  # the truth itself
    assert float(fid(near).min()) > 0.8
    # Invented grain on bicubic: plenty of fine detail (detail within a few dB of the truth), none of it right.
    grain = (sr + 0.06 * torch.randn(sr.shape, generator=g)).clamp(0, 1)
    assert float(Detail(ctx).update(grain, hr, lr, ["a"] * len(sr))["detail"].min()) > -8
    assert float(fid(grain).abs().max()) < 0.2
    # The right texture in the wrong place (shifted 3 px), and blur (bicubic): low.
    assert float(fid(torch.roll(hr, shifts=3, dims=-1)).max()) < 0.35
    assert float(fid(sr).max()) < 0.35
    assert bool((fid(near) > fid(sr)).all())
    # Milder blur keeps more of the true detail: 2x blur scores between bicubic-from-4x and the truth.
    blur2 = fid(upsample(degrade(hr, 2), 2))
    assert bool((blur2 > fid(sr) + 0.4).all()) and bool((blur2 < fid(near)).all())
    flat = torch.full_like(hr[:1], 0.5)
    assert bool(torch.isnan(fid(sr[:1], flat)).all())


def test_bootstrap_ci_brackets_the_mean_and_is_seeded(rng):
    v = rng.normal(10.0, 2.0, size=200)
    lo, hi = bootstrap_ci(v, 2000, seed=3)
    assert lo < v.mean() < hi
    # Width close to the normal-theory 95% interval 2*1.96*sd/sqrt(n).
    assert abs((hi - lo) - 2 * 1.96 * v.std(ddof=1) / np.sqrt(v.size)) < 0.1
    assert bootstrap_ci(v, 2000, seed=3) == (lo, hi)
    assert bootstrap_ci(v, 2000, seed=4) != (lo, hi)
    assert bootstrap_ci(np.array([1.0, np.nan, 3.0]), 100, 0)[0] >= 1.0


@pytest.mark.parametrize("size", [(11, 11), (61, 97), (96, 128)])
def test_ssim_matches_scikit_image_on_odd_and_small_sizes(size, rng):
    h, w = size
    hr = torch.from_numpy(rng.random((2, 3, h, w))).float()
    sr = (hr + 0.1 * torch.from_numpy(rng.standard_normal((2, 3, h, w))).float()).clamp(0, 1)
    ssim = SSIM(MetricContext(torch.device("cpu"), 1)).update(sr, hr, hr, ["a", "b"])["ssim"]
    for k in range(2):
        ref = sk_ssim(
            _np(hr[k]),
            _np(sr[k]),
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert abs(float(ssim[k]) - ref) < 1e-4


@pytest.mark.parametrize("strip", [1, 700, 1 << 17])
def test_ssim_in_strips_matches_scikit_image(strip, rng, monkeypatch):
    """Large images are scored in strips of rows (each reading its neighbours' window rows): any strip height,
    an uneven last strip included, gives scikit-image's mean over the whole valid region."""
    from evalsuite.metrics import pixel

    monkeypatch.setattr(pixel, "SSIM_STRIP_PIXELS", strip)  # 1: one output row per strip; 700: 9 rows
    hr = torch.from_numpy(rng.random((1, 3, 103, 87))).float()
    sr = (hr + 0.1 * torch.from_numpy(rng.standard_normal((1, 3, 103, 87))).float()).clamp(0, 1)
    ssim = SSIM(MetricContext(torch.device("cpu"), 1)).update(sr, hr, hr, ["a"])["ssim"]
    ref = sk_ssim(_np(hr[0]), _np(sr[0]), data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                  use_sample_covariance=False)
    assert abs(float(ssim[0]) - ref) < 1e-5


def test_ms_ssim_is_torchmetrics_on_the_ssim_conventions_and_fails_small_images(photos_dir):
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    from evalsuite.metrics.base import build_metric, metric_info
    from evalsuite.metrics.pixel import prepare_pair

    # Real photos at 200x184 (above MS-SSIM's 176 px after a 4 px crop), SR = bicubic from 4x LR.
    paths = sorted(photos_dir.glob("*.png"))
    hr = torch.stack([to_tensor(Image.open(p).convert("RGB").resize((200, 184))) for p in paths])
    sr = quantize(upsample(quantize(degrade(hr, 4)), 4))
    ctx = MetricContext(torch.device("cpu"), 4, y_channel=True, crop_border=4)
    got = build_metric("ms_ssim", ctx).update(sr, hr, hr, ["a"] * len(hr))["ms_ssim"]
    a, b = prepare_pair(sr, hr, True, 4)
    want = torch.stack([tm_ms_ssim(a[k : k + 1], b[k : k + 1], data_range=1.0) for k in range(len(a))])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert ((got > 0.5) & (got < 1)).all()
    # Same images scored as RGB: a different number, so the Y convention is really applied.
    rgb = build_metric("ms_ssim", MetricContext(torch.device("cpu"), 4, crop_border=4)).update(sr, hr, hr, ["a"] * 4)
    assert not torch.allclose(rgb["ms_ssim"], got)
    # The declared minimum side is exact: one pixel less is a clear per-image error.
    side = metric_info("ms_ssim").min_size(ctx)
    assert side == 176 + 2 * 4
    ok = build_metric("ms_ssim", ctx).update(sr[:1, :, :side, :side], hr[:1, :, :side, :side], hr[:1], ["a"])
    assert ok["ms_ssim"].shape == (1,)
    with pytest.raises(ValueError, match="MS-SSIM needs images of at least 176x176"):
        build_metric("ms_ssim", ctx).update(sr[:1, :, : side - 1, :side], hr[:1, :, : side - 1, :side], hr[:1], ["a"])


@pytest.mark.parametrize(("h", "w", "c"), [(176, 176, 1), (177, 203, 3), (351, 180, 3), (420, 380, 1)])
def test_ms_ssim_equals_torchmetrics_on_odd_sizes_channels_and_strips(h, w, c, monkeypatch):
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    import evalsuite.metrics.pixel as pixel

    # Small strips, so an image of a few hundred pixels is computed in several of them, as a DIV2K image is.
    monkeypatch.setattr(pixel, "SSIM_STRIP_PIXELS", 4096)
    g = torch.Generator().manual_seed(h * w + c)
    hr = torch.rand(3, c, h, w, generator=g)
    # Noisy, blurred and anticorrelated SR images: every term of the product, and relu's zero.
    sr = torch.cat([(hr[:1] + 0.1 * torch.randn(hr[:1].shape, generator=g)).clamp(0, 1),
                    torch.nn.functional.avg_pool2d(hr[1:2], 3, 1, 1), 1 - hr[2:3]])
    got = pixel.ms_ssim_per_image(sr, hr)
    want = tm_ms_ssim(sr, hr, data_range=1.0, reduction="none")
    # float32 rounding in torchmetrics' conv2d and means (ours sums in float64): a few 1e-6 on noise images.
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert got[2] == 0 and 0.5 < got[0] < 1 and 0.5 < got[1] < 1


def test_ssim_min_size_is_the_window_plus_the_crop_border():
    from evalsuite.metrics.base import build_metric, metric_info

    ctx = MetricContext(torch.device("cpu"), 4, crop_border=3)
    side = metric_info("ssim").min_size(ctx)
    assert side == 11 + 6
    x = torch.rand(1, 3, side, side)
    assert build_metric("ssim", ctx).update(x, x, x, ["a"])["ssim"].item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="SSIM needs images of at least 11x11"):
        build_metric("ssim", ctx).update(x[..., 1:, 1:], x[..., 1:, 1:], x, ["a"])
