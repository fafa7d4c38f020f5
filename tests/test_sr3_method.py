"""SR3 as a harness method: overfitting crops, batch-size invariance, options, tiles, tune-schedule, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from test_train import make_photos, tiny_cfg

from baselines.checkpoint import load_checkpoint, save_checkpoint
from baselines.sr3.method import build_sr3
from baselines.sr3.model import SR3Config, SR3Denoiser, sampling_defaults
from baselines.train import load_recipe, train
from baselines.unet import preset
from evalsuite.degrade import backproject, degrade, to_tensor, upsample
from evalsuite.methods import MethodContext, build_method


def random_sr3(tmp: Path, scale: int = 2, image_size: int = 16, **kw) -> Path:
    """An untrained tiny SR3 checkpoint (random weights): enough for invariance and plumbing tests."""
    torch.manual_seed(0)
    cfg = SR3Config(unet=preset("tiny", image_size=image_size), scale=scale, **kw)
    model = SR3Denoiser(cfg)
    return save_checkpoint(
        tmp / "sr3.safetensors",
        model.state_dict(),
        "sr3",
        cfg,
        {"sampling": sampling_defaults(cfg, steps=10)},
    )


def test_tiny_sr3_overfits_a_few_crops_and_beats_bicubic_on_them(tmp_path):
    data = make_photos(tmp_path / "photos", n=2, size=(16, 16))
    for p in data.glob("*.png"):  # exactly one 16 px crop per image
        Image.open(p).resize((16, 16), Image.BICUBIC).save(p)
    cfg = tiny_cfg(tmp_path, data, steps=120, batch_size=8, lr=3e-3, warmup=10, save_every=10**6, ema_decay=0.99)
    res = train(load_recipe("sr3", cfg, {"preset": "tiny", "parameterization": "x0"}), cfg, log=lambda s: None)
    losses = [r["loss"] for r in res.history]
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    hr = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sorted(data.glob("*.png"))])
    x_lr = degrade(hr, 2)
    mse_bicubic = float(((upsample(x_lr, 2) - hr) ** 2).mean())
    for sampler in ("ancestral", "ddim"):
        m = build_sr3(str(res.checkpoint), MethodContext(2, options={"steps": 20, "sampler": sampler}))
        sr = m(x_lr, ["a", "b"])
        assert float(((sr - hr) ** 2).mean()) < 0.5 * mse_bicubic, sampler


@pytest.mark.parametrize("param", ["v", "eps"])
def test_tiny_sr3_overfits_with_v_and_eps_prediction_too(tmp_path, param):
    # The same end-to-end check through the one loss and the preconditioning of v and ε (the cosine default
    # schedule), on 8 px crops to stay fast; ε and v need more steps than y0 to overfit, and are judged with
    # the checkpoint's default sampler (ancestral, ŷ0 clipped).
    data = make_photos(tmp_path / "photos", n=2, size=(8, 8))
    for p in data.glob("*.png"):  # exactly one 8 px crop per image
        Image.open(p).resize((8, 8), Image.BICUBIC).save(p)
    cfg = tiny_cfg(
        tmp_path, data, crop=8, steps=250, batch_size=8, lr=3e-3, warmup=10, save_every=10**6, ema_decay=0.99
    )
    res = train(load_recipe("sr3", cfg, {"preset": "tiny", "parameterization": param}), cfg, log=lambda s: None)
    losses = [r["loss"] for r in res.history]
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    hr = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sorted(data.glob("*.png"))])
    x_lr = degrade(hr, 2)
    mse_bicubic = float(((upsample(x_lr, 2) - hr) ** 2).mean())
    m = build_sr3(str(res.checkpoint), MethodContext(2, options={"steps": 20}))
    assert m.model.cfg.parameterization == param and m.sampler == "ancestral"
    assert float(((m(x_lr, ["a", "b"]) - hr) ** 2).mean()) < 0.7 * mse_bicubic


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_residual_model_that_adds_no_detail_returns_the_bicubic_upsample(tmp_path, sampler):
    # A residual SR3 (cfg.residual = s) diffuses s·(y0 − x_up): with a network whose ẑ0 is 0 everywhere
    # (x0-parameterization, output layer zeroed) every step's ŷ0 is x_up, so the sample is exactly the
    # bicubic upsample; an image-space model with the same weights returns mid-grey (its ŷ0 is 0), so the
    # check fails if the sampler forgets to map the residual back.
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    outs = {}
    for residual in (0.0, 4.0):
        torch.manual_seed(0)
        cfg = SR3Config(unet=preset("tiny", image_size=16), scale=2, parameterization="x0", residual=residual)
        model = SR3Denoiser(cfg)
        last = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        path = save_checkpoint(tmp_path / f"r{residual}.safetensors", model.state_dict(), "sr3", cfg,
                               {"sampling": sampling_defaults(cfg, steps=6)})
        m = build_sr3(str(path), MethodContext(2, options={"sampler": sampler, "tile": 0}))
        outs[residual] = m(x, ["a", "b"])
    torch.testing.assert_close(outs[4.0], upsample(x, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(outs[0.0], torch.full_like(outs[0.0], 0.5), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_backprojected_residual_model_that_adds_no_detail_returns_the_backprojected_base(tmp_path, sampler):
    # With cfg.backproject = n the residual's base is x_up back-projected n times onto the LR: a network whose
    # ẑ0 is 0 returns exactly that base (clamped), whose degradation is the LR input; bicubic's is not.
    x = 0.2 + 0.6 * torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    cfg = SR3Config(unet=preset("tiny", image_size=16), scale=2, parameterization="x0", residual=4.0, backproject=10)
    model = SR3Denoiser(cfg)
    last = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    path = save_checkpoint(tmp_path / "bp.safetensors", model.state_dict(), "sr3", cfg,
                           {"sampling": sampling_defaults(cfg, steps=6)})
    out = build_sr3(str(path), MethodContext(2, options={"sampler": sampler, "tile": 0}))(x, ["a", "b"])
    torch.testing.assert_close(out, backproject(x, 2, 10).clamp(0, 1), atol=1e-6, rtol=0)
    mse = lambda y: float((degrade(y, 2) - x).pow(2).mean())  # noqa: E731 - the consistency metric without x1e5
    assert mse(out) < mse(upsample(x, 2)) / 100


def test_residual_recipe_trains_on_the_scaled_residual(tmp_path):
    # The training target of `--set residual=s` is s·(y0 − x_up): an oracle network that returns exactly that
    # (x0-parameterization) has zero loss, and one that returns the image itself does not.
    from baselines.sr3.recipe import make_recipe
    from baselines.train import Batch

    data = make_photos(tmp_path / "photos", n=1, size=(16, 16))
    cfg = tiny_cfg(tmp_path, data, steps=1)
    recipe = make_recipe(cfg, {"preset": "tiny", "parameterization": "x0", "residual": 3.0})
    assert recipe.config.residual == 3.0
    hr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    batch = Batch(lr=degrade(hr, 2), hr=hr, scale=2)
    residual = 3.0 * ((hr * 2 - 1) - (upsample(degrade(hr, 2), 2) * 2 - 1))
    oracle = lambda x_up, y_t, gamma: residual  # noqa: E731
    assert float(recipe.train_step({"net": oracle}, batch, 0).losses["net"]) < 1e-6
    image = lambda x_up, y_t, gamma: hr * 2 - 1  # noqa: E731
    assert float(recipe.train_step({"net": image}, batch, 0).losses["net"]) > 0.1
    with pytest.raises(ValueError, match="residual must be 0"):
        SR3Config(residual=-1.0)
    # With backproject = n the target is the residual over the back-projected base (not over x_up).
    bp = make_recipe(cfg, {"preset": "tiny", "parameterization": "x0", "residual": 3.0, "backproject": 5})
    assert bp.config.backproject == 5
    residual_bp = 3.0 * ((hr * 2 - 1) - (backproject(degrade(hr, 2), 2, 5) * 2 - 1))
    oracle_bp = lambda x_up, y_t, gamma: residual_bp  # noqa: E731
    assert float(bp.train_step({"net": oracle_bp}, batch, 0).losses["net"]) < 1e-6
    assert float(bp.train_step({"net": oracle}, batch, 0).losses["net"]) > 1e-3
    for bad in ({"backproject": 3}, {"backproject": -1, "residual": 2.0}):
        with pytest.raises(ValueError, match="backproject must be 0"):
            SR3Config(**bad)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_image_k_is_the_same_at_any_batch_size(tmp_path, sampler):
    ckpt = random_sr3(tmp_path)
    m = build_sr3(str(ckpt), MethodContext(2, seed=5, options={"steps": 4, "sampler": sampler}))
    torch.manual_seed(1)
    x = torch.rand(4, 3, 8, 8)
    ids = ["p", "q", "r", "s"]
    full = m(x, ids)
    one_by_one = torch.cat([m(x[i : i + 1], ids[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(one_by_one, full, atol=1e-5, rtol=0)
    assert full.shape == (4, 3, 16, 16) and 0 <= float(full.min()) and float(full.max()) <= 1
    # Another seed gives other samples (the noise really comes from the per-image generators).
    other = build_sr3(str(ckpt), MethodContext(2, seed=6, options={"steps": 4, "sampler": sampler}))(x, ids)
    assert not torch.allclose(other, full)


def test_options_reach_the_sampler_and_defaults_come_from_the_checkpoint(tmp_path):
    ckpt = random_sr3(tmp_path)
    m = build_sr3(str(ckpt), MethodContext(2))
    assert m.schedule.T == 10 and m.sampler == "ancestral" and m.tile == 8
    m = build_sr3(str(ckpt), MethodContext(2, options={"steps": 3, "sampler": "ddim", "tile": 6}))
    assert m.schedule.T == 3 and m.sampler == "ddim" and m.tile == 6
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sr3(str(ckpt), MethodContext(2, options={"sampler": "euler"}))
    with pytest.raises(ValueError, match="upscales 2x but the task needs 4x"):
        build_method(f"sr3:{ckpt}", MethodContext(4))


def test_large_images_are_tiled_without_seams_and_odd_sizes_are_padded(tmp_path):
    ckpt = random_sr3(tmp_path)
    m = build_sr3(str(ckpt), MethodContext(2, options={"steps": 2, "sampler": "ddim", "tile": 8}))
    x = torch.rand(1, 3, 13, 21)  # larger than the 8 px tile, not a multiple of anything
    out = m(x, ["big"])
    assert out.shape == (1, 3, 26, 42) and torch.isfinite(out).all()
    # Deterministic per image id, whatever else is in the batch.
    torch.testing.assert_close(
        m(torch.cat([x, torch.rand(1, 3, 13, 21)]), ["big", "other"])[:1], out, atol=1e-5, rtol=0
    )


def test_sr3_runs_in_the_benchmark_harness(tmp_path):
    from evalsuite.runner import run
    from evalsuite.spec import BenchmarkSpec

    data = make_photos(tmp_path / "photos", n=2, size=(24, 20))
    ckpt = random_sr3(tmp_path)
    spec = BenchmarkSpec().replace(
        data=str(data),
        task=None,
        scale=2,
        methods=("bicubic", f"sr3:{ckpt}"),
        metrics=("psnr", "consistency"),
        out=str(tmp_path / "run"),
        report=False,
        method_options={"steps": 2, "sampler": "ddim"},
        device="cpu",
    )
    results = run(spec)
    summary = results.summary.set_index("method")
    assert summary.loc["sr3-sr3", "n_images"] == 2
    assert (tmp_path / "run" / "outputs" / "sr3-sr3").is_dir()


def test_tune_schedule_writes_the_best_schedule_into_a_new_checkpoint(tmp_path):
    from baselines.sr3.tune import tune_schedule

    data = make_photos(tmp_path / "held_out", n=2, size=(20, 20))
    ckpt = random_sr3(tmp_path)
    lines: list[str] = []
    dest, ranked, metric = tune_schedule(
        ckpt,
        data,
        metric="psnr",
        steps_grid=(2, 3),
        beta_start_grid=(1e-4,),
        beta_end_grid=(0.2, 0.5),
        limit=2,
        batch=2,
        log=lines.append,
    )
    assert metric == "psnr" and len(ranked) == 5  # the current schedule + 2x1x2 grid
    assert ranked[0].score >= ranked[-1].score
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)  # PSNR: higher first
    ck = load_checkpoint(dest)
    assert ck.extra["sampling"]["schedule"] == ranked[0].spec and ck.extra["tuned"]["metric"] == "psnr"
    assert load_checkpoint(ckpt).extra["sampling"]["steps"] == 10  # the input checkpoint is untouched
    assert any("best:" in s for s in lines)
    # A metric with no better direction cannot rank schedules.
    with pytest.raises(ValueError, match="no better direction"):
        tune_schedule(ckpt, data, metric="detail", steps_grid=(2,), limit=1, batch=1, log=lines.append)


def test_cli_trains_and_tunes(tmp_path):
    from evalsuite.cli import main

    data = make_photos(tmp_path / "photos", n=2, size=(20, 20))
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "sr3",
            "--data",
            str(data),
            "--scale",
            "2",
            "--crop",
            "16",
            "--preset",
            "tiny",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--out",
            str(out),
            "--workers",
            "0",
            "--no-progress",
            "--set",
            "loss=l2",
            "--set",
            "parameterization=eps",
            "--set",
            "schedule=cosine",
        ]
    )
    assert rc == 0
    ck = load_checkpoint(out / "model.safetensors")
    assert ck.config["loss"] == "l2" and ck.config["parameterization"] == "eps" and ck.config["unet"]["width"] == 16
    # The cosine training schedule is stored, and sampling respaces that same schedule.
    assert ck.config["train_schedule"] == {"kind": "cosine", "T": 2000, "s": 0.008}
    assert ck.extra["sampling"]["schedule"]["base"] == ck.config["train_schedule"]
    rc = main(
        [
            "sr3",
            "tune-schedule",
            str(out / "model.safetensors"),
            "--data",
            str(data),
            "--metric",
            "psnr",
            "--steps",
            "2",
            "--beta-start",
            "1e-4",
            "--beta-end",
            "0.3",
            "--limit",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and (out / "model-tuned.safetensors").exists()
    assert (
        main(
            [
                "train",
                "sr3",
                "--data",
                str(data),
                "--scale",
                "2",
                "--out",
                str(out),
                "--set",
                "bogus=1",
                "--crop",
                "16",
            ]
        )
        == 2
    )


def test_sampling_progress_counts_every_tile_step(tmp_path, monkeypatch):
    import baselines.sr3.method as M

    bars = []

    class Bar:
        def __init__(self, total, **kw):
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(M, "tqdm", Bar)
    ckpt = random_sr3(tmp_path)
    m = build_sr3(str(ckpt), MethodContext(2, options={"steps": 3, "sampler": "ddim", "tile": 8}))
    m(torch.rand(2, 3, 13, 21), ["a", "b"])  # 2 x 4 tiles per image (8 px tiles, 3 px overlap), 3 steps
    assert [(b.total, b.n) for b in bars] == [(2 * 8 * 3, 2 * 8 * 3)]
    m(torch.rand(1, 3, 6, 6), ["c"])  # one piece
    assert (bars[-1].total, bars[-1].n) == (3, 3)
