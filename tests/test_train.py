"""The one training loop: checkpoints, exact resume, the data stream, blur augmentation, EMA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.checkpoint import NotACheckpointError, load_checkpoint, save_checkpoint, state_path
from baselines.data import BatchIndices, CropDataset, gaussian_blur_aug
from baselines.train import EMA, TrainConfig, load_recipe, train
from baselines.unet import preset


def make_photos(folder: Path, n: int = 3, size: tuple[int, int] = (72, 56)) -> Path:
    """A few small real photos (scikit-image's bundled ones), of different sizes."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("astronaut", "coffee", "chelsea")[:n]):
        img = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
        img.resize((size[0] + 8 * i, size[1] + 4 * i), Image.BICUBIC).save(folder / f"{name}.png")
    return folder


def tiny_cfg(tmp: Path, data: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        out=str(tmp / "run"),
        scale=2,
        crop=16,
        batch_size=4,
        steps=6,
        warmup=2,
        save_every=3,
        log_every=1,
        workers=0,
        progress=False,
        ema_decay=0.9,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    recipe = load_recipe("sr3", tiny_cfg(tmp_path, tmp_path), {"preset": "tiny", "parameterization": "eps"})
    sd = recipe.build_modules()["net"].state_dict()
    path = save_checkpoint(tmp_path / "m.safetensors", sd, "sr3", recipe.config, {"sampling": {"steps": 7}})
    ck = load_checkpoint(path)
    assert ck.kind == "sr3" and ck.extra["sampling"]["steps"] == 7
    assert ck.config["parameterization"] == "eps" and ck.config["unet"]["width"] == preset("tiny").width
    assert set(ck.state_dict) == set(sd)
    for k, v in sd.items():
        assert ck.state_dict[k].dtype == v.dtype and torch.equal(ck.state_dict[k], v), k
    # Save what was loaded, load again: the same checkpoint (safetensors orders its header freely).
    again = load_checkpoint(save_checkpoint(tmp_path / "m2.safetensors", ck.state_dict, ck.kind, ck.config, ck.extra))
    assert (again.kind, again.config, again.extra) == (ck.kind, ck.config, ck.extra)
    assert all(torch.equal(again.state_dict[k], v) for k, v in ck.state_dict.items())


def test_foreign_files_get_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(NotACheckpointError, match="plain.safetensors.*not an evalsuite checkpoint"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not a tensor file")
    with pytest.raises(NotACheckpointError, match="junk.safetensors"):
        load_checkpoint(junk)
    ok = save_checkpoint(tmp_path / "r.safetensors", {"w": torch.ones(1)}, "regression", {"a": 1})
    with pytest.raises(NotACheckpointError, match="regression.*expected 'sr3'"):
        load_checkpoint(ok, kind="sr3")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_crop_stream_is_a_pure_function_of_the_index(tmp_path):
    data = make_photos(tmp_path / "photos")
    ds = CropDataset(data, 16, seed=3)
    assert len(ds) == 3
    a, b = ds[10], CropDataset(data, 16, seed=3)[10]
    assert a.shape == (3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a, b)
    # Each epoch visits every image once.
    assert sorted(ds.image_index(i) for i in range(3, 6)) == [0, 1, 2]
    assert not torch.equal(ds[10], CropDataset(data, 16, seed=4)[10])
    # Rank r takes its own slice of each global batch.
    assert list(BatchIndices(8, 4, 2, rank=1, world=2)) == [[10, 11], [14, 15]]
    with pytest.raises(ValueError, match="no usable training images"):
        CropDataset(data, 4096)


def test_corrupt_training_files_are_skipped_at_scan_or_replaced_when_decoded(tmp_path):
    data = make_photos(tmp_path / "photos")
    (data / "empty.png").write_bytes(b"")
    (data / "notes.jpg").write_text("not an image")
    # A JPEG whose header is intact but whose pixel data is cut: only decoding finds it.
    Image.open(data / "coffee.png").save(data / "cut.jpg", quality=95)
    good = (data / "cut.jpg").read_bytes()
    (data / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="skipped"):
        ds = CropDataset(data, 16, seed=3)
    # The scan reads headers only: the empty and non-image files are skipped there, with their reasons.
    assert dict((p.name, r) for p, r in ds.skipped) == {
        "empty.png": "empty file (0 bytes)",
        "notes.jpg": "not an image (no decoder recognizes the file's contents)",
    }
    assert len(ds) == 4
    cut = [p.name for p in ds.paths].index("cut.jpg")
    # Decoding it warns once and yields the next image in the list instead, the same in every process.
    with pytest.warns(UserWarning, match="cannot decode .*cut.jpg"):
        replaced = ds._load(cut)
    nxt = ds.paths[(cut + 1) % len(ds)]
    assert torch.equal(replaced, torch.from_numpy(np.array(Image.open(nxt).convert("RGB"))).permute(2, 0, 1))
    assert "cut.jpg" in {p.name for p, _ in ds.skipped}
    # Every sample of the stream is a valid crop.
    assert all(ds[i].shape == (3, 16, 16) for i in range(12))


def test_blur_augmentation_blurs_about_half_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.rand(400, 3, 8, 8)
    y = gaussian_blur_aug(x)
    changed = (y - x).abs().flatten(1).amax(1) > 1e-6
    assert 0.4 < float(changed.float().mean()) < 0.6
    # A blur keeps the mean of each image (normalized kernel, reflect padding keeps it approximately).
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)
    assert float(y[changed].std()) < float(x[changed].std())


def test_ema_warmup_and_update():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, 0.9999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**7) == 0.9999
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m, 0)
    # 0.1 * old + 0.9 * new
    torch.testing.assert_close(ema.module.weight, m.weight - 0.1)


