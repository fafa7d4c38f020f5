"""Conditioning augmentation (CDM): blur and noise of the LR are applied in training, as specified, and never
when a checkpoint is used as a method."""

from __future__ import annotations

import numpy as np
import torch
from test_train import make_photos, tiny_cfg
from torch import nn

from baselines.checkpoint import load_checkpoint, save_checkpoint
from baselines.sr3.method import build_sr3
from baselines.sr3.model import SR3Config, SR3Denoiser, sampling_defaults
from baselines.sr3.recipe import noise_augment
from baselines.train import load_recipe, make_batch, train
from baselines.unet import preset
from evalsuite.degrade import degrade, upsample
from evalsuite.methods import MethodContext


class Spy(nn.Module):
    """Stands in for the denoiser: records what the network is given, returns a trivial ŷ0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, x_up, y_t, gamma, aug=None):
        self.seen.append((x_up.detach().clone(), None if aug is None else aug.detach().clone()))
        return y_t * self.w


def _hr(n: int = 64, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic").clamp(0, 1)


def _gaussian3(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Example k blurred by the normalized 3x3 Gaussian of std sigma[k] (reflect padding), written directly."""
    d2 = torch.tensor([1.0, 0.0, 1.0])[None, :, None] + torch.tensor([1.0, 0.0, 1.0])[None, None, :]
    k2 = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2))
    k2 = k2 / k2.sum(dim=(1, 2), keepdim=True)
    b, c = x.shape[:2]
    padded = torch.nn.functional.pad(x.reshape(1, b * c, *x.shape[-2:]), (1, 1, 1, 1), mode="reflect")
    return torch.nn.functional.conv2d(padded, k2.repeat_interleave(c, 0)[:, None], groups=b * c).reshape_as(x)


def _recipe(tmp_path, **options):
    data = make_photos(tmp_path / "photos", n=1)
    cfg = tiny_cfg(tmp_path, data, blur_aug=bool(options.pop("blur_aug", False)))
    return load_recipe("sr3", cfg, {"preset": "tiny", **options}), cfg


def test_blur_aug_blurs_half_the_lr_inputs_with_sigma_in_the_paper_range(tmp_path):
    recipe, cfg = _recipe(tmp_path, blur_aug=True)
    assert recipe.config.blur_aug is True  # recorded in the checkpoint config
    hr = _hr()
    torch.manual_seed(3)
    batch = make_batch((hr * 255).round().to(torch.uint8), cfg.scale, cfg.blur_aug, torch.device("cpu"))
    spy = Spy()
    recipe.train_step({"net": spy}, batch, 0)
    x_up_seen = spy.seen[0][0]
    clean_lr = degrade(batch.hr, cfg.scale)
    clean_up = upsample(clean_lr, cfg.scale) * 2 - 1
    changed = (x_up_seen - clean_up).abs().amax(dim=(1, 2, 3)) > 1e-6
    # On 50% of examples (64 draws: well inside 25%..75%).
    assert 16 <= int(changed.sum()) <= 48
    # Each changed one is the 3x3 Gaussian blur of the LR with one sigma in [0.4, 0.6]; the others are untouched.
    sigmas = torch.linspace(0.3, 0.7, 801)
    for k in torch.nonzero(changed).flatten().tolist():
        cand = upsample(_gaussian3(clean_lr[k].expand(len(sigmas), -1, -1, -1), sigmas), cfg.scale) * 2 - 1
        errs = (cand - x_up_seen[k]).abs().amax(dim=(1, 2, 3))
        best = int(errs.argmin())
        assert float(errs[best]) < 1e-3 and 0.399 <= float(sigmas[best]) <= 0.601, (k, float(errs[best]))
    assert torch.allclose(x_up_seen[~changed], clean_up[~changed])


