"""ONE training loop for every trainable baseline (SR3, regression, GAN), driven by a small Recipe.

The loop owns everything that is not the model's objective: data (random HR crops, LR made on the fly
with `evalsuite.degrade.degrade`, optional CDM blur), DDP through torchrun (one code path for 1 or N
processes), bf16 autocast on CUDA, Adam warm-up, gradient clipping, EMA of the exported module, exact
resume, periodic checkpoints, a progress bar and a CSV log. A Recipe owns the objective; see
docs/training.md for the protocol.
"""

from __future__ import annotations

import copy
import csv
import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from baselines.checkpoint import config_to_dict, load_state, save_checkpoint, save_state, state_path
from baselines.data import CropDataset, crop_loader
from evalsuite import distributed as D
from evalsuite.degrade import degrade
from evalsuite.distributed import pick_device

# kind -> "module:function" (TrainConfig, options: dict) -> Recipe; imported only when used.
RECIPES: dict[str, str] = {
    "sr3": "baselines.sr3.recipe:make_recipe",
    "regression": "baselines.regression:make_recipe",
    "gan": "baselines.gan.recipe:make_recipe",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run that is not the model or its objective."""

    data: str
    out: str
    scale: int
    crop: int = 128  # HR crop side (LR crops are crop // scale)
    batch_size: int = 16  # global batch, split evenly over the processes
    steps: int = 1000
    lr: float | None = None  # None: the recipe's default (SR3 1e-4, regression 1e-5)
    warmup: int = 10_000  # linear warm-up steps (paper: 10k); shortened automatically to steps // 10 if longer
    grad_clip: float = 1.0  # max global grad norm per optimizer; 0 disables
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay_t = min(ema_decay, (1 + t) / (10 + t)): makes 0.9999 usable in short runs
    save_every: int = 1000
    keep_every: int = 0  # also keep step-NNNNNNN.safetensors snapshots every N steps (0: only the latest)
    log_every: int = 10
    seed: int = 0
    blur_aug: bool = False  # CDM: 3x3 Gaussian blur of the LR, sigma ~ U(0.4, 0.6), on 50% of examples
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Batch:
    """One training batch: HR crops and their LR inputs, both (B,3,*,*) float in [0,1]."""

    hr: torch.Tensor  # (B,3,H,W)
    lr: torch.Tensor  # (B,3,H/s,W/s)
    scale: int


class Recipe(Protocol):
    """What a trainable baseline gives the loop (see docs/training.md)."""

    kind: str  # checkpoint kind: sr3 | regression | gan | ...
    export: str  # name of the module whose EMA weights are the checkpoint
    config: Any  # frozen dataclass (or dict): everything needed to rebuild the exported module

    def build_modules(self) -> dict[str, nn.Module]:
        """Fresh modules by name, e.g. {"net": unet} or {"generator": g, "discriminator": d}."""
        ...

    def build_optimizers(self, modules: dict[str, nn.Module], lr: float | None) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per name (names are free; `Update.step(name, loss)` refers to them)."""
        ...

    def train_step(self, models: dict[str, nn.Module], batch: Batch, step: int, update: Update) -> dict[str, float]:
        """Compute the losses, call `update.step(name, loss)` per optimizer, return scalars to log."""
        ...

    def checkpoint_extra(self) -> dict[str, Any]:
        """Extra JSON stored in the checkpoint (e.g. sampling defaults)."""
        ...


class Update:
    """Backward + clip + optimizer step for one named optimizer, handed to `Recipe.train_step`."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], grad_clip: float):
        """Wrap the run's optimizers."""
        self.optimizers, self.grad_clip = optimizers, grad_clip
        self.grad_norms: dict[str, torch.Tensor] = {}
        self.stepped: set[str] = set()  # optimizers stepped in the current training step

    def step(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """Zero this optimizer's grads, backpropagate `loss`, clip, step; returns the unclipped grad norm (a tensor)."""
        opt = self.optimizers[name]
        # Zero first: grads left by another optimizer's backward (GAN: D's grads from G's loss) are dropped.
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip).detach()
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])) if params else torch.zeros(())
        opt.step()
        self.grad_norms[name] = norm
        self.stepped.add(name)
        return norm


class EMA:
    """Exponential moving average of a module's parameters and buffers, kept in fp32."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        """Start the average at the module's current weights."""
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used after optimizer step `step` (0-based)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """ema <- d * ema + (1 - d) * weights; buffers are copied."""
        d = self.decay_at(step)
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach().to(e.dtype), 1.0 - d)
        for e, b in zip(self.module.buffers(), module.buffers(), strict=True):
            e.copy_(b)


