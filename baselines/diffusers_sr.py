"""`diffusers:PATH_OR_HUB_ID`: diffusion SR pipelines from the `diffusers` library as harness methods.

Two pipeline classes are supported, read from the folder's `model_index.json`:
- `StableDiffusionUpscalePipeline` (stabilityai/stable-diffusion-x4-upscaler): a text-conditioned latent
  U-Net at LR resolution, the noised LR concatenated on channels, the VAE decoder upsampling 4x;
- `LDMSuperResolutionPipeline` (CompVis/ldm-super-resolution-4x-openimages): the same without text, a VQ
  decoder upsampling 4x.
The scale is the decoder's upsampling, 2**(len(block_out_channels) - 1) of the VAE/VQ config, and must be
the task's. Every image draws its noise from its own torch.Generator seeded by the image id (as SR3's do),
so an output never depends on the batch it was in; `--samples K` draws K outputs from seeds '<id>#s<k>'.
Images larger than `tile` LR px run in overlapping tiles (baselines.tiling), each tile with its own seed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from baselines.options import DiffusersMethodOptions
from baselines.tiling import default_overlap, pad_to_multiple, tiled_apply
from evalsuite.hub import HubError, resolve_hub_ref
from evalsuite.methods import MethodContext, image_generators, image_seed
from evalsuite.options import OptionError

SD_UPSCALE = "StableDiffusionUpscalePipeline"
LDM_SR = "LDMSuperResolutionPipeline"
SUPPORTED = (SD_UPSCALE, LDM_SR)
EXTRA = "pip install 'evalsuite[diffusers]'"
DEFAULT_TILE = 128  # LR px: the SD x4 upscaler's usual input size (512 px out), and LDM-SR's
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# Schedulers whose step draws noise: the LDM pipeline does not hand them a generator, so those images run
# one at a time under a torch RNG seeded by the image (still one seed per image, at any batch size).
_NOISY_STEP = ("DDPMScheduler", "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler")
_SD_ONLY = ("guidance_scale", "noise_level", "prompt", "negative_prompt")


def import_diffusers() -> Any:
    """The diffusers module, or an ImportError that names the extra to install."""
    try:
        import diffusers
    except ImportError as exc:
        raise ImportError(f"diffusers: methods need the `diffusers` extra: {EXTRA}") from exc
    return diffusers


def locate(arg: str) -> tuple[Path, dict[str, Any] | None]:
    """A pipeline folder: a local path, or a Hub id (ORG/REPO[@REV]) resolved through the Hub cache."""
    path = Path(arg).expanduser()
    if path.exists():
        return path, None
    if _HUB_ID.match(arg):
        try:
            return resolve_hub_ref("hf:" + arg)
        except HubError as exc:
            raise HubError(f"diffusers:{arg}: no such folder here; as a Hub id: {exc}") from None
    raise FileNotFoundError(f"diffusers:{arg}: no such folder, and not a Hub id (ORG/REPO[@REVISION])")


def pipeline_class(folder: Path) -> str:
    """The pipeline class named in folder/model_index.json; ValueError for unsupported ones."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{folder}: no model_index.json; a diffusers: method needs a pipeline folder")
    name = json.loads(index.read_text()).get("_class_name")
    if name not in SUPPORTED:
        raise ValueError(f"{index}: pipeline {name!r} not supported; supported: {', '.join(SUPPORTED)}")
    return name


def _decoder(pipe: Any) -> Any:
    return pipe.vae if hasattr(pipe, "vae") else pipe.vqvae


def pipeline_scale(pipe: Any) -> int:
    """The upscaling factor: the VAE/VQ decoder's, 2 ** (number of its blocks - 1), read from its config."""
    return 2 ** (len(_decoder(pipe).config.block_out_channels) - 1)


def lr_multiple(pipe: Any, scale: int) -> int:
    """The LR size the pipeline needs a multiple of: its U-Net's down-sampling and the image processor's."""
    unet = 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    return unet * scale // math.gcd(unet, scale) if hasattr(pipe, "vae") else unet


