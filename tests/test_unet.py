"""The SR3 U-Net: presets, parameter counts, shapes, the noise embedding, BigGAN blocks and skip rescaling."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.sr3.model import NOISE_SCALE, noise_condition
from baselines.unet import (
    PRESETS,
    ResBlock,
    UNet,
    count_parameters,
    preset,
    sinusoidal,
    unet_config_from_dict,
)


def _count_on_meta(cfg) -> int:
    with torch.device("meta"):
        return count_parameters(UNet(cfg))


def test_janspiry_preset_has_the_public_implementations_parameter_count():
    # Janspiry's SR3 at 16->128 (inner 64, mults 1,2,4,8,8, 2 res blocks, attention at 16): 97.8M.
    n = _count_on_meta(PRESETS["janspiry-16-128"])
    assert n == 97_807_491
    assert round(n / 1e6, 1) == 97.8
    # ... and at 64->512 (inner 64, mults 1,2,4,8,16, 1 res block, norm_groups 16, middle attention only).
    assert _count_on_meta(PRESETS["janspiry-64-512"]) == 155_334_339


@pytest.mark.parametrize(
    "name,paper_m",
    [("paper-16-128", 550), ("paper-64-256", 625), ("paper-64-512", 625), ("paper-256-1024", 150)],
)
def test_paper_presets_are_near_the_papers_sizes(name, paper_m):
    # protocols.md's sizes come from a table reconstruction; within 5% of it.
    n = _count_on_meta(PRESETS[name]) / 1e6
    assert abs(n - paper_m) / paper_m < 0.05, n


def test_forward_shapes_and_config_round_trip():
    cfg = preset("tiny")
    net = UNet(cfg)
    x = torch.randn(2, 6, 32, 48)
    out = net(x, torch.tensor([0.1, 0.9]))
    assert out.shape == (2, 3, 32, 48)
    assert cfg.multiple == 4  # two down-samplings
    # The DDPM-style path (janspiry-16-128): strided-conv down, upsample+conv up, additive embedding.
    ddpm = UNet(preset("tiny", biggan_updown=False, scale_shift=False, skip_rescale=False, head_channels=0))
    assert ddpm(x, torch.tensor([0.1, 0.9])).shape == (2, 3, 32, 48)
    import json
    from dataclasses import asdict

    assert unet_config_from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg


def test_attention_in_the_middle_and_at_the_chosen_resolution():
    cfg = preset("tiny", attn_res=(16,), mid_attn=True, image_size=32)
    net = UNet(cfg)
    assert net.mid_attn is not None
    n_attn = sum(1 for lvl in net.down if getattr(lvl, "attn", None) is not None)
    assert n_attn == cfg.res_blocks  # one level (16 px) of the 32 px input has attention
    assert UNet(preset("tiny")).mid_attn is None


def test_output_depends_on_the_noise_level():
    torch.manual_seed(0)
    net = UNet(preset("tiny")).eval()
    x = torch.randn(1, 6, 16, 16)
    a, b = net(x, torch.tensor([0.2])), net(x, torch.tensor([0.8]))
    assert (a - b).abs().mean() > 1e-3


def test_noise_embedding_varies_over_the_whole_range():
    # Features of the scaled condition must change noticeably between nearby noise levels, at both ends.
    for emb in ("gamma", "logsnr"):
        for g1, g2 in ((0.1, 0.2), (0.8, 0.9)):
            c = noise_condition(torch.tensor([g1, g2]), emb) * NOISE_SCALE[emb]
            f = sinusoidal(c, 64)
            assert (f[0] - f[1]).norm() > 1.0, (emb, g1, g2)
    # At the high-noise end (γ from 1e-4 to 1e-3) only the log-SNR embedding resolves the levels.
    lo = torch.tensor([1e-4, 1e-3])
    d_gamma = (sinusoidal(noise_condition(lo, "gamma") * NOISE_SCALE["gamma"], 64).diff(dim=0)).norm()
    d_logsnr = (sinusoidal(noise_condition(lo, "logsnr") * NOISE_SCALE["logsnr"], 64).diff(dim=0)).norm()
    assert d_logsnr > 3 * d_gamma


def test_resblock_rescales_the_residual_sum_by_one_over_sqrt2():
    torch.manual_seed(0)
    cfg = preset("tiny")
    blk = ResBlock(8, 8, cfg.width * cfg.emb_mult, cfg).eval()
    torch.nn.init.zeros_(blk.conv2.weight)
    torch.nn.init.zeros_(blk.conv2.bias)  # residual branch = 0 -> output = x / sqrt(2)
    x = torch.randn(1, 8, 8, 8)
    torch.testing.assert_close(blk(x, torch.randn(1, cfg.width * cfg.emb_mult)), x / math.sqrt(2))
    down = ResBlock(8, 8, cfg.width * cfg.emb_mult, cfg, down=True)
    up = ResBlock(8, 8, cfg.width * cfg.emb_mult, cfg, up=True)
    e = torch.randn(1, cfg.width * cfg.emb_mult)
    assert down(x, e).shape == (1, 8, 4, 4) and up(x, e).shape == (1, 8, 16, 16)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="known: .*tiny"):
        preset("huge")
