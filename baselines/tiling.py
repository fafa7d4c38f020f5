"""Tiled inference for large images: overlapping LR tiles, SR'd one batch at a time, blended seamlessly."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def default_overlap(tile: int) -> int:
    """The LR overlap of U-Net tiles: 3/8 of the tile. Networks trained on small crops (GroupNorm, zero
    padding) are worst at their borders; a 1/8 overlap left a visible grid in flat regions of regression
    outputs (measured on the demo model: a grid every 7 LR px, 0.14 dB below a 3/8 overlap)."""
    return max(1, (3 * tile) // 8)


def tile_count(h: int, w: int, tile: int, overlap: int) -> int:
    """How many tiles `tiled_apply` cuts an (h, w) LR image into (1 when it fits in one tile)."""
    if h <= tile and w <= tile:
        return 1
    th, tw = min(tile, h), min(tile, w)
    return len(_starts(h, th, th - overlap)) * len(_starts(w, tw, tw - overlap))


def _ramp(n: int, overlap: int, first: bool, last: bool, device: torch.device) -> torch.Tensor:
    # Linear ramp over the overlap on each side that meets another tile, so neighbours cross-fade;
    # sides on the image border keep full weight.
    w = torch.ones(n, device=device)
    if overlap > 0:
        r = (torch.arange(overlap, device=device, dtype=torch.float32) + 0.5) / overlap
        if not first:
            w[:overlap] = torch.minimum(w[:overlap], r)
        if not last:
            w[-overlap:] = torch.minimum(w[-overlap:], r.flip(0))
    return w


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x_lr: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int = 8,
    tile_batch: int = 4,
) -> torch.Tensor:
    """Apply an SR function to (B,3,h,w) in overlapping LR tiles of `tile` px and blend the outputs.

    Weights ramp linearly over the overlap (in output pixels), so there is no seam; tiles at the image
    border keep full weight at the border. With h, w <= tile this is exactly fn(x_lr).
    """
    b, c, h, w = x_lr.shape
    if h <= tile and w <= tile:
        return fn(x_lr)
    if overlap * 2 >= tile:
        raise ValueError(f"tile overlap {overlap} must be less than half the tile size {tile}")
    th, tw = min(tile, h), min(tile, w)
    ys, xs = _starts(h, th, th - overlap), _starts(w, tw, tw - overlap)
    out = torch.zeros(b, c, h * scale, w * scale, device=x_lr.device)
    weight = torch.zeros(1, 1, h * scale, w * scale, device=x_lr.device)
    boxes = [(y, x) for y in ys for x in xs]
    o = overlap * scale
    for i in range(0, len(boxes), tile_batch):
        chunk = boxes[i : i + tile_batch]
        # (B*n, 3, th, tw): the tiles of every image in the batch.
        tiles = torch.cat([x_lr[:, :, y : y + th, x : x + tw] for y, x in chunk], dim=0)
        sr = fn(tiles).float().reshape(len(chunk), b, c, th * scale, tw * scale)
        for k, (y, x) in enumerate(chunk):
            wy = _ramp(th * scale, o, y == 0, y + th == h, x_lr.device)
            wx = _ramp(tw * scale, o, x == 0, x + tw == w, x_lr.device)
            wgt = (wy[:, None] * wx[None, :])[None, None]
            ys_, xs_ = slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale)
            out[:, :, ys_, xs_] += sr[k] * wgt
            weight[:, :, ys_, xs_] += wgt
    return out / weight


def pad_to_multiple(x_lr: torch.Tensor, scale: int, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad LR so its upsampled size is a multiple of `multiple`; returns (padded, pad_h, pad_w)."""
    step = multiple // math.gcd(multiple, scale)
    h, w = x_lr.shape[-2:]
    ph, pw = (-h) % step, (-w) % step
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x_lr = F.pad(x_lr, (0, pw, 0, ph), mode=mode)
    return x_lr, ph, pw