def gaussian_blur_aug(x_lr: torch.Tensor, p: float = 0.5, sigma: tuple[float, float] = (0.4, 0.6)) -> torch.Tensor:
    """CDM conditioning augmentation: 3x3 Gaussian blur, sigma ~ U(sigma), on a fraction p of examples."""
    b = x_lr.shape[0]
    # Which examples are blurred, and each one's sigma (global RNG, so resume reproduces it).
    use = torch.rand(b, device=x_lr.device) < p
    s = torch.empty(b, device=x_lr.device).uniform_(*sigma)
    # Per-example separable 3-tap kernel [e, 1, e] / (1 + 2e), e = exp(-1 / (2 sigma^2)).
    e = torch.exp(-0.5 / s**2)
    k1 = torch.stack([e, torch.ones_like(e), e], dim=1) / (1 + 2 * e)[:, None]  # (B,3)
    k2 = k1[:, :, None] * k1[:, None, :]  # (B,3,3)
    c = x_lr.shape[1]
    weight = k2[:, None].repeat_interleave(c, dim=0).to(x_lr.dtype)  # (B*C,1,3,3)
    padded = F.pad(x_lr.reshape(1, b * c, *x_lr.shape[-2:]), (1, 1, 1, 1), mode="reflect")
    blurred = F.conv2d(padded, weight, groups=b * c).reshape_as(x_lr)
    return torch.where(use[:, None, None, None], blurred, x_lr)


def load_recipe(kind: str, cfg: TrainConfig, options: dict[str, Any]) -> Recipe:
    """Build the recipe of a kind (`sr3`, `regression`, `gan`) from the run config and recipe options."""
    if kind not in RECIPES:
        raise ValueError(f"unknown model kind {kind!r}; trainable kinds: {', '.join(sorted(RECIPES))}")
    module, _, attr = RECIPES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)(cfg, options)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _warmup_factor(warmup: int) -> Callable[[int], float]:
    return lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0


@dataclass
class TrainResult:
    """What a run produced."""

    checkpoint: Path
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # the trained (raw, non-EMA) modules


