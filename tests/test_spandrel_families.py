"""`spandrel:` on several architecture families: tiny random-weight nets from spandrel's own classes, saved as
state dicts, loaded by the method with no other flag and checked against the original net at their scale."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from evalsuite.methods import MethodContext, build_method

pytest.importorskip("spandrel")


def _swinir(scale: int) -> torch.nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(upscale=scale, img_size=16, window_size=4, embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=2.0,
                  upsampler="pixelshuffle", resi_connection="1conv")


def _hat(scale: int) -> torch.nn.Module:
    from spandrel.architectures.HAT import HAT

    return HAT(upscale=scale, img_size=16, window_size=4, embed_dim=12, depths=(1,), num_heads=(2,), mlp_ratio=2.0,
               compress_ratio=3, squeeze_factor=4, overlap_ratio=0.5, upsampler="pixelshuffle", resi_connection="1conv")


def _dat(scale: int) -> torch.nn.Module:
    from spandrel.architectures.DAT import DAT

    return DAT(upscale=scale, img_size=16, embed_dim=32, depth=[2], num_heads=[2], split_size=[2, 4],
               expansion_factor=2.0, resi_connection="1conv")


def _span(scale: int) -> torch.nn.Module:
    from spandrel.architectures.SPAN import SPAN

    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)


def _omnisr(scale: int) -> torch.nn.Module:
    from spandrel.architectures.OmniSR import OmniSR

    return OmniSR(num_feat=16, block_num=1, window_size=4, res_num=1, up_scale=scale)


FAMILIES: list[tuple[str, Callable[[int], torch.nn.Module], int]] = [
    ("SwinIR", _swinir, 2),
    ("HAT", _hat, 3),
    ("DAT", _dat, 2),
    ("SPAN", _span, 4),
    ("OmniSR", _omnisr, 2),
]


@pytest.mark.parametrize(("arch", "make", "scale"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_spandrel_family(tmp_path: Path, arch: str, make: Callable[[int], torch.nn.Module], scale: int) -> None:
    torch.manual_seed(0)
    net = make(scale).eval()
    ckpt = tmp_path / f"{arch.lower()}_x{scale}.pth"
    torch.save(net.state_dict(), ckpt)
    m = build_method(f"spandrel:{ckpt}", MethodContext(scale))
    assert m.info["arch"] == arch and m.scale == scale
    # An LR size that is not a multiple of the window: the descriptor pads and crops back.
    x = torch.rand(2, 3, 10, 13)
    out = m(x)
    assert out.shape == (2, 3, 10 * scale, 13 * scale)
    # The loaded model is the saved one: same output as the original net on a window-aligned input.
    x8 = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x8), net(x8).clamp(0, 1), rtol=1e-4, atol=1e-4)
    # Its scale is checked against the task's.
    with pytest.raises(ValueError, match=f"upscales {scale}x"):
        build_method(f"spandrel:{ckpt}", MethodContext(scale + 1))
