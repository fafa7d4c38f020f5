"""Pixel metrics: PSNR and SSIM on RGB or BasicSR's Y channel, SR3's consistency, and the detail ratio."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio

from evalsuite.degrade import degrade
from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, border_window, register


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,1,H,W) Y of ITU-R BT.601 (16..235 range) in [0,1], as BasicSR computes it."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def prepare_pair(
    sr: torch.Tensor, hr: torch.Tensor, y_channel: bool, crop_border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the SR-paper conventions: optional Y channel, then crop `crop_border` px from each side."""
    sr, hr = sr.float(), hr.float()
    if y_channel:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    if crop_border:
        c = crop_border
        sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
    return sr, hr


class _PairMetric:
    """Shared plumbing of PSNR and SSIM: per-image values, nothing at dataset level."""

    name = ""  # its column

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image values (B,)."""
        a, b = prepare_pair(sr, hr, self.ctx.y_channel, self.ctx.crop_border)
        return {self.name: self._value(a, b).reshape(-1).float()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}


class PSNR(_PairMetric):
    """Peak signal-to-noise ratio in dB, data range 1."""

    name = "psnr"

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return peak_signal_noise_ratio(sr, hr, data_range=1.0, reduction="none", dim=(1, 2, 3))


def gaussian_kernel(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """Normalized 1-D Gaussian taps (2*radius+1), float64."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def valid_filter(x: torch.Tensor, taps: Sequence[float]) -> torch.Tensor:
    """Separable correlation of (..., H, W) with `taps` down and across, 'valid' positions only.

    Each 1-D pass is a sum of shifted views accumulated in place: on a CPU this beats a depthwise conv2d
    (and an FFT, whose speed depends on the size's prime factors and, with MKL, on the CPU vendor).
    """
    n = len(taps)
    h, w = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    rows = x[..., 0:h, :] * taps[0]
    for k in range(1, n):
        rows.add_(x[..., k : k + h, :], alpha=taps[k])
    out = rows[..., 0:w] * taps[0]
    for k in range(1, n):
        out.add_(rows[..., k : k + w], alpha=taps[k])
    return out


# Output pixels per strip of a large image's SSIM: the strip's five maps and their blurs stay in cache
# (3.3x faster than the whole 2040x1356 image at once on a 2-core EPYC, one thread).
SSIM_STRIP_PIXELS = 1 << 17


def ssim_map_sum(
    sr: torch.Tensor, hr: torch.Tensor, sigma: float = 1.5, radius: int = 5, contrast: bool = False
) -> torch.Tensor:
    """Per image (B,), float64: the SSIM map (if `contrast`, MS-SSIM's contrast-structure map) summed.

    The sum runs over channels and the positions whose window lies inside the image.
    """
    c1, c2 = 0.01**2, 0.03**2  # K1, K2 with data range 1
    c = sr.shape[1]
    # Gaussian blur of the five maps (separable, 11 taps), at the positions whose window is inside.
    maps = torch.cat([sr, hr, sr * sr, hr * hr, sr * hr], dim=1)
    blurred = valid_filter(maps, gaussian_kernel(sigma, radius).tolist())
    mu_x, mu_y, xx, yy, xy = blurred.split(c, dim=1)
    mu_xy = mu_x * mu_y
    mu_x2, mu_y2 = mu_x.square(), mu_y.square()
    # Contrast-structure = (2 cov + C2) / (var_x + var_y + C2), the variances as E[x^2] - mu^2 (in place).
    cs_num = 2 * (xy - mu_xy) + c2
    cs_den = xx.add_(yy).sub_(mu_x2).sub_(mu_y2).add_(c2)
    if contrast:
        return cs_num.div_(cs_den).sum(dim=(1, 2, 3), dtype=torch.float64)
    # SSIM map = (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)), in place.
    num = (2 * mu_xy + c1).mul_(cs_num)
    den = (mu_x2 + mu_y2 + c1).mul_(cs_den)
    return num.div_(den).sum(dim=(1, 2, 3), dtype=torch.float64)