def train(recipe: Recipe, cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print) -> TrainResult:
    """Train `recipe` for `cfg.steps` steps in all (continuing from out/model.state.pt on resume)."""
    device = pick_device(cfg.device)
    D.init_from_env(device)
    device = D.local_rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = D.rank(), D.world_size()
    out = Path(cfg.out)
    ckpt_path, st_path = out / "model.safetensors", state_path(out / "model.safetensors")
    if D.is_main():
        out.mkdir(parents=True, exist_ok=True)
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    # Warm-up longer than a tenth of a short run would never reach the full learning rate.
    warmup = min(cfg.warmup, max(1, cfg.steps // 10))

    # Build modules, optimizers (linear warm-up) and the EMA of the exported module; same seed on every rank.
    torch.manual_seed(cfg.seed)
    modules = {k: m.to(device) for k, m in recipe.build_modules().items()}
    optimizers = recipe.build_optimizers(modules, cfg.lr)
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, _warmup_factor(warmup)) for k, o in optimizers.items()}
    ema = EMA(modules[recipe.export], cfg.ema_decay, cfg.ema_warmup)
    step, position = 0, 0

    # Resume: weights, EMA, optimizers, schedulers, step, RNG (per rank) and data position.
    if resume:
        state = load_state(st_path)
        if state["kind"] != recipe.kind:
            raise ValueError(f"{st_path} belongs to a {state['kind']!r} run, not {recipe.kind!r}")
        if state["world_size"] != world:
            log(f"note: resuming a {state['world_size']}-process run on {world} processes: RNG streams differ")
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        ema.module.load_state_dict(state["ema"])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
            schedulers[k].load_state_dict(state["schedulers"][k])
        step, position = int(state["step"]), int(state["data_position"])
        rngs = state["rng"]
        _set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0], device)
    else:
        # Each rank draws its own noise/dropout; the weights above were made identical by the shared seed.
        torch.manual_seed(cfg.seed * 1000 + rank + 1)

    # DDP wraps every module that has trainable parameters; one process uses the modules as they are.
    models: dict[str, nn.Module] = {}
    for k, m in modules.items():
        m.train()
        run_m = torch.compile(m) if cfg.compile else m
        if D.is_dist() and any(p.requires_grad for p in m.parameters()):
            run_m = nn.parallel.DistributedDataParallel(
                run_m, device_ids=[device.index] if device.type == "cuda" else None
            )
        models[k] = run_m

    remaining = cfg.steps - step
    if remaining <= 0:
        log(f"already trained {step} steps (asked for {cfg.steps}); nothing to do")
    dataset = CropDataset(cfg.data, cfg.crop, seed=cfg.seed)
    loader = crop_loader(dataset, position, cfg.batch_size, max(0, remaining), rank, world, cfg.workers)
    update = Update(optimizers, cfg.grad_clip)
    n_params = sum(p.numel() for p in modules[recipe.export].parameters())
    if D.is_main():
        log(
            f"training {recipe.kind}: {n_params / 1e6:.2f}M parameters, {len(dataset)} images, "
            f"{world} process(es), device {device}, {'bf16' if use_bf16 else 'fp32'}, "
            f"steps {step}->{cfg.steps}, batch {cfg.batch_size}"
        )

    log_file = out / "log.csv"
    history: list[dict[str, float]] = []
    writer = None
    fh = None
    bar = None
    if D.is_main():
        fh = open(log_file, "a", newline="")
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=step, desc=f"train {recipe.kind}", dynamic_ncols=True)
    t_last, n_last = time.perf_counter(), 0

    def checkpoint() -> None:
        # Every rank joins the RNG gather; rank 0 writes the EMA weights and the training state.
        rngs = D.gather_objects(_rng_state(device))
        if D.is_main():
            extra = {"step": step, "train": config_to_dict(cfg), **recipe.checkpoint_extra()}
            sd = ema.module.state_dict()
            save_checkpoint(ckpt_path, sd, recipe.kind, recipe.config, extra)
            if cfg.keep_every and step % cfg.keep_every == 0:
                save_checkpoint(out / f"step-{step:07d}.safetensors", sd, recipe.kind, recipe.config, extra)
            save_state(
                st_path,
                {
                    "kind": recipe.kind,
                    "step": step,
                    "data_position": position,
                    "world_size": world,
                    "modules": {k: m.state_dict() for k, m in modules.items()},
                    "ema": sd,
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                    "rng": rngs,
                    "train_config": config_to_dict(cfg),
                },
            )
        D.barrier()

    pending: list[tuple[int, dict[str, Any], dict[str, Any], float]] = []

    def flush(items: list[tuple[int, dict[str, Any], dict[str, Any], float]]) -> list[dict[str, float]]:
        # Losses and grad norms to floats (one sync per log step); stop on a non-finite loss.
        rows = []
        for st, ls, gn, lr_ in items:
            row = {"step": st, **{k: float(v) for k, v in ls.items()}}
            row.update({f"grad_norm_{k}": float(v) for k, v in gn.items()})
            row["lr"] = lr_
            if not all(math.isfinite(row[k]) for k in ls):
                raise RuntimeError(f"loss became non-finite at step {st}: {ls}; lower --lr or raise --grad-clip")
            rows.append(row)
        history.extend(rows)
        return rows

    try:
        for hr_u8 in loader:
            # HR crops in [0,1]; LR made by THE degradation (plus the optional CDM blur).
            hr = hr_u8.to(device, non_blocking=True).float().div_(255.0)
            x_lr = degrade(hr, cfg.scale)
            if cfg.blur_aug:
                x_lr = gaussian_blur_aug(x_lr)
            batch = Batch(hr=hr, lr=x_lr, scale=cfg.scale)
            # One optimizer step of the recipe's objective (bf16 autocast on CUDA).
            update.stepped.clear()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                losses = recipe.train_step(models, batch, step, update)
            # Warm-up advances only for optimizers that stepped (a GAN's D waits out L1 pre-training).
            for name in update.stepped:
                schedulers[name].step()
            ema.update(modules[recipe.export], step)
            step += 1
            position += cfg.batch_size
            n_last += cfg.batch_size
            # Keep losses as tensors until the log step: no device sync inside the step loop.
            lr_now = optimizers[next(iter(optimizers))].param_groups[0]["lr"]
            pending.append((step, dict(losses), dict(update.grad_norms), lr_now))
            if step % cfg.log_every == 0 or step == cfg.steps or step % cfg.save_every == 0:
                rows = flush(pending)
                pending.clear()
                if D.is_main():
                    now = time.perf_counter()
                    # The CSV row: losses averaged over the steps since the last row (those that logged them).
                    row = dict(rows[-1])
                    for k in losses:
                        vals = [r[k] for r in rows if k in r]
                        row[k] = sum(vals) / len(vals)
                    row["img_per_s"] = n_last / max(now - t_last, 1e-9)
                    t_last, n_last = now, 0
                    if writer is None:
                        new = log_file.stat().st_size == 0
                        writer = csv.DictWriter(fh, fieldnames=list(row), extrasaction="ignore")
                        if new:
                            writer.writeheader()
                    writer.writerow(row)
                    fh.flush()
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in losses or k == "img_per_s"})
            if bar is not None:
                bar.update(1)
            if step % cfg.save_every == 0 and step < cfg.steps:
                checkpoint()
        checkpoint()
    finally:
        if bar is not None:
            bar.close()
        if fh is not None:
            fh.close()
    if D.is_main():
        log(f"checkpoint: {ckpt_path} (step {step})")
    return TrainResult(ckpt_path, step, history, modules)


def config_from_options(cfg: type, options: dict[str, Any], what: str) -> Any:
    """Build a frozen dataclass from a dict, with a clear error listing the known keys for an unknown one."""
    known = {f for f in cfg.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    base = cfg()
    typed = {}
    for k, v in options.items():
        cur = getattr(base, k)
        if isinstance(v, str) and not isinstance(cur, str):
            typed[k] = _parse_value(v, cur)
        else:
            typed[k] = v
    return replace(base, **typed)


def _parse_value(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float) or like is None:
        try:
            return float(text)
        except ValueError:
            return text
    if isinstance(like, tuple):
        return tuple(type(like[0])(x) for x in text.split(",")) if like else tuple(text.split(","))
    return text


__all__ = ["Batch", "EMA", "Recipe", "TrainConfig", "TrainResult", "Update", "load_recipe", "train"]
