"""`sr3:CKPT` in the harness: batched sampling, bf16 on CUDA, per-image seeds, tiles for large images."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from baselines.checkpoint import Checkpoint, load_checkpoint
from baselines.options import SR3MethodOptions
from baselines.sr3.model import SamplingConfig, SR3Denoiser, sr3_config_from_dict
from baselines.sr3.samplers import get_sampler, per_image_noise, per_image_normal
from baselines.sr3.schedule import Schedule, from_spec
from baselines.tiling import default_overlap, pad_to_multiple, tile_count, tiled_apply
from evalsuite import distributed as D
from evalsuite.degrade import upsample
from evalsuite.methods import MethodContext, image_generators


def read_sr3_checkpoint(
    path: str | Path, config: str | Path | None = None, scale: int | None = None, task_scale: int | None = None
) -> Checkpoint:
    """An SR3 checkpoint of this project, or the public code's `I…_gen.pth` (+ its config) converted on the fly.

    For a `.pth` the scale is `scale` (option), else its config's datasets, else `task_scale` (the run's task).
    """
    if Path(path).suffix == ".pth":
        from baselines.sr3.janspiry import convert

        return convert(path, config, scale, fallback_scale=task_scale, fallback_why="the task's scale")
    for name, value in (("config", config), ("scale", scale)):
        if value is not None:
            raise ValueError(f"option `{name}` ({value}) is for the public code's .pth checkpoints, not {path}")
    return load_checkpoint(path, kind="sr3")


def load_sr3(
    path: str | Path,
    device: torch.device | str = "cpu",
    config: str | Path | None = None,
    scale: int | None = None,
    task_scale: int | None = None,
) -> tuple[SR3Denoiser, SamplingConfig]:
    """Load an SR3 checkpoint (or a public `_gen.pth`) -> (denoiser in eval mode on `device`, its sampling)."""
    return sr3_from_checkpoint(read_sr3_checkpoint(path, config, scale, task_scale), device)


def sr3_from_checkpoint(ck: Checkpoint, device: torch.device | str = "cpu") -> tuple[SR3Denoiser, SamplingConfig]:
    """An already loaded SR3 checkpoint -> (denoiser in eval mode on `device`, its stored sampling settings)."""
    cfg = sr3_config_from_dict(ck.config)
    model = SR3Denoiser(cfg)
    model.load_state_dict(ck.state_dict)
    sampling = SamplingConfig.from_dict(ck.extra.get("sampling"), cfg.train_schedule)
    return model.to(device).eval().requires_grad_(False), sampling


@dataclass
class SR3Method:
    """SR3 as a harness method: (B,3,h,w) LR in [0,1] -> (B,3,h*s,w*s)."""

    stochastic = True  # different seeds draw different outputs (--samples K measures how different)

    name: str
    scale: int
    model: SR3Denoiser
    schedule: Schedule
    sampler: str = SamplingConfig.sampler
    clip_x0: bool = SamplingConfig.clip_x0
    variance: str = SamplingConfig.variance  # ancestral noise: β_t (Algorithm 2) or the posterior's β̃_t
    seed: int = 0
    tile: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    noise_aug: float = 0.0  # LR noise-augmentation level a (checkpoints trained with noise_aug); 0: the clean LR
    _bar: Any = field(default=None, repr=False, compare=False)  # the sampling progress bar while sampling

    def _sample(self, x_lr: torch.Tensor, ids: Sequence[str]) -> torch.Tensor:
        """Sample SR images for an LR batch whose upsampled size fits the U-Net."""
        x_lr, ph, pw = pad_to_multiple(x_lr, self.scale, self.model.cfg.unet.multiple)
        # y_T and every later draw of image k come from its own generator.
        gens = image_generators(self.seed, list(ids), self.device)
        shape = (x_lr.shape[1], x_lr.shape[2] * self.scale, x_lr.shape[3] * self.scale)
        y_T = per_image_normal(shape, gens, self.device)  # noqa: N806 - the paper's name
        noise = per_image_noise(shape, gens, self.device)
        # Noise augmentation chosen at sampling (level a, model units): only when asked; never the blur.
        aug = None
        if self.model.cfg.noise_aug > 0:
            aug = torch.full((x_lr.shape[0],), float(self.noise_aug), device=self.device)
            if self.noise_aug > 0:
                x_lr = x_lr + self.noise_aug / 2 * per_image_normal(x_lr.shape[1:], gens, self.device)
        x_up = upsample(x_lr, self.scale) * 2 - 1  # (B,3,H,W) in [-1,1]
        base = self.model.base(x_up, x_lr)  # the residual's base (x_up unless cfg.backproject)

        def denoise(z_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
            # ẑ0 of the network (ŷ0, or the residual's with cfg.residual), its image clipped with clip_x0.
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                z0 = self.model(x_up, z_t, gamma, aug)
            if not self.clip_x0:
                return z0
            return self.model.diffused(base, self.model.image(base, z0).clamp(-1, 1))

        extra = {"variance": self.variance} if self.sampler == "ancestral" else {}
        if self._bar is not None:
            extra["callback"] = lambda _: self._bar.update(x_lr.shape[0])  # one step of every tile in the call
        z0 = get_sampler(self.sampler)(denoise, y_T, self.schedule.sampling_gammas(), noise, **extra)
        out = ((self.model.image(base, z0) + 1) / 2).clamp(0, 1)
        h, w = out.shape[-2:]
        return out[:, :, : h - ph * self.scale, : w - pw * self.scale]

    @torch.no_grad()
    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """Super-resolve a batch; tiles of `tile` LR px for larger images, each tile with its own seed."""
        ids = list(ids) if ids is not None else [str(i) for i in range(x_lr.shape[0])]
        x_lr = x_lr.to(self.device).float()
        with self._progress(x_lr):
            if not self.tile or max(x_lr.shape[-2:]) <= self.tile:
                return self._sample(x_lr, ids)
            return self._tiled(x_lr, ids)

    @contextlib.contextmanager
    def _progress(self, x_lr: torch.Tensor) -> Iterator[None]:
        """A bar over tile x sampler steps (on a terminal, rank 0): minutes of CPU sampling show movement."""
        tiles = x_lr.shape[0] * tile_count(*x_lr.shape[-2:], self.tile or max(x_lr.shape[-2:]), self._overlap())
        steps = len(self.schedule.sampling_gammas()) - 1
        self._bar = tqdm(
            total=tiles * steps,
            desc=f"{self.name.split('/')[-1]} sampling",
            unit="tile-step",
            leave=False,
            disable=None if D.is_main() else True,
        )
        try:
            yield
        finally:
            self._bar.close()
            self._bar = None

    def _overlap(self) -> int:
        """LR tile overlap (the cross-fade width)."""
        return default_overlap(self.tile)

    def _tiled(self, x_lr: torch.Tensor, ids: list[str]) -> torch.Tensor:
        """Tiles of `tile` LR px, each with its own seed (image id and tile index), blended."""
        b = x_lr.shape[0]
        calls = [0]

        def fn(tiles: torch.Tensor) -> torch.Tensor:
            # tiled_apply batches tiles box-major: tile j of this call is box (first + j // b) of image j % b.
            first = calls[0]
            n_boxes = tiles.shape[0] // b
            calls[0] += n_boxes
            tile_ids = [f"{ids[j % b]}#tile{first + j // b}" for j in range(tiles.shape[0])]
            return self._sample(tiles, tile_ids)

        return tiled_apply(fn, x_lr, self.scale, self.tile, self._overlap())


def build_sr3(arg: str, ctx: MethodContext) -> SR3Method:
    """`sr3:CKPT` factory; options steps, sampler, tile, clip_x0, variance override the checkpoint's defaults.

    CKPT may be the public code's `I…_gen.pth`, converted on the fly with option `config` (its JSON) and
    option `scale` (else the config's, else the task's: the weights do not say).
    """
    o = ctx.options_of(SR3MethodOptions)
    ck = read_sr3_checkpoint(arg, o.config, o.scale, ctx.scale)
    model, stored = sr3_from_checkpoint(ck, ctx.device)
    imported = ck.extra.get("imported") or {}
    cfg = model.cfg
    # The checkpoint's sampling settings, each option that is set replacing its stored value.
    sampling = stored.override(sampler=o.sampler, variance=o.variance, clip_x0=o.clip_x0)
    sampler, variance = sampling.sampler, sampling.variance
    schedule = from_spec(sampling.schedule)
    if o.steps is not None and int(o.steps) != schedule.T:
        # --steps N: the checkpoint's sampling schedule respaced to N steps over the same γ range.
        schedule = schedule.respace(int(o.steps))
    tile = int(cfg.unet.image_size // cfg.scale if o.tile is None else o.tile)
    bf16 = ctx.device.type == "cuda" and o.precision == "bf16"
    noise_aug = float(o.noise_aug or 0.0)
    if noise_aug and cfg.noise_aug <= 0:
        raise ValueError(f"option noise_aug={noise_aug}: {arg} was not trained with noise augmentation (noise_aug 0)")
    if o.compile:
        # method_options {compile: true}: torch.compile the U-Net (worth it for many sampling steps on a GPU).
        model.net = torch.compile(model.net)
    info = {
        "checkpoint": arg,
        "sampler": sampler,
        "variance": variance,
        "steps": schedule.T,
        "parameterization": cfg.parameterization,
        "embedding": cfg.embedding,
        "tile": tile,
        "bf16": bf16,
        **({"noise_aug": noise_aug} if cfg.noise_aug > 0 else {}),
    }
    if Path(arg).suffix == ".pth":
        # Imported on the fly: what the weights could not confirm, and no self-check (`evalsuite sr3 import` runs it).
        info["unconfirmed"] = "; ".join(f"{k} {v}" for k, v in imported.get("unconfirmed", {}).items())
        info["self_check"] = "not run on the fly; `evalsuite sr3 import` runs it"
    return SR3Method(
        f"sr3:{arg}",
        cfg.scale,
        model,
        schedule,
        sampler=sampler,
        clip_x0=bool(sampling.clip_x0),
        variance=variance,
        seed=ctx.seed,
        tile=tile,
        device=ctx.device,
        bf16=bf16,
        info=info,
        noise_aug=noise_aug,
    )