def window_mean(
    sr: torch.Tensor, hr: torch.Tensor, sigma: float = 1.5, radius: int = 5, contrast: bool = False
) -> torch.Tensor:
    """Per image (B,), float64: the mean of `ssim_map_sum`'s map over the positions whose window lies inside.

    On a CPU, computed in horizontal strips of about SSIM_STRIP_PIXELS output pixels (each strip reads
    `radius` rows of its neighbours), so a large image's temporaries stay in cache; sums joined in float64.
    """
    h, w = sr.shape[-2:]
    n = 2 * radius
    # Strips on a CPU; a GPU takes the whole image (its caches are not the limit, kernel launches are).
    rows = max(1, SSIM_STRIP_PIXELS // max(1, w - n)) if sr.device.type == "cpu" else h
    total = sum(
        ssim_map_sum(sr[..., y : y + rows + n, :], hr[..., y : y + rows + n, :], sigma, radius, contrast)
        for y in range(0, h - n, rows)
    )
    return total / (sr.shape[1] * (h - n) * (w - n))


def ssim_per_image(sr: torch.Tensor, hr: torch.Tensor, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """Mean SSIM per image (B,), Gaussian window, over the positions whose window lies inside the image."""
    return window_mean(sr, hr, sigma, radius).float()


class SSIM(_PairMetric):
    """Structural similarity: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, mean over channels.

    The convention of Wang et al.'s code, scikit-image and BasicSR: the mean over positions whose window
    lies inside the image. torchmetrics' SSIM also averages the reflect-padded border (up to ~0.01 off on
    real photos) and runs a full 2-D kernel, slower than a per-image scipy loop on a CPU; this float32
    separable version is checked against scikit-image to 1e-4 in the tests.
    """

    name = "ssim"

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if min(sr.shape[-2:]) < 11:
            raise ValueError(f"SSIM needs images of at least 11x11 px, got {tuple(sr.shape[-2:])}")
        # One image at a time: its five maps stay in cache.
        return torch.cat([ssim_per_image(sr[i : i + 1], hr[i : i + 1]) for i in range(sr.shape[0])])


# MS-SSIM's five scales and their exponents (Wang et al. 2003, torchmetrics' defaults); the side must stay
# above the 11-tap window after four halvings.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_SCALES = len(MS_SSIM_BETAS)
MS_SSIM_MIN_SIDE = 11 * 2 ** (MS_SSIM_SCALES - 1)  # 176 px


def ms_ssim_per_image(sr: torch.Tensor, hr: torch.Tensor, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """MS-SSIM per image (B,), torchmetrics' value (relu-normalized terms) by the separable filter above.

    torchmetrics' `multiscale_structural_similarity_index_measure` runs a full 11x11 conv2d at every scale;
    this computes the same terms with `window_mean` (6x faster on a 2-core CPU) and is tested equal to it.
    """
    terms = []
    for scale, beta in enumerate(MS_SSIM_BETAS):
        if scale < MS_SSIM_SCALES - 1:
            # A finer scale: mean contrast-structure over the inside positions (torchmetrics crops the padded
            # map to them), then halve the image with a 2x2 average.
            term = window_mean(sr, hr, sigma, radius, contrast=True)
            sr, hr = F.avg_pool2d(sr, 2), F.avg_pool2d(hr, 2)
        else:
            # The coarsest scale: mean SSIM over every position of the image reflect-padded by the radius
            # (torchmetrics does not crop this one).
            pad = (radius,) * 4
            term = window_mean(F.pad(sr, pad, mode="reflect"), F.pad(hr, pad, mode="reflect"), sigma, radius)
        # relu normalization (torchmetrics' default) keeps the product real for anticorrelated images.
        terms.append(term.clamp_min(0) ** beta)
    return torch.stack(terms).prod(0).float()


class MSSSIM(_PairMetric):
    """Multi-scale SSIM as torchmetrics computes it: Gaussian window 11, sigma 1.5, five scales, Wang et al.'s weights.

    Same conventions as SSIM (data range 1, optional Y channel, crop border); torchmetrics' default `relu`
    normalization of the per-scale terms keeps the product real for anticorrelated images.
    """

    name = "ms_ssim"

    def _value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if min(sr.shape[-2:]) < MS_SSIM_MIN_SIDE:
            raise ValueError(
                f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} px after the crop border "
                f"(five scales of an 11-px window), got {tuple(sr.shape[-2:])}"
            )
        # One image at a time: its maps stay in cache.
        return torch.cat([ms_ssim_per_image(sr[i : i + 1], hr[i : i + 1]) for i in range(sr.shape[0])])


class Consistency:
    """SR3's consistency: MSE between degrade(SR) and the LR input on [0,1], reported x1e5."""

    FACTOR = 1e5

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image MSE x1e5 (B,)."""
        down = degrade(sr.float(), self.ctx.scale)
        mse = (down - lr.float()).pow(2).mean(dim=(1, 2, 3))
        return {"consistency": (mse * self.FACTOR).float()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: nothing at dataset level."""
        return {}


@functools.lru_cache(maxsize=16)
def _detail_mask(h: int, w: int, scale: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(2-D Hann window (h,w), rfft2 weights: the frequencies above the LR Nyquist 1/(2·scale) cycles/px)."""
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    fy = torch.fft.fftfreq(h).abs()[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    cut = 0.5 / scale
    # rfft2 keeps one of each ±fx pair: count those columns twice (not fx = 0, nor fx = 1/2 for even w).
    twice = torch.full((w // 2 + 1,), 2.0)
    twice[0] = 1.0
    if w % 2 == 0:
        twice[-1] = 1.0
    return window.to(device), (((fy > cut) | (fx > cut)) * twice[None, :]).to(device)


def detail_spectrum(x: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image luminance spectrum (B,h,w//2+1), Hann-windowed, and the weights of the band above LR Nyquist."""
    h, w = x.shape[-2:]
    window, mask = _detail_mask(h, w, scale, x.device)
    # Luminance without its mean, windowed so the image border adds no spurious high frequencies.
    lum = x.float().mean(dim=1)
    lum = (lum - lum.mean(dim=(1, 2), keepdim=True)) * window
    return torch.fft.rfft2(lum), mask


def band_energy(spectrum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image power of a `detail_spectrum` in the band above the LR Nyquist frequency (B,)."""
    return (spectrum.abs().square() * mask).sum(dim=(1, 2))


class _DetailBand:
    """Shared plumbing of the fine-detail metrics: per-image values from the bands above the LR Nyquist."""

    name = ""

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx

    def _value(self, s_sr: torch.Tensor, s_hr: torch.Tensor, mask: torch.Tensor, floor: float) -> torch.Tensor:
        raise NotImplementedError

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image values (B,); NaN where the HR image has no detail above the LR band (flat)."""
        a, b = prepare_pair(sr, hr, False, self.ctx.crop_border)
        s_sr, mask = detail_spectrum(a, self.ctx.scale)
        s_hr, _ = detail_spectrum(b, self.ctx.scale)
        # A floor far below any real texture keeps a flat SR output finite; a flat HR image has no reference.
        floor = 1e-10 * a.shape[-1] * a.shape[-2]
        e_hr = band_energy(s_hr, mask)
        value = self._value(s_sr, s_hr, mask, floor)
        return {self.name: torch.where(e_hr > 1e3 * floor, value, torch.nan).float()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: nothing at dataset level."""
        return {}


class Detail(_DetailBand):
    """Fine detail in dB: 10·log10 of SR's energy above the LR Nyquist frequency over HR's, per image.

    0 dB means as much fine detail as the ground truth; negative is blurrier (bicubic lands near −16 dB),
    positive is noise or over-sharpening. It scores the amount of detail, not its correctness (PSNR, SSIM
    and LPIPS do that), and needs no weights, so it is the sharpness check where LPIPS cannot run. In dB
    the mean over images is the geometric mean of the ratios, so a few flat images do not dominate it.
    """

    name = "detail"

    def _value(self, s_sr: torch.Tensor, s_hr: torch.Tensor, mask: torch.Tensor, floor: float) -> torch.Tensor:
        e_sr, e_hr = band_energy(s_sr, mask), band_energy(s_hr, mask)
        return 10 * torch.log10((e_sr + floor) / (e_hr + floor))


class DetailFidelity(_DetailBand):
    """Whether the fine detail is the right detail: an SSIM-like index of the SR and HR bands above the LR
    Nyquist frequency, 2·Re<S,H> / (|S|² + |H|²) over that band (Parseval: the same as in pixel space).

    1 = the HR image's own fine detail; 0 = detail unrelated to it (invented grain, shifted texture) or none
    at all (blur, bicubic); negative = detail in opposite phase. `detail` says how much, this says how right.
    """

    name = "detail_fidelity"

    def _value(self, s_sr: torch.Tensor, s_hr: torch.Tensor, mask: torch.Tensor, floor: float) -> torch.Tensor:
        # Cross- and auto-power of the two bands (rfft2 halves weighted as in band_energy).
        cross = (s_sr * s_hr.conj()).real.mul(mask).sum(dim=(1, 2))
        return 2 * cross / (band_energy(s_sr, mask) + band_energy(s_hr, mask) + floor)


register(
    MetricInfo(
        name="psnr",
        factory=PSNR,
        columns=(Column("psnr", "PSNR (dB)", "PSNR", "peak signal-to-noise ratio against the HR image", True),),
        help="PSNR in dB against HR (higher is better)",
        source="torchmetrics peak_signal_noise_ratio, data range 1; BasicSR's Y channel and crop border",
    )
)
register(
    MetricInfo(
        name="ssim",
        factory=SSIM,
        columns=(Column("ssim", "SSIM", "SSIM", "structural similarity against the HR image", True),),
        help="SSIM against HR (higher is better)",
        source="Wang et al. 2004 (Gaussian 11x11, sigma 1.5), valid positions as scikit-image, BasicSR; separable",
        min_size=border_window(11),
    )
)
register(
    MetricInfo(
        name="ms_ssim",
        factory=MSSSIM,
        columns=(
            Column("ms_ssim", "MS-SSIM", "MS-SSIM", "multi-scale structural similarity against the HR image", True),
        ),
        help="multi-scale SSIM against HR, five scales (higher is better)",
        source="torchmetrics multiscale_structural_similarity_index_measure's value (Wang et al. 2003 weights)",
        min_size=border_window(MS_SSIM_MIN_SIDE),
    )
)
register(
    MetricInfo(
        name="consistency",
        factory=Consistency,
        columns=(
            Column(
                "consistency",
                "Consistency (\u00d71e-5)",
                "Consistency",
                "MSE between the downsampled output and the LR input (SR3 Table 1)",
                False,
            ),
        ),
        help="MSE(degrade(SR), LR) x1e5 on [0,1] (lower is better)",
        source="SR3 (Saharia et al. 2021) Table 1, with this task's degradation",
        full_reference=False,  # against the LR input: it can score the HR image itself
        min_size=lambda ctx: ctx.scale,
    )
)
register(
    MetricInfo(
        name="detail",
        factory=Detail,
        columns=(
            Column(
                "detail",
                "Detail (dB, 0 = HR)",
                "Detail",
                "energy above the LR band vs the HR image's, dB: 0 = as much fine detail as the truth, "
                "below = blurrier, above = noisier (amount of detail, not its correctness)",
                None,
                ideal=0.0,
            ),
        ),
        help="fine-detail energy above the LR band, SR vs HR in dB (0 = as the truth; <0 blurry, >0 noisy)",
        source="evalsuite (Hann-windowed spectrum above the LR Nyquist frequency)",
    )
)
register(
    MetricInfo(
        name="detail_fidelity",
        factory=DetailFidelity,
        columns=(
            Column(
                "detail_fidelity",
                "Detail fidelity",
                "Detail fid.",
                "SSIM-like index of the output's fine detail above the LR band vs the HR image's: 1 = the true "
                "detail, 0 = unrelated detail (grain, shifted texture) or none (blur)",
                True,
            ),
        ),
        help="SSIM-like index of SR vs HR fine detail above the LR band "
        "(1 = the true detail; 0 = noise, shift or blur)",
        source="evalsuite (cross-spectrum of the Hann-windowed luminance above the LR Nyquist frequency)",
    )
)