def test_noise_aug_adds_noise_of_the_drawn_level_and_feeds_the_level_to_the_network(tmp_path):
    recipe, cfg = _recipe(tmp_path, noise_aug=0.3)
    assert recipe.config.noise_aug == 0.3
    hr = _hr()
    batch = make_batch((hr * 255).round().to(torch.uint8), cfg.scale, False, torch.device("cpu"))
    torch.manual_seed(7)
    expected_lr, expected_a = noise_augment(batch.lr, 0.3)
    torch.manual_seed(7)
    spy = Spy()
    recipe.train_step({"net": spy}, batch, 0)
    x_up_seen, a_seen = spy.seen[0]
    assert torch.equal(a_seen, expected_a)
    assert torch.allclose(x_up_seen, upsample(expected_lr, cfg.scale) * 2 - 1)
    # The levels cover U(0, 0.3); the noise's std (model units) is the level, per example.
    assert 0 <= float(a_seen.min()) < 0.05 and 0.25 < float(a_seen.max()) <= 0.3
    std = ((expected_lr - batch.lr) * 2).flatten(1).std(dim=1)
    big = expected_a > 0.05
    ratio = std[big] / expected_a[big]
    assert float(ratio.min()) > 0.75 and float(ratio.max()) < 1.25
    # Off by default: the plain recipe gives the network the clean LR and no level.
    plain, _ = _recipe(tmp_path / "plain")
    spy2 = Spy()
    plain.train_step({"net": spy2}, batch, 0)
    assert spy2.seen[0][1] is None
    assert torch.allclose(spy2.seen[0][0], upsample(batch.lr, cfg.scale) * 2 - 1)


def test_training_records_the_augmentation_in_the_checkpoint(tmp_path):
    data = make_photos(tmp_path / "photos", n=1)
    cfg = tiny_cfg(tmp_path, data, crop=8, steps=2, blur_aug=True)
    res = train(load_recipe("sr3", cfg, {"preset": "tiny", "noise_aug": "0.2"}), cfg, log=lambda s: None)
    ck = load_checkpoint(res.checkpoint, kind="sr3")
    assert ck.config["blur_aug"] is True and ck.config["noise_aug"] == 0.2
    assert any(k.startswith("net.aug_mlp.") for k in ck.state_dict)


def _pair(tmp_path):
    """The same tiny denoiser saved without augmentation and with blur + noise augmentation (aug MLP as built)."""
    torch.manual_seed(0)
    off = SR3Config(unet=preset("tiny", image_size=16), scale=2)
    on = SR3Config(unet=preset("tiny", image_size=16), scale=2, blur_aug=True, noise_aug=0.3)
    m_off = SR3Denoiser(off)
    m_on = SR3Denoiser(on)
    missing = m_on.load_state_dict(m_off.state_dict(), strict=False).missing_keys
    assert missing and all(".aug_mlp." in k for k in missing)
    paths = []
    for name, cfg, model in (("off", off, m_off), ("on", on, m_on)):
        extra = {"sampling": sampling_defaults(cfg, steps=6)}
        paths.append(save_checkpoint(tmp_path / f"{name}.safetensors", model.state_dict(), "sr3", cfg, extra))
    return paths


def test_the_method_never_augments_level_zero_gives_identical_outputs(tmp_path):
    off, on = _pair(tmp_path)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ids = ["a", "b", "c"]
    outs = []
    for ckpt in (off, on, on):
        torch.manual_seed(len(outs) * 11)  # the global RNG must not matter: no training-time randomness
        outs.append(build_sr3(str(ckpt), MethodContext(2, seed=4, options={"steps": 6}))(x, ids))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])
    # A chosen level does add noise to the LR (and is refused for a checkpoint trained without it).
    noisy = build_sr3(str(on), MethodContext(2, seed=4, options={"steps": 6, "noise_aug": 0.2}))(x, ids)
    assert not torch.allclose(noisy, outs[1])
    try:
        build_sr3(str(off), MethodContext(2, options={"noise_aug": 0.2}))
    except ValueError as exc:
        assert "not trained with noise augmentation" in str(exc)
    else:
        raise AssertionError("noise_aug on a checkpoint without it must fail")


def test_run_cascade_noise_aug_reaches_the_stage(tmp_path):
    from PIL import Image

    from baselines.cascade import CascadeSpec, run_cascade

    _, on = _pair(tmp_path)
    folder = tmp_path / "base"
    folder.mkdir()
    for k in range(2):
        Image.fromarray((torch.rand(8, 8, 3, generator=torch.Generator().manual_seed(k)) * 255).byte().numpy()).save(
            folder / f"b{k}.png"
        )
    logs: list[str] = []

    def run(level: float | None) -> torch.Tensor:
        spec = CascadeSpec(base=f"folder:{folder}", stages=(f"sr3:{on}",), out=str(tmp_path / "run"), n=2, steps=4,
                           noise_aug=level, metrics=(), report=False)
        run_cascade(spec, log=logs.append)
        return torch.from_numpy(np.array(Image.open(tmp_path / "run" / "levels" / "stage1" / "000000.png")))

    plain = run(None)
    noisy = run(0.3)
    assert any("remade" in m for m in logs) and not torch.equal(plain, noisy)
