"""The CUDA paths no CPU run exercises: bf16 autocast, torch.compile, the GPU metric path, a bf16 training step.

Marked `gpu` (excluded by default; `pytest -m gpu`, run by benchmarks/gpu_check.sh on a GPU machine). Each test
compares the CUDA result with the CPU/fp32 one on the same random input. EVALSUITE_TEST_GPU_DEVICE=cpu runs them
on the CPU to check the tests themselves (the compile test then uses the aot_eager backend).
"""

from __future__ import annotations

import os

import pytest
import torch

from baselines.sr3.model import SR3Config, SR3Denoiser
from baselines.unet import preset

DEVICE = torch.device(os.environ.get("EVALSUITE_TEST_GPU_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 references in true fp32 (no TF32 matmuls or convolutions)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def small_sr3(seed: int = 0) -> SR3Denoiser:
    """A tiny SR3 denoiser on 32 px with random weights (fresh draw per seed)."""
    torch.manual_seed(seed)
    cfg = SR3Config(unet=preset("tiny", image_size=32), scale=4)
    return SR3Denoiser(cfg).eval().requires_grad_(False)


def test_bf16_autocast_forward_is_close_to_fp32():
    model = small_sr3().to(DEVICE)
    g = torch.Generator().manual_seed(1)
    x, y = (torch.randn(4, 3, 32, 32, generator=g).to(DEVICE) for _ in range(2))
    gamma = torch.rand(4, generator=g).to(DEVICE)
    ref = model(x, y, gamma)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        out = model(x, y, gamma)
    assert torch.isfinite(out).all()
    err = rel_err(out.float(), ref)
    assert err < 3e-2, f"bf16 forward differs from fp32 by {err:.2e}"
    assert err > 0, "autocast did not change the arithmetic: the bf16 path did not run"


def test_compiled_forward_equals_eager():
    model = small_sr3(2).to(DEVICE)
    backend = "inductor" if DEVICE.type == "cuda" else "aot_eager"
    compiled = torch.compile(model.net, backend=backend, dynamic=False)
    g = torch.Generator().manual_seed(3)
    x, y = (torch.randn(2, 3, 32, 32, generator=g).to(DEVICE) for _ in range(2))
    gamma = torch.rand(2, generator=g).to(DEVICE)
    ref = model(x, y, gamma)
    eager_net = model.net
    model.net = compiled
    try:
        out = model(x, y, gamma)
    finally:
        model.net = eager_net
    err = rel_err(out, ref)
    assert err < 1e-4, f"compiled forward differs from eager by {err:.2e}"


def test_pixel_metrics_on_the_gpu_equal_the_cpu():
    from evalsuite.degrade import degrade, quantize, upsample
    from evalsuite.metrics.base import MetricContext
    from evalsuite.metrics.pixel import PSNR, SSIM, Consistency

    g = torch.Generator().manual_seed(4)
    hr = quantize(torch.rand(3, 3, 64, 64, generator=g))
    lr = quantize(degrade(hr, 4))
    sr = quantize(upsample(lr, 4) + 0.02 * torch.randn(3, 3, 64, 64, generator=g)).clamp(0, 1)
    values = {}
    for device in (torch.device("cpu"), DEVICE):
        ctx = MetricContext(device, 4)
        out = {}
        for metric in (PSNR(ctx), SSIM(ctx), Consistency(ctx)):
            out.update(metric.update(sr.to(device), hr.to(device), lr.to(device), ["a", "b", "c"]))
        values[device.type if device.type == "cpu" else "dev"] = {k: v.double().cpu() for k, v in out.items()}
    dev = values.get("dev", values["cpu"])
    for name, ref in values["cpu"].items():
        assert torch.allclose(dev[name], ref, rtol=1e-4, atol=1e-4), f"{name}: {dev[name]} vs CPU {ref}"
    assert set(values["cpu"]) >= {"psnr", "ssim", "consistency"}


def test_bf16_training_steps_are_finite_and_update_fp32_weights():
    from baselines.sr3.recipe import SR3Options, SR3Recipe
    from baselines.train import Batch, Optimizers, optimizer_step
    from evalsuite.degrade import degrade

    torch.manual_seed(5)
    recipe = SR3Recipe(SR3Config(unet=preset("tiny", image_size=32), scale=4), SR3Options())
    net = recipe.build_modules()["net"].to(DEVICE).train()
    before = [p.detach().clone() for p in net.parameters()]
    optim = Optimizers(recipe.build_optimizers({"net": net}, 1e-3), grad_clip=1.0)
    hr = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    batch = Batch(hr=hr, lr=degrade(hr, 4), scale=4)
    losses = []
    for i in range(6):
        report = optimizer_step(recipe, {"net": net}, optim, [batch], i, bf16=True)
        losses.append(float(report.metrics[0]["loss"]))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, net.parameters())), "no weight changed"
    assert next(net.parameters()).dtype == torch.float32, "autocast must keep the master weights in fp32"
