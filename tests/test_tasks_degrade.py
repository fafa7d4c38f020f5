"""Tasks, the one degradation, HR preparation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evalsuite.degrade import (
    TooSmallError,
    backproject,
    central_crop_box,
    degrade,
    prepare_hr,
    quantize,
    to_image,
    to_tensor,
    upsample,
)
from evalsuite.tasks import PAPER_TASKS, resolve_task


def test_paper_tasks_sizes_and_scales():
    for name, (lr, hr) in {
        "faces-16-128": (16, 128),
        "faces-64-256": (64, 256),
        "faces-64-512": (64, 512),
        "faces-256-1024": (256, 1024),
        "imagenet-64-256": (64, 256),
    }.items():
        t = PAPER_TASKS[name]
        assert (t.lr_size, t.hr_size, t.scale) == (lr, hr, hr // lr)


def test_resolve_task_errors_and_custom_scale():
    assert resolve_task(scale=3).scale == 3 and not resolve_task(scale=3).fixed_size
    assert resolve_task("x2").scale == 2
    with pytest.raises(ValueError, match="unknown task"):
        resolve_task("faces-1-2")
    with pytest.raises(ValueError, match="contradicts"):
        resolve_task("faces-16-128", 4)
    with pytest.raises(ValueError):
        resolve_task(None, None)


def test_degrade_is_antialiased_bicubic():
    # White noise: the anti-aliased kernel (widened by the scale) averages ~16x more pixels than plain
    # bicubic sampling, so the LR noise is several times weaker; plain bicubic would alias it through.
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    lr = degrade(x, 4)
    assert lr.shape == (1, 3, 64, 64)
    plain = torch.nn.functional.interpolate(x, size=(64, 64), mode="bicubic", antialias=False)
    assert lr.std() < 0.08 and plain.std() > 0.15
    assert abs(lr.mean() - x.mean()) < 0.01


def test_degrade_matches_pil_bicubic_reduce():
    # PIL's BICUBIC resize is anti-aliased bicubic: the same kernel (a=-0.5) widened by the scale.
    rng = np.random.default_rng(1)
    arr = (rng.random((48, 40)) * 255).astype(np.float32)
    ours = degrade(torch.from_numpy(arr / 255.0)[None, None].repeat(1, 3, 1, 1).double(), 4)[0, 0].numpy()
    pil = np.asarray(Image.fromarray(arr, "F").resize((10, 12), Image.BICUBIC)) / 255.0
    assert np.abs(ours[2:-2, 2:-2] - np.clip(pil, 0, 1)[2:-2, 2:-2]).max() < 0.02


def test_degrade_rejects_non_multiple():
    with pytest.raises(ValueError, match="multiple"):
        degrade(torch.rand(1, 3, 30, 32), 4)


def test_upsample_and_quantize():
    lr = torch.rand(2, 3, 8, 6)
    up = upsample(lr, 4)
    assert up.shape == (2, 3, 32, 24) and up.min() >= 0 and up.max() <= 1
    q = quantize(torch.tensor([0.0, 0.5, 1.0, 1.3, -0.1]))
    assert torch.equal(q * 255, torch.tensor([0.0, 128.0, 255.0, 255.0, 0.0]))


@pytest.mark.parametrize("scale", [2, 4])
def test_backproject_converges_to_an_upsampling_whose_degradation_is_the_lr(scale):
    # Iterative back-projection: 0 iterations is bicubic (unclamped); every iteration shrinks the LR error of
    # the estimate; on white-noise LR (the slowest case: most energy near the LR Nyquist) 10 iterations cut
    # bicubic's worst LR error (~44 grey levels) over 50-fold.
    g = torch.Generator().manual_seed(0)
    lr = 0.2 + 0.6 * torch.rand(2, 3, 8, 8, generator=g)
    torch.testing.assert_close(backproject(lr, scale, 0).clamp(0, 1), upsample(lr, scale), atol=1e-6, rtol=0)
    errors = [float((degrade(backproject(lr, scale, n), scale) - lr).abs().max()) for n in range(11)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[0] > 20 / 255 and errors[10] < errors[0] / 50
    assert backproject(lr, scale, 3).shape == (2, 3, 8 * scale, 8 * scale)


def test_prepare_hr_fixed_task_central_crop_then_area():
    task = PAPER_TASKS["imagenet-64-256"]
    # 600x300: the central 300x300 square (columns 150..449), then area-resized to 256.
    arr = np.zeros((300, 600, 3), np.uint8)
    arr[:, 150:450] = 200
    hr = prepare_hr(Image.fromarray(arr), task)
    assert hr.size == (256, 256)
    assert np.asarray(hr).min() == 200  # nothing outside the central crop leaked in
    assert central_crop_box(600, 300) == (150, 0, 450, 300)
    # Area resampling equals a box average: a 512 image of 2x2 blocks resizes to the block means.
    blocks = np.kron(np.arange(256 * 256).reshape(256, 256) % 251, np.ones((2, 2))).astype(np.uint8)
    big = Image.fromarray(np.stack([blocks] * 3, -1))
    assert np.array_equal(
        np.asarray(prepare_hr(big, task))[..., 0], np.arange(256 * 256).reshape(256, 256) % 251
    )


def test_prepare_hr_too_small_and_scale_crop():
    with pytest.raises(TooSmallError, match="shorter side"):
        prepare_hr(Image.new("RGB", (300, 200)), PAPER_TASKS["imagenet-64-256"])
    out = prepare_hr(Image.new("RGB", (103, 50)), resolve_task(scale=4))
    assert out.size == (100, 48)


def test_tensor_image_roundtrip():
    img = Image.fromarray((np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8))
    assert np.array_equal(np.asarray(to_image(to_tensor(img))), np.asarray(img))
