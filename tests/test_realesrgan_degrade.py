"""`--degradation realesrgan`: BasicSR's own functions on the same random draws give the same LR; per-image seeds."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evalsuite.realesrgan_degrade import (
    X4PLUS,
    Draws,
    degrade_image,
    filter2d,
    image_seed,
    jpeg,
    mixed_kernel,
    realesrgan_degrade,
    sinc_kernel,
    usm_sharpen,
)

basicsr = pytest.importorskip("basicsr", reason="basicsr-fixed is the reference (make setup installs it)")


def _photo(side: int = 96) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    from evalsuite.degrade import to_tensor

    return to_tensor(Image.fromarray(data.astronaut()).resize((side, side), Image.BOX))[None]


def _basicsr_pipeline(gt: torch.Tensor, scale: int, seed: int, jpeger) -> torch.Tensor:
    """RealESRGANDataset.__getitem__ (kernels) + RealESRGANModel.feed_data (the rest), x4plus options, as written
    in BasicSR/Real-ESRGAN, calling BasicSR's functions with the global random streams seeded by `seed`."""
    from basicsr.data.degradations import (
        circular_lowpass_kernel,
        random_add_gaussian_noise_pt,
        random_add_poisson_noise_pt,
        random_mixed_kernels,
    )
    from basicsr.utils.img_process_util import USMSharp, filter2D

    o = X4PLUS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    kernel_range = [2 * v + 1 for v in range(3, 11)]

    def kernel(sinc_prob, blur_sigma, betag, betap):
        kernel_size = random.choice(kernel_range)
        if np.random.uniform() < sinc_prob:
            omega_c = np.random.uniform(np.pi / 3, np.pi) if kernel_size < 13 else np.random.uniform(np.pi / 5, np.pi)
            k = circular_lowpass_kernel(omega_c, kernel_size, pad_to=False)
        else:
            k = random_mixed_kernels(list(o.kernel_list), list(o.kernel_prob), kernel_size, blur_sigma, blur_sigma,
                                     [-math.pi, math.pi], betag, betap, noise_range=None)
        pad_size = (21 - kernel_size) // 2
        return torch.FloatTensor(np.pad(k, ((pad_size, pad_size), (pad_size, pad_size))))

    kernel1 = kernel(o.sinc_prob, o.blur_sigma, o.betag_range, o.betap_range)
    kernel2 = kernel(o.sinc_prob2, o.blur_sigma2, o.betag_range2, o.betap_range2)
    if np.random.uniform() < o.final_sinc_prob:
        kernel_size = random.choice(kernel_range)
        omega_c = np.random.uniform(np.pi / 3, np.pi)
        sinc = torch.FloatTensor(circular_lowpass_kernel(omega_c, kernel_size, pad_to=21))
    else:
        sinc = torch.zeros(21, 21)
        sinc[10, 10] = 1
    ori_h, ori_w = gt.shape[2:4]
    out = filter2D(USMSharp()(gt), kernel1[None])
    updown_type = random.choices(["up", "down", "keep"], o.resize_prob)[0]
    s = np.random.uniform(1, o.resize_range[1]) if updown_type == "up" else (
        np.random.uniform(o.resize_range[0], 1) if updown_type == "down" else 1)
    out = F.interpolate(out, scale_factor=s, mode=random.choice(["area", "bilinear", "bicubic"]))
    if np.random.uniform() < o.gaussian_noise_prob:
        out = random_add_gaussian_noise_pt(out, sigma_range=o.noise_range, clip=True, rounds=False,
                                           gray_prob=o.gray_noise_prob)
    else:
        out = random_add_poisson_noise_pt(out, scale_range=o.poisson_scale_range, gray_prob=o.gray_noise_prob,
                                          clip=True, rounds=False)
    jpeg_p = out.new_zeros(out.size(0)).uniform_(*o.jpeg_range)
    out = jpeger(torch.clamp(out, 0, 1), quality=jpeg_p)
    if np.random.uniform() < o.second_blur_prob:
        out = filter2D(out, kernel2[None])
    updown_type = random.choices(["up", "down", "keep"], o.resize_prob2)[0]
    s = np.random.uniform(1, o.resize_range2[1]) if updown_type == "up" else (
        np.random.uniform(o.resize_range2[0], 1) if updown_type == "down" else 1)
    mode = random.choice(["area", "bilinear", "bicubic"])
    out = F.interpolate(out, size=(int(ori_h / scale * s), int(ori_w / scale * s)), mode=mode)
    if np.random.uniform() < o.gaussian_noise_prob2:
        out = random_add_gaussian_noise_pt(out, sigma_range=o.noise_range2, clip=True, rounds=False,
                                           gray_prob=o.gray_noise_prob2)
    else:
        out = random_add_poisson_noise_pt(out, scale_range=o.poisson_scale_range2, gray_prob=o.gray_noise_prob2,
                                          clip=True, rounds=False)
    if np.random.uniform() < 0.5:
        mode = random.choice(["area", "bilinear", "bicubic"])
        out = filter2D(F.interpolate(out, size=(ori_h // scale, ori_w // scale), mode=mode), sinc[None])
        jpeg_p = out.new_zeros(out.size(0)).uniform_(*o.jpeg_range2)
        out = jpeger(torch.clamp(out, 0, 1), quality=jpeg_p)
    else:
        jpeg_p = out.new_zeros(out.size(0)).uniform_(*o.jpeg_range2)
        out = jpeger(torch.clamp(out, 0, 1), quality=jpeg_p)
        mode = random.choice(["area", "bilinear", "bicubic"])
        out = filter2D(F.interpolate(out, size=(ori_h // scale, ori_w // scale), mode=mode), sinc[None])
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


@pytest.fixture(scope="module")
def diffjpeg():
    from basicsr.utils.diffjpeg import DiffJPEG

    jpeger = DiffJPEG(differentiable=False)
    # DiffJPEG overwrites the quality tensor it is given with the factor: hand it a copy.
    return lambda x, quality: jpeger(x, quality=quality.clone())


@pytest.mark.parametrize("seed", range(6))
def test_pipeline_equals_basicsr_on_the_same_draws(seed: int, diffjpeg) -> None:
    hr = _photo(96)
    ref = _basicsr_pipeline(hr.clone(), 4, seed, diffjpeg)
    # Ours, every stage and draw our own (its JPEG included).
    ours = realesrgan_degrade(hr.clone(), 4, Draws.seeded(seed))
    assert ours.shape == ref.shape == (1, 3, 24, 24)
    # Float order in convolutions and the DCT may flip a rounding by one level, on few pixels.
    diff = (ours - ref).detach().abs()
    assert float(diff.max()) <= 1 / 255 + 1e-6 and float((diff > 0).float().mean()) < 0.01
    assert float((ours - F.interpolate(hr, size=(24, 24), mode="area")).abs().mean()) > 0.01  # it does degrade


def test_kernels_and_usm_equal_basicsr() -> None:
    from basicsr.data.degradations import circular_lowpass_kernel, random_mixed_kernels
    from basicsr.utils.img_process_util import USMSharp, filter2D

    for seed in range(30):
        random.seed(seed)
        np.random.seed(seed)
        ref = random_mixed_kernels(list(X4PLUS.kernel_list), list(X4PLUS.kernel_prob), 15, (0.2, 3), (0.2, 3),
                                   [-math.pi, math.pi], (0.5, 4), (1, 2), noise_range=None)
        d = Draws.seeded(seed)
        ours = mixed_kernel(d, X4PLUS.kernel_list, X4PLUS.kernel_prob, 15, (0.2, 3), (0.5, 4), (1, 2))
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sinc_kernel(1.3, 13, 21), circular_lowpass_kernel(1.3, 13, pad_to=21), atol=1e-12)
    x = _photo(64)
    k = torch.FloatTensor(sinc_kernel(1.0, 11))
    torch.testing.assert_close(filter2d(x, k), filter2D(x, k[None]))
    torch.testing.assert_close(usm_sharpen(x), USMSharp()(x), rtol=1e-5, atol=1e-6)


def test_jpeg_equals_diffjpeg(diffjpeg) -> None:
    x = torch.cat([_photo(40), torch.rand(1, 3, 40, 40)])  # sizes not a multiple of 16: padded and cropped back
    q = torch.tensor([30.0, 77.5])
    ref = diffjpeg(x, q).detach()
    ours = jpeg(x, q)
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-3)  # float order of the DCT: rare one-step flips
    assert float((ours - ref).abs().mean()) < 1e-4
    assert float((ours - x).abs().mean()) > 0.005  # it does compress


def test_per_image_seed_is_stable_and_distinct() -> None:
    hr = _photo(64)
    a, b = degrade_image(hr, 4, "img_001"), degrade_image(hr, 4, "img_001")
    assert torch.equal(a, b) and a.shape == (1, 3, 16, 16)
    assert not torch.equal(a, degrade_image(hr, 4, "img_002"))
    # A stable hash, not Python's salted hash(): the same number in every process.
    assert image_seed("img_001") == 1500125659



def _png(path) -> torch.Tensor:
    from evalsuite.datasets import load_rgb
    from evalsuite.degrade import to_tensor

    return to_tensor(load_rgb(path))[None]


def test_benchmark_with_realesrgan_lr_names_it_everywhere(photos_dir, tmp_path) -> None:
    import json

    import pandas as pd

    from evalsuite.cli import main

    out = tmp_path / "run"
    args = ["run", "benchmark", "--data", str(photos_dir), "--scale", "4", "--methods", "bicubic", "--metrics",
            "psnr,consistency", "--out", str(out), "--workers", "1", "--limit", "1"]
    assert main([*args, "--degradation", "realesrgan"]) == 0
    ids = sorted(p.stem for p in (out / "lr").glob("*.png"))
    assert len(ids) == 1
    # lr/ holds exactly the pipeline's output for the prepared HR, seeded by the image id.
    lr = {i: _png(out / "lr" / f"{i}.png") for i in ids}
    for i in ids:
        torch.testing.assert_close(lr[i], degrade_image(_png(out / "hr" / f"{i}.png"), 4, i), rtol=0, atol=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["degradation"] == "realesrgan" and "Real-ESRGAN" in manifest["conventions"]["lr"]
    assert "not the SR3 paper's consistency" in manifest["conventions"]["consistency"]
    notes = pd.read_csv(out / "summary.csv", keep_default_na=False)["notes"].str.cat()
    assert "degradation: LR made by realesrgan" in notes and "not the SR3 paper's consistency" in notes
    assert "Real-ESRGAN" in (out / "report.html").read_text()
    # A rerun (another process would do the same: the seed is a stable hash) reuses identical LR.
    assert main([*args, "--degradation", "realesrgan", "--no-report"]) == 0
    for i in ids:
        assert torch.equal(_png(out / "lr" / f"{i}.png"), lr[i])
    # Switching the degradation remakes the LR: bicubic now, and no realesrgan note.
    assert main([*args, "--no-report"]) == 0
    for i in ids:
        assert not torch.equal(_png(out / "lr" / f"{i}.png"), lr[i])
    assert "realesrgan" not in pd.read_csv(out / "summary.csv", keep_default_na=False)["notes"].str.cat()
    assert json.loads((out / "manifest.json").read_text())["degradation"] == "bicubic"


def test_degradation_is_refused_with_given_lr(tmp_path) -> None:
    from evalsuite.spec import BenchmarkSpec

    with pytest.raises(ValueError, match="cannot apply to given LR"):
        BenchmarkSpec(lr=str(tmp_path), degradation="realesrgan")
    with pytest.raises(ValueError, match="bicubic or realesrgan"):
        BenchmarkSpec(degradation="bsrgan")
