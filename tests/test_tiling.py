"""Tiled inference: exact for pointwise-local methods, no seams."""

from __future__ import annotations

import torch

from baselines.tiling import tiled_apply
from evalsuite.degrade import upsample


def test_tiling_is_identity_for_small_inputs():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(tiled_apply(lambda t: upsample(t, 2), x, 2, tile=32), upsample(x, 2))


def test_tiling_matches_whole_image_for_local_method():
    # Nearest-neighbour is local: tiled output must equal the full output exactly (weights sum to 1).
    x = torch.rand(1, 3, 50, 37)
    full = torch.nn.functional.interpolate(x, scale_factor=3, mode="nearest")
    tiled = tiled_apply(
        lambda t: torch.nn.functional.interpolate(t, scale_factor=3, mode="nearest"), x, 3, 16, 4
    )
    assert torch.allclose(tiled, full, atol=1e-6)


def test_tiling_blends_without_seams():
    # A method that adds a per-tile constant offset: blending must make the transition gradual.
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        offs = torch.arange(t.shape[0], dtype=torch.float32).view(-1, 1, 1, 1) * 0.1
        return upsample(t, 2) * 0 + offs

    out = tiled_apply(fn, torch.zeros(1, 3, 40, 40), 2, tile=24, overlap=8, tile_batch=8)
    row = out[0, 0, 10]
    assert row.diff().abs().max() < 0.1 / 8  # no jump larger than one ramp step
