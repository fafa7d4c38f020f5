"""The option sets of the baseline methods (`method_options` in a spec), light to import for validation.

(The training recipes' own options, `evalsuite train ... --set`, live with the recipes.)

`None` means "the checkpoint's or the method's own default".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SR3MethodOptions:
    """`sr3:CKPT`: sampler settings (defaults from the checkpoint), tiles, precision."""

    steps: int | None = None  # sampler steps: the checkpoint's schedule respaced to N steps
    sampler: str | None = None  # ancestral | ddim
    tile: int | None = None  # LR tile size; default: the training LR size
    clip_x0: bool | None = None  # clip the predicted y0 to [-1, 1] at every step
    variance: str | None = None  # ancestral sampler's variance: beta | posterior (default: the checkpoint's)
    precision: str = "bf16"  # bf16 | fp32 (bf16 applies on CUDA only)
    compile: bool = False  # torch.compile the U-Net (worth it for many steps on a GPU)
    config: str | None = None  # the public implementation's config JSON, for importing a .pth on the fly
    scale: int | None = None  # upscaling factor of a .pth imported on the fly (default: its config's, else the task's)
    noise_aug: float | None = None  # LR noise-augmentation level at sampling (checkpoints trained with it; 0)


@dataclass(frozen=True)
class RegressionMethodOptions:
    """`regression:CKPT`: tiles and precision."""

    tile: int | None = None  # LR tile size; default: the training LR size
    precision: str = "bf16"  # bf16 | fp32 (bf16 applies on CUDA only)


@dataclass(frozen=True)
class GANMethodOptions:
    """GAN and spandrel methods: tiled inference and precision."""

    tile: int | None = None  # LR tile size (default: the method's own)
    tile_overlap: int | None = None  # overlap between tiles in LR px
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    pre_pad: int | None = None  # reflect padding before the network, in LR px


@dataclass(frozen=True)
class DiffusersMethodOptions:
    """`diffusers:PATH_OR_HUB_ID`: sampling settings (None: the pipeline's defaults), tiles, precision."""

    steps: int | None = None  # denoising steps (the pipelines' defaults: SD upscaler 75, LDM-SR 100)
    guidance_scale: float | None = None  # classifier-free guidance, SD upscaler only (default 9.0; <= 1: off)
    noise_level: int | None = None  # noise added to the LR, SD upscaler only (default 20; at most max_noise_level)
    prompt: str | None = None  # text prompt, SD upscaler only (default: empty)
    negative_prompt: str | None = None  # SD upscaler only
    tile: int | None = None  # LR tile size (default 128; 0: whole images)
    bf16: bool | None = None  # run the pipeline in bf16 (CUDA only; default fp32)
