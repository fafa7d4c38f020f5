"""The Real-ESRGAN second-order degradation (`--degradation realesrgan`), deterministic per image.

Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data" (ICCV-W 2021):
HR → USM sharpening → [blur (Gaussian / generalized / plateau / sinc kernels) → random resize → Gaussian or
Poisson noise (colour or grey) → JPEG] twice (the second blur with probability 0.8) → resize to HR/scale and
a final sinc filter, before or after the last JPEG. The parameters are the published defaults of the
RealESRGAN x4plus training options (`options/train_realesrgan_x4plus.yml`); the order of operations and of
the random draws follows BasicSR's `RealESRGANDataset` (kernels) and `RealESRGANModel.feed_data` (the rest),
whose functions (Apache-2.0) this mirrors: Python's `random` for choices, NumPy's legacy generator for the
kernel and stage draws, torch's for the noise and JPEG qualities, each seeded from a stable hash of the image
id, so an image's LR is the same in every run, process and batch. JPEG is BasicSR's torch codec (`DiffJPEG`
with true rounding, float quality), as Real-ESRGAN degrades with, not libjpeg: the two differ by a few
8-bit levels (chroma filters, table rounding). tests/test_realesrgan_degrade.py checks it all against BasicSR.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special

# `--degradation` values: the paper's anti-aliased bicubic (evalsuite.degrade) and this pipeline.
DEGRADATIONS = ("bicubic", "realesrgan")
LR_CONVENTION = (
    "realesrgan(HR): the Real-ESRGAN x4plus second-order degradation (blur incl. sinc, resize, Gaussian/Poisson "
    "noise, JPEG, twice, final sinc; BasicSR's published defaults), seeded per image by sha256 of its id"
)
CONSISTENCY_NOTE = (
    "LR made by --degradation realesrgan: consistency still compares the bicubic degradation of SR with the LR, "
    "so it measures agreement with a blurred, noisy, JPEG-compressed LR, not the SR3 paper's consistency "
    "(even the HR scores far above 0)"
)
KERNEL_LIST = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass(frozen=True)
class RealESRGANOptions:
    """The RealESRGAN x4plus training options (BasicSR option names) that define the degradation."""

    # First degradation: blur kernel
    blur_kernel_size: int = 21
    kernel_list: tuple[str, ...] = KERNEL_LIST
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    # Second degradation: blur kernel
    blur_kernel_size2: int = 21
    kernel_list2: tuple[str, ...] = KERNEL_LIST
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    final_sinc_prob: float = 0.8
    # First degradation: resize, noise, JPEG
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # Second degradation
    second_blur_prob: float = 0.8
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # The HR is USM-sharpened before degrading (RealESRGANModel: `gt_usm`), radius 50 (51 px), weight 0.5
    usm: bool = True


X4PLUS = RealESRGANOptions()
# Kernel sizes 7, 9, ..., 21 (RealESRGANDataset.kernel_range)
KERNEL_RANGE = [2 * v + 1 for v in range(3, 11)]


def image_seed(image_id: str, seed: int = 0) -> int:
    """A 32-bit seed from the image id (and the run seed), the same in every process (sha256, not hash())."""
    return int.from_bytes(hashlib.sha256(f"realesrgan:{seed}:{image_id}".encode()).digest()[:4], "little")


@dataclass
class Draws:
    """The three random streams of the pipeline (as BasicSR's globals `random`, `np.random`, torch's)."""

    py: random.Random
    np: np.random.RandomState
    torch: torch.Generator

    @classmethod
    def seeded(cls, seed: int) -> Draws:
        """All three streams seeded with `seed` (as random.seed, np.random.seed, torch.manual_seed would)."""
        return cls(random.Random(seed), np.random.RandomState(seed), torch.Generator().manual_seed(seed))


# --- kernels (BasicSR basicsr/data/degradations.py) -----------------------------------------------------------


def _grid(kernel_size: int) -> np.ndarray:
    """(K, K, 2) pixel offsets from the kernel centre (x, y)."""
    ax = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)


def _sigma_matrix(sig_x: float, sig_y: float, theta: float, isotropic: bool) -> np.ndarray:
    if isotropic:
        return np.array([[sig_x**2, 0], [0, sig_x**2]])
    d = np.array([[sig_x**2, 0], [0, sig_y**2]])
    u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return u @ d @ u.T


def shaped_kernel(
    kind: str, kernel_size: int, sig_x: float, sig_y: float, theta: float, beta: float, isotropic: bool
) -> np.ndarray:
    """A normalized bivariate kernel: `gaussian`, `generalized` (exp(-½ q^β)) or `plateau` (1 / (1 + q^β))."""
    grid = _grid(kernel_size)
    inv = np.linalg.inv(_sigma_matrix(sig_x, sig_y, theta, isotropic))
    q = np.sum(np.dot(grid, inv) * grid, 2)  # the quadratic form xᵀ Σ⁻¹ x
    if kind == "gaussian":
        k = np.exp(-0.5 * q)
    elif kind == "generalized":
        k = np.exp(-0.5 * np.power(q, beta))
    elif kind == "plateau":
        k = np.reciprocal(np.power(q, beta) + 1)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return k / np.sum(k)


def mixed_kernel(d: Draws, kernel_list, kernel_prob, kernel_size, sigma_range, betag_range, betap_range) -> np.ndarray:
    """One random blur kernel (BasicSR `random_mixed_kernels`, same draws in the same order)."""
    kernel_type = d.py.choices(list(kernel_list), list(kernel_prob))[0]
    isotropic = not kernel_type.endswith("aniso")
    sig_x = d.np.uniform(sigma_range[0], sigma_range[1])
    if isotropic:
        sig_y, theta = sig_x, 0.0
    else:
        sig_y = d.np.uniform(sigma_range[0], sigma_range[1])
        theta = d.np.uniform(-math.pi, math.pi)
    if kernel_type in ("iso", "aniso"):
        kernel = shaped_kernel("gaussian", kernel_size, sig_x, sig_y, theta, 1.0, isotropic)
    else:
        lo, hi = betag_range if kernel_type.startswith("generalized") else betap_range
        beta = d.np.uniform(lo, 1) if d.np.uniform() < 0.5 else d.np.uniform(1, hi)
        kind = "generalized" if kernel_type.startswith("generalized") else "plateau"
        kernel = shaped_kernel(kind, kernel_size, sig_x, sig_y, theta, beta, isotropic)
    return kernel / np.sum(kernel)


def sinc_kernel(cutoff: float, kernel_size: int, pad_to: int = 0) -> np.ndarray:
    """A circularly symmetric low-pass (sinc) kernel of cut-off `cutoff` rad/px (BasicSR `circular_lowpass_kernel`)."""
    c = (kernel_size - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.fromfunction(
            lambda x, y: cutoff
            * special.j1(cutoff * np.sqrt((x - c) ** 2 + (y - c) ** 2))
            / (2 * np.pi * np.sqrt((x - c) ** 2 + (y - c) ** 2)),
            [kernel_size, kernel_size],
        )
    kernel[(kernel_size - 1) // 2, (kernel_size - 1) // 2] = cutoff**2 / (4 * np.pi)
    kernel = kernel / np.sum(kernel)
    if pad_to > kernel_size:
        p = (pad_to - kernel_size) // 2
        kernel = np.pad(kernel, ((p, p), (p, p)))
    return kernel


def blur_kernel(d: Draws, o: RealESRGANOptions, second: bool) -> torch.Tensor:
    """The first or second blur kernel, padded to 21 px (RealESRGANDataset.__getitem__)."""
    size = d.py.choice(KERNEL_RANGE)
    sinc_prob = o.sinc_prob2 if second else o.sinc_prob
    if d.np.uniform() < sinc_prob:
        # Sinc kernels for sizes 7..21: a narrower cut-off range for the small ones
        omega_c = d.np.uniform(np.pi / 3, np.pi) if size < 13 else d.np.uniform(np.pi / 5, np.pi)
        kernel = sinc_kernel(omega_c, size, pad_to=False)
    elif second:
        kernel = mixed_kernel(d, o.kernel_list2, o.kernel_prob2, size, o.blur_sigma2, o.betag_range2, o.betap_range2)
    else:
        kernel = mixed_kernel(d, o.kernel_list, o.kernel_prob, size, o.blur_sigma, o.betag_range, o.betap_range)
    pad = (21 - size) // 2
    return torch.FloatTensor(np.pad(kernel, ((pad, pad), (pad, pad))))


def final_sinc(d: Draws, o: RealESRGANOptions) -> torch.Tensor:
    """The final sinc kernel (probability final_sinc_prob), else the identity pulse, 21 px."""
    if d.np.uniform() < o.final_sinc_prob:
        size = d.py.choice(KERNEL_RANGE)
        omega_c = d.np.uniform(np.pi / 3, np.pi)
        return torch.FloatTensor(sinc_kernel(omega_c, size, pad_to=21))
    pulse = torch.zeros(21, 21)
    pulse[10, 10] = 1
    return pulse


# --- image operations (BasicSR basicsr/utils/img_process_util.py, degradations.py) ---------------------------


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each channel of (B,C,H,W) with one (k,k) kernel, reflect padding (BasicSR `filter2D`).

    Images no larger than the padding (where reflect padding is undefined and BasicSR fails) pad by replication.
    """
    k = kernel.shape[-1]
    b, c, h, w = img.shape
    mode = "reflect" if min(h, w) > k // 2 else "replicate"
    x = F.pad(img, (k // 2, k // 2, k // 2, k // 2), mode=mode)
    ph, pw = x.shape[-2:]
    return F.conv2d(x.reshape(b * c, 1, ph, pw), kernel.reshape(1, 1, k, k).to(img)).reshape(b, c, h, w)


def _cv2_gaussian(ksize: int) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, 0): σ = 0.3·((ksize − 1)/2 − 1) + 0.8, normalized, float64."""
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize) - (ksize - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum())[:, None]


def _separable(img: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """filter2d with the kernel g gᵀ, as two 1-D passes (the same sums, ~k/2 times fewer operations)."""
    k = g.numel()
    b, c, h, w = img.shape
    mode = "reflect" if min(h, w) > k // 2 else "replicate"
    x = F.pad(img, (k // 2, k // 2, k // 2, k // 2), mode=mode).reshape(b * c, 1, h + k - 1, w + k - 1)
    x = F.conv2d(F.conv2d(x, g.view(1, 1, k, 1).to(img)), g.view(1, 1, 1, k).to(img))
    return x.reshape(b, c, h, w)


def usm_sharpen(img: torch.Tensor, weight: float = 0.5, threshold: float = 10, radius: int = 50) -> torch.Tensor:
    """Unsharp masking of (B,3,H,W) in [0,1] (BasicSR `USMSharp`, radius 50 → a 51 px Gaussian)."""
    radius += 1 - radius % 2
    g = torch.from_numpy(_cv2_gaussian(radius)[:, 0]).float()
    blur = _separable(img, g)
    residual = img - blur
    mask = (torch.abs(residual) * 255 > threshold).float()
    soft_mask = _separable(mask, g)
    sharp = torch.clip(img + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * img


def _gray(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as torchvision's rgb_to_grayscale: (B,1,H,W)."""
    r, g, b = img.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(dim=-3)


def gaussian_noise(img: torch.Tensor, sigma_range, gray_prob: float, gen: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise, σ ~ U(sigma_range) in 8-bit levels, grey with probability gray_prob; clipped to [0,1]."""
    b, _, h, w = img.shape
    sigma = torch.rand(b, dtype=img.dtype, generator=gen) * (sigma_range[1] - sigma_range[0]) + sigma_range[0]
    gray = (torch.rand(b, dtype=img.dtype, generator=gen) < gray_prob).float().view(b, 1, 1, 1)
    sigma = sigma.view(b, 1, 1, 1)
    use_gray = torch.sum(gray) > 0
    if use_gray:
        noise_gray = (torch.randn(h, w, dtype=img.dtype, generator=gen) * sigma / 255.0).view(b, 1, h, w)
    noise = torch.randn(img.shape, dtype=img.dtype, generator=gen) * sigma / 255.0
    if use_gray:
        noise = noise * (1 - gray) + noise_gray * gray
    return torch.clamp(img + noise, 0, 1)


def _poisson(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Poisson noise of an image rounded to 8 bits, with 2^⌈log2(#levels)⌉ photon levels per image."""
    img = torch.clamp((img * 255.0).round(), 0, 255) / 255.0
    vals = [2 ** np.ceil(np.log2(len(torch.unique(img[i])))) for i in range(img.shape[0])]
    v = img.new_tensor(vals).view(-1, 1, 1, 1)
    return torch.poisson(img * v, generator=gen) / v - img


def poisson_noise(img: torch.Tensor, scale_range, gray_prob: float, gen: torch.Generator) -> torch.Tensor:
    """Add Poisson noise scaled by s ~ U(scale_range), grey with probability gray_prob; clipped to [0,1]."""
    b, _, h, w = img.shape
    scale = torch.rand(b, dtype=img.dtype, generator=gen) * (scale_range[1] - scale_range[0]) + scale_range[0]
    gray = (torch.rand(b, dtype=img.dtype, generator=gen) < gray_prob).float().view(b, 1, 1, 1)
    use_gray = torch.sum(gray) > 0
    if use_gray:
        noise_gray = _poisson(_gray(img), gen).expand(b, 3, h, w)
    noise = _poisson(img, gen)
    if use_gray:
        noise = noise * (1 - gray) + noise_gray * gray
    return torch.clamp(img + noise * scale.view(b, 1, 1, 1), 0, 1)


# JPEG quantization tables (ITU T.81 Annex K), as DiffJPEG holds them (transposed)
_Y_TABLE = torch.tensor(
    [[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
     [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
     [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32).T
_C_TABLE = torch.full((8, 8), 99.0)
_C_TABLE[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]).T.float()


def _dct_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(8,8,8,8) forward and inverse DCT bases and the (8,8) α⊗α of the 8x8 DCT-II."""
    i = np.arange(8)
    c = np.cos((2 * i[:, None] + 1) * i[None, :] * np.pi / 16)  # c[x, u] = cos((2x+1)uπ/16)
    fwd = np.einsum("xu,yv->xyuv", c, c).astype(np.float32)
    inv = np.einsum("ux,vy->xyuv", c, c).astype(np.float32)
    alpha = np.array([1.0 / np.sqrt(2)] + [1] * 7)
    return torch.from_numpy(fwd), torch.from_numpy(inv), torch.from_numpy(np.outer(alpha, alpha)).float()


_DCT, _IDCT, _ALPHA = _dct_tensors()


def quality_factor(quality: torch.Tensor) -> torch.Tensor:
    """JPEG quality (B,) -> the factor the tables are scaled by (IJG: 50/q below 50, 2 - q/50 above)."""
    q = quality.float()
    return torch.where(q < 50, 5000.0 / q, 200.0 - q * 2) / 100.0


def _blocks(x: torch.Tensor) -> torch.Tensor:
    b, h, w = x.shape
    return x.view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, -1, 8, 8)


def _unblocks(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = x.shape[0]
    return x.view(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG compression and decompression of (B,3,H,W) in [0,1] at float quality (B,): BasicSR's
    `DiffJPEG(differentiable=False)`, the codec Real-ESRGAN degrades with (YCbCr, 4:2:0 by 2x2 means, 8x8 DCT,
    tables scaled by the quality factor, rounding, nearest chroma upsampling), images zero-padded to 16 px."""
    b, _, h, w = img.shape
    factor = quality_factor(quality).view(b, 1, 1, 1)
    x = F.pad(img, (0, (16 - w % 16) % 16, 0, (16 - h % 16) % 16), mode="constant", value=0)
    ph, pw = x.shape[-2:]
    m = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).T
    ycc = torch.tensordot((x * 255).permute(0, 2, 3, 1), m, dims=1) + torch.tensor([0.0, 128.0, 128.0])
    comps = {
        "y": ycc[..., 0],
        "cb": F.avg_pool2d(ycc[..., 1].unsqueeze(1), 2, 2, count_include_pad=False).squeeze(1),
        "cr": F.avg_pool2d(ycc[..., 2].unsqueeze(1), 2, 2, count_include_pad=False).squeeze(1),
    }
    out = {}
    for k, comp in comps.items():
        table = (_Y_TABLE if k == "y" else _C_TABLE).expand(b, 1, 8, 8) * factor
        ch, cw = comp.shape[-2:]
        coef = (_ALPHA * 0.25) * torch.tensordot(_blocks(comp) - 128, _DCT, dims=2)
        coef = torch.round(coef.float() / table) * table  # quantize, dequantize
        pix = 0.25 * torch.tensordot(coef * _ALPHA, _IDCT, dims=2) + 128
        out[k] = _unblocks(pix, ch, cw)
    up = {k: out[k].unsqueeze(-1).repeat(1, 1, 2, 2).view(b, ph, pw) for k in ("cb", "cr")}
    ycc = torch.stack([out["y"], up["cb"], up["cr"]], dim=3)
    mi = torch.tensor([[1.0, 0.0, 1.402], [1, -0.344136, -0.714136], [1, 1.772, 0]]).T
    rgb = torch.tensordot(ycc + torch.tensor([0, -128.0, -128.0]), mi, dims=1).permute(0, 3, 1, 2)
    return (rgb.clamp(0, 255) / 255)[:, :, :h, :w].to(img.dtype)


Jpeg = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _resize_choice(d: Draws, probs, rng: tuple[float, float]) -> float:
    updown = d.py.choices(["up", "down", "keep"], list(probs))[0]
    if updown == "up":
        return d.np.uniform(1, rng[1])
    if updown == "down":
        return d.np.uniform(rng[0], 1)
    return 1.0


def realesrgan_degrade(
    hr: torch.Tensor, scale: int, d: Draws, o: RealESRGANOptions = X4PLUS, jpeg_fn: Jpeg = jpeg
) -> torch.Tensor:
    """(1,3,H,W) HR in [0,1] -> (1,3,H/s,W/s) LR rounded to 8 bits: the second-order pipeline, draws from `d`."""
    if hr.ndim != 4 or hr.shape[0] != 1:
        raise ValueError(f"realesrgan_degrade takes one image (1,3,H,W), got shape {tuple(hr.shape)}")
    ori_h, ori_w = hr.shape[-2:]
    # Kernels first, as the dataset draws them.
    kernel1, kernel2, sinc = blur_kernel(d, o, False), blur_kernel(d, o, True), final_sinc(d, o)
    x = usm_sharpen(hr.float()) if o.usm else hr.float()
    # ---- first degradation: blur, resize, noise, JPEG
    out = filter2d(x, kernel1)
    s = _resize_choice(d, o.resize_prob, o.resize_range)
    mode = d.py.choice(["area", "bilinear", "bicubic"])
    out = F.interpolate(out, scale_factor=s, mode=mode)
    if d.np.uniform() < o.gaussian_noise_prob:
        out = gaussian_noise(out, o.noise_range, o.gray_noise_prob, d.torch)
    else:
        out = poisson_noise(out, o.poisson_scale_range, o.gray_noise_prob, d.torch)
    q = out.new_zeros(out.shape[0]).uniform_(*o.jpeg_range, generator=d.torch)
    out = jpeg_fn(torch.clamp(out, 0, 1), q)
    # ---- second degradation: blur (sometimes), resize relative to the LR size, noise
    if d.np.uniform() < o.second_blur_prob:
        out = filter2d(out, kernel2)
    s = _resize_choice(d, o.resize_prob2, o.resize_range2)
    mode = d.py.choice(["area", "bilinear", "bicubic"])
    out = F.interpolate(out, size=(max(1, int(ori_h / scale * s)), max(1, int(ori_w / scale * s))), mode=mode)
    if d.np.uniform() < o.gaussian_noise_prob2:
        out = gaussian_noise(out, o.noise_range2, o.gray_noise_prob2, d.torch)
    else:
        out = poisson_noise(out, o.poisson_scale_range2, o.gray_noise_prob2, d.torch)
    # ---- the final sinc filter and JPEG, in either order (resize back to H/s x W/s with the sinc)
    lr_size = (ori_h // scale, ori_w // scale)
    if d.np.uniform() < 0.5:
        mode = d.py.choice(["area", "bilinear", "bicubic"])
        out = filter2d(F.interpolate(out, size=lr_size, mode=mode), sinc)
        q = out.new_zeros(out.shape[0]).uniform_(*o.jpeg_range2, generator=d.torch)
        out = jpeg_fn(torch.clamp(out, 0, 1), q)
    else:
        q = out.new_zeros(out.shape[0]).uniform_(*o.jpeg_range2, generator=d.torch)
        out = jpeg_fn(torch.clamp(out, 0, 1), q)
        mode = d.py.choice(["area", "bilinear", "bicubic"])
        out = filter2d(F.interpolate(out, size=lr_size, mode=mode), sinc)
    # Clamp and round to 8 bits, as saved.
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def degrade_image(hr: torch.Tensor, scale: int, image_id: str, seed: int = 0) -> torch.Tensor:
    """The realesrgan LR of one image (1,3,H,W) in [0,1]: seeded by its id, identical across runs and processes."""
    return realesrgan_degrade(hr, scale, Draws.seeded(image_seed(image_id, seed)))


def make_lr(hr: torch.Tensor, scale: int, degradation: str, image_id: str) -> torch.Tensor:
    """The LR of one HR image (1,3,H,W) in [0,1] under `degradation` (bicubic: the protocol's), 8-bit levels."""
    from evalsuite.degrade import degrade, quantize

    if degradation == "bicubic":
        return quantize(degrade(hr, scale))
    if degradation == "realesrgan":
        return degrade_image(hr, scale, image_id)
    raise ValueError(f"unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}")