@dataclass
class DiffusersSRMethod:
    """A diffusers SR pipeline as a harness method: (B,3,h,w) LR in [0,1] -> (B,3,h*s,w*s)."""

    stochastic = True  # different seeds draw different outputs (--samples K measures how different)

    name: str
    scale: int
    pipe: Any
    kind: str  # SD_UPSCALE | LDM_SR
    steps: int
    seed: int = 0
    tile: int = DEFAULT_TILE
    overlap: int = 0
    guidance_scale: float = 9.0
    noise_level: int = 20
    prompt: str = ""
    negative_prompt: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    info: dict[str, Any] = field(default_factory=dict)

    def _run(self, x_lr: torch.Tensor, ids: list[str]) -> torch.Tensor:
        """One pipeline call on LR that fits it: padded to the pipeline's multiple, cropped back."""
        multiple = lr_multiple(self.pipe, self.scale)
        x, ph, pw = pad_to_multiple(x_lr, 1, multiple)
        gens = image_generators(self.seed, ids, self.device)
        if self.kind == SD_UPSCALE:
            n = x.shape[0]
            out = self.pipe(
                prompt=[self.prompt] * n,
                image=x.to(self.dtype),  # [0,1]: the pipeline's image processor maps it to [-1,1]
                num_inference_steps=self.steps,
                guidance_scale=self.guidance_scale,
                noise_level=self.noise_level,
                negative_prompt=[self.negative_prompt] * n if self.negative_prompt is not None else None,
                generator=gens,
                output_type="pt",
            ).images
        elif type(self.pipe.scheduler).__name__ in _NOISY_STEP:
            out = torch.cat([self._ldm_alone(x[k : k + 1], ids[k], gens[k]) for k in range(x.shape[0])])
        else:
            out = self._ldm(x, gens)
        out = out.float().clamp(0, 1)
        h, w = out.shape[-2:]
        return out[:, :, : h - ph * self.scale, : w - pw * self.scale]

    def _ldm(self, x: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        image = (x * 2 - 1).to(self.dtype)  # the LDM pipeline takes tensors in [-1,1]
        return self.pipe(image=image, num_inference_steps=self.steps, generator=gens, output_type="pt").images

    def _ldm_alone(self, x: torch.Tensor, image_id: str, gen: torch.Generator) -> torch.Tensor:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(image_seed(self.seed, image_id + "#steps"))
            return self._ldm(x, [gen])

    @torch.no_grad()
    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """Super-resolve a batch; images larger than `tile` run in overlapping tiles, each with its own seed."""
        ids = list(ids) if ids is not None else [str(i) for i in range(x_lr.shape[0])]
        x_lr = x_lr.to(self.device).float()
        if not self.tile or max(x_lr.shape[-2:]) <= self.tile:
            return self._run(x_lr, ids)
        b, calls = x_lr.shape[0], [0]

        def fn(tiles: torch.Tensor) -> torch.Tensor:
            # tiled_apply batches tiles box-major: tile j of this call is box (first + j // b) of image j % b.
            first = calls[0]
            calls[0] += tiles.shape[0] // b
            return self._run(tiles, [f"{ids[j % b]}#tile{first + j // b}" for j in range(tiles.shape[0])])

        return tiled_apply(fn, x_lr, self.scale, self.tile, self.overlap)


def build_diffusers(arg: str, ctx: MethodContext) -> DiffusersSRMethod:
    """`diffusers:PATH_OR_HUB_ID` factory: loads the pipeline, checks its scale, applies the typed options."""
    o = ctx.options_of(DiffusersMethodOptions)
    folder, hub = locate(arg)
    kind = pipeline_class(folder)
    if kind == LDM_SR:
        given = [k for k in _SD_ONLY if getattr(o, k) is not None]
        if given:
            raise OptionError(f"diffusers:{arg}: option(s) {', '.join(given)} apply to {SD_UPSCALE} only, not {kind}")
    diffusers = import_diffusers()
    if kind == SD_UPSCALE and importlib.util.find_spec("transformers") is None:
        raise ImportError(f"diffusers:{arg}: {kind} needs transformers (its CLIP text encoder): {EXTRA}")
    bf16 = bool(o.bf16) and ctx.device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    extra: dict[str, Any] = {"safety_checker": None} if kind == SD_UPSCALE else {}
    if importlib.util.find_spec("accelerate") is None:
        extra["low_cpu_mem_usage"] = False  # what diffusers falls back to without accelerate, minus its warning
    with contextlib.redirect_stdout(None), warnings.catch_warnings():
        # `torch_dtype` (which every diffusers version takes) is being renamed `dtype` by newer ones.
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        pipe = getattr(diffusers, kind).from_pretrained(folder, torch_dtype=dtype, local_files_only=True, **extra)
    pipe = pipe.to(ctx.device)
    pipe.set_progress_bar_config(disable=True)
    scale = pipeline_scale(pipe)
    if scale != ctx.scale:
        raise ValueError(
            f"diffusers:{arg}: this {kind} upscales {scale}x (its decoder's config) but the task needs {ctx.scale}x; "
            f"pick a task or --scale of {scale}"
        )
    noise_level = 20 if o.noise_level is None else int(o.noise_level)
    max_noise = int(getattr(pipe.config, "max_noise_level", noise_level))
    if kind == SD_UPSCALE and not 0 <= noise_level <= max_noise:
        raise OptionError(f"diffusers:{arg}: option noise_level={noise_level} must be within 0..{max_noise}")
    tile = DEFAULT_TILE if o.tile is None else int(o.tile)
    default_steps = 75 if kind == SD_UPSCALE else 100  # the pipelines' own defaults
    method = DiffusersSRMethod(
        f"diffusers:{arg}",
        scale,
        pipe,
        kind,
        steps=default_steps if o.steps is None else int(o.steps),
        seed=ctx.seed,
        tile=tile,
        overlap=default_overlap(tile) if tile else 0,
        guidance_scale=9.0 if o.guidance_scale is None else float(o.guidance_scale),
        noise_level=noise_level,
        prompt=o.prompt or "",
        negative_prompt=o.negative_prompt,
        device=ctx.device,
        dtype=dtype,
    )
    method.info = {
        "pipeline": kind,
        "folder": str(folder),
        "scheduler": type(pipe.scheduler).__name__,
        "steps": method.steps,
        "tile": tile,
        "bf16": bf16,
        **(
            {"guidance_scale": method.guidance_scale, "noise_level": method.noise_level, "prompt": method.prompt}
            if kind == SD_UPSCALE
            else {}
        ),
        **({"hf": hub} if hub else {}),
    }
    return method


def pipeline_scales(arg: str | None) -> tuple[int, ...] | None:
    """The scale of a local pipeline folder, read from its decoder's config alone (None: not known here)."""
    folder = Path(arg or "").expanduser()
    for sub in ("vae", "vqvae"):
        try:
            blocks = json.loads((folder / sub / "config.json").read_text())["block_out_channels"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return (2 ** (len(blocks) - 1),)
    return None