@pytest.mark.parametrize(("kind", "accum"), [("sr3", 1), ("regression", 1), ("regression", 2)])
def test_resume_reproduces_the_next_losses_exactly(tmp_path, kind, accum):
    data = make_photos(tmp_path / "photos")
    opts = {"preset": "tiny"}
    full = train(
        load_recipe(kind, tiny_cfg(tmp_path / "a", data, accum=accum), opts),
        tiny_cfg(tmp_path / "a", data, accum=accum),
        log=lambda s: None,
    )
    # Interrupted run: 3 steps, then resume to 6.
    cfg3 = tiny_cfg(tmp_path / "b", data, steps=3, accum=accum)
    train(load_recipe(kind, cfg3, opts), cfg3, log=lambda s: None)
    cfg6 = tiny_cfg(tmp_path / "b", data, accum=accum)
    resumed = train(load_recipe(kind, cfg6, opts), cfg6, resume=True, log=lambda s: None)
    assert resumed.step == 6 and len(resumed.history) == 3
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history[3:]]
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert state_path(resumed.checkpoint).exists()
    log = (tmp_path / "b" / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and len(log) == 7  # header + 6 rows over the two runs


def test_training_writes_a_self_describing_checkpoint(tmp_path):
    data = make_photos(tmp_path / "photos")
    cfg = tiny_cfg(tmp_path, data, steps=2, blur_aug=True)
    res = train(load_recipe("sr3", cfg, {"preset": "tiny", "embedding": "gamma"}), cfg, log=lambda s: None)
    ck = load_checkpoint(res.checkpoint)
    assert ck.kind == "sr3" and ck.config["embedding"] == "gamma" and ck.config["scale"] == 2
    assert ck.extra["step"] == 2 and ck.extra["train"]["blur_aug"] is True
    assert ck.extra["sampling"]["sampler"] == "ancestral" and ck.extra["sampling"]["steps"] == 100
    json.dumps(ck.extra)
    with pytest.raises(ValueError, match="unknown sr3 option.*colour.*known"):
        load_recipe("sr3", cfg, {"colour": "1"})


def test_width_widens_the_preset_and_is_stored_in_the_checkpoint(tmp_path):
    data = make_photos(tmp_path / "photos")
    cfg = tiny_cfg(tmp_path, data, steps=1)
    for kind in ("sr3", "regression"):
        narrow = load_recipe(kind, cfg, {"preset": "tiny"}).build_modules()["net"]
        recipe = load_recipe(kind, cfg, {"preset": "tiny", "width": "32"})
        wide = recipe.build_modules()["net"]
        n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        # Twice the channels: about four times the parameters (convolutions scale with channels squared).
        assert 3.5 < n(wide) / n(narrow) < 4.5
        assert recipe.config.unet.width == 32 and recipe.config.unet.groups == 8
        res = train(recipe, tiny_cfg(tmp_path / kind, data, steps=1), log=lambda s: None)
        assert load_checkpoint(res.checkpoint).config["unet"]["width"] == 32
    # A width the preset's GroupNorm cannot split is refused with the reason.
    with pytest.raises(ValueError, match="width 20 must be a positive multiple of preset tiny's 8 norm groups"):
        load_recipe("sr3", cfg, {"preset": "tiny", "width": "20"})


def test_accumulating_micro_batches_equals_one_step_of_the_whole_batch(tmp_path):
    data = make_photos(tmp_path / "photos")
    opts = {"preset": "tiny", "dropout": "0"}  # the regression objective draws no randomness
    torch.manual_seed(0)
    init = load_recipe("regression", tiny_cfg(tmp_path, data), opts).build_modules()["net"].state_dict()
    runs = {}
    for accum in (1, 4):
        cfg = tiny_cfg(tmp_path / f"accum{accum}", data, batch_size=8, accum=accum, steps=3, lr=1e-4)
        runs[accum] = train(load_recipe("regression", cfg, opts), cfg, log=lambda s: None)
    whole, micro = runs[1], runs[4]
    # 4 micro-batches of 2 give the gradient (its norm at every step) and loss of one batch of 8 ...
    for a, b in zip(whole.history, micro.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm_net"] == pytest.approx(b["grad_norm_net"], rel=1e-4)
    # ... and the same weights, up to float rounding (that Adam amplifies where a gradient is ~0) far below
    # how far the 3 steps moved them.
    flat = lambda sd: torch.cat([v.flatten() for v in sd.values()])  # noqa: E731
    w_init, w_whole = flat(init), flat(whole.modules["net"].state_dict())
    w_micro = flat(micro.modules["net"].state_dict())
    assert float((w_whole - w_micro).norm()) < 1e-3 * float((w_whole - w_init).norm())


def test_only_the_forward_pass_runs_under_autocast(tmp_path):
    from baselines.regression.recipe import RegressionRecipe

    class Probe(RegressionRecipe):
        """The regression recipe, noting whether autocast is on in its forward, its backward and the Adam step."""

        seen: dict[str, list[bool]]

        def build_optimizers(self, modules, lr):
            opts = super().build_optimizers(modules, lr)
            opts["net"].register_step_pre_hook(lambda *a: self.seen["step"].append(torch.is_autocast_enabled("cpu")))
            return opts

        def train_step(self, models, batch, step):
            self.seen["forward"].append(torch.is_autocast_enabled("cpu"))
            out = super().train_step(models, batch, step)
            out.losses["net"].register_hook(lambda g: self.seen["backward"].append(torch.is_autocast_enabled("cpu")))
            return out

    data = make_photos(tmp_path / "photos")
    cfg = tiny_cfg(tmp_path, data, steps=2, precision="bf16", accum=2)
    recipe = Probe(load_recipe("regression", cfg, {"preset": "tiny"}).config)
    recipe.seen = {"forward": [], "backward": [], "step": []}
    train(recipe, cfg, log=lambda s: None)
    # bf16 autocast (CPU here) wraps each micro-batch's forward; backward and the optimizer step run outside it.
    assert recipe.seen == {"forward": [True] * 4, "backward": [False] * 4, "step": [False] * 2}


def test_log_csv_has_the_columns_the_recipe_declares(tmp_path):
    import csv

    data = make_photos(tmp_path / "photos")
    cfg = tiny_cfg(tmp_path, data, crop=32, scale=4, steps=2, save_every=2)
    opts = {"preset": "tiny", "pretrain_steps": "1", "perceptual": "off"}
    train(load_recipe("gan", cfg, opts), cfg, log=lambda s: None)
    log_path = tmp_path / "run" / "log.csv"
    with open(log_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "adversarial", "l1", "g_adv", "g_loss", "d_loss", "grad_norm_generator",
                             "grad_norm_discriminator", "lr", "img_per_s"]
    # D does not step during the L1 pre-training: its grad-norm cell is empty there, not missing from the file.
    assert [r["grad_norm_discriminator"] == "" for r in rows] == [True, False]
    # A crash after a row was logged but before the state was saved: resume drops that row and logs it anew.
    log_path.write_text(log_path.read_text() + "3,9,9,9,9,9,9,9,9,9\n")
    cfg4 = tiny_cfg(tmp_path, data, crop=32, scale=4, steps=4, save_every=2)
    train(load_recipe("gan", cfg4, opts), cfg4, resume=True, log=lambda s: None)
    with open(log_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and rows[2]["l1"] != "9"
    # A log with other columns is not appended to: the error says what to do.
    log_path.write_text("step,loss\n1,0.5\n")
    cfg6 = tiny_cfg(tmp_path, data, crop=32, scale=4, steps=6, save_every=2)
    with pytest.raises(ValueError, match=r"log.csv has the columns \['step', 'loss'\].*move the old log away"):
        train(load_recipe("gan", cfg6, opts), cfg6, resume=True, log=lambda s: None)


def test_a_step_output_must_match_the_declared_metrics():
    from baselines.regression import RegressionConfig
    from baselines.regression.recipe import RegressionRecipe
    from baselines.train import Batch, Optimizers, optimizer_step

    recipe = RegressionRecipe(RegressionConfig(unet=preset("tiny", image_size=16), scale=2))
    recipe.metrics = ("loss", "psnr")
    modules = recipe.build_modules()
    hr = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"RegressionRecipe.train_step returned .* metrics \['loss'\]; it declares"):
        optimizer_step(recipe, modules, Optimizers(recipe.build_optimizers(modules, None)),
                       [Batch(hr=hr, lr=hr[..., ::2, ::2], scale=2)], 0)


def test_mean_meter_averages_on_the_device_per_name():
    from baselines.train_log import MeanMeter

    meter = MeanMeter(["loss", "grad_norm_d"], torch.device("cpu"))
    meter.add({"loss": torch.tensor(1.0)})
    meter.add({"loss": torch.tensor(2.0), "grad_norm_d": torch.tensor(5.0)})
    assert meter.pop() == {"loss": 1.5, "grad_norm_d": 5.0}
    # Popping starts over; a name with nothing added since is left out of the row.
    meter.add({"loss": torch.tensor(4.0)})
    assert meter.pop() == {"loss": 4.0}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="device syncs are observable on CUDA only")
def test_training_steps_do_not_synchronize_with_the_device():
    from baselines.regression import RegressionConfig
    from baselines.regression.recipe import RegressionRecipe
    from baselines.train import Optimizers, make_batch, optimizer_step
    from baselines.train_log import MeanMeter

    cuda = torch.device("cuda")
    recipe = RegressionRecipe(RegressionConfig(unet=preset("tiny", image_size=16), scale=2))
    modules = {k: m.to(cuda) for k, m in recipe.build_modules().items()}
    optim = Optimizers(recipe.build_optimizers(modules, None), warmup=10, grad_clip=1.0)
    ema = EMA(modules["net"], 0.999)
    meter = MeanMeter(["loss", "grad_norm_net"], cuda)
    hr_u8 = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8).pin_memory()

    def step(i: int) -> None:
        report = optimizer_step(recipe, modules, optim, [make_batch(hr_u8, 2, True, cuda)] * 2, i, accum=2, bf16=True)
        ema.update(modules["net"], i)
        for m in report.metrics:
            meter.add(m)
        meter.add({f"grad_norm_{k}": v for k, v in report.grad_norms.items()})

    step(0)  # the optimizer creates its state on the first step
    # Between log rows nothing waits for the GPU: any synchronizing call raises in this mode.
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, 4):
            step(i)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    row = meter.pop()  # the one sync of a log row
    assert set(row) == {"loss", "grad_norm_net"} and all(math.isfinite(v) for v in row.values())
