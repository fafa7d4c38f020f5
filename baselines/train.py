"""ONE training loop for every trainable baseline (SR3, regression, GAN), driven by a small Recipe.

The loop owns everything that is not the model's objective: data (random HR crops, LR made on the fly
with `evalsuite.degrade.degrade`, optional CDM blur), DDP through torchrun (one code path for 1 or N
processes), bf16 autocast of the forward pass on CUDA, gradient accumulation, Adam warm-up, gradient
clipping, EMA of the exported module, exact resume, periodic checkpoints, a progress bar and a CSV log.
A Recipe owns the objective: its `train_step` is the forward pass of one micro-batch and returns the loss
of each optimizer (`StepOutput`); backward and the optimizer steps happen here, outside autocast.
See docs/training.md for the protocol. Saving and resuming: `baselines.train_state`; the log:
`baselines.train_log`.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines.checkpoint import config_to_dict
from baselines.data import CropDataset, crop_loader, gaussian_blur_aug, read_labels
from baselines.recipe import Batch, Recipe, StepOutput  # noqa: F401  (the recipe API, re-exported)
from baselines.train_config import TrainConfig
from baselines.train_log import TrainLog
from baselines.train_state import EMA, Optimizers, TrainState, resume_training, save_training
from evalsuite import distributed as D
from evalsuite import plugins
from evalsuite.degrade import degrade
from evalsuite.distributed import pick_device
from evalsuite.options import config_from_options

# Recipes are plugins: entry point group `evalsuite.recipes`, name = the model kind (sr3, regression, gan, ddpm),
# object = make_recipe(TrainConfig, options) -> Recipe; imported only when used.
RECIPE_GROUP = plugins.RECIPE_GROUP


def load_recipe(kind: str, cfg: TrainConfig, options: dict[str, Any]) -> Recipe:
    """Build the recipe of a kind (`sr3`, `regression`, `gan`) from the run config and recipe options."""
    if kind not in plugins.names(RECIPE_GROUP):
        raise ValueError(f"unknown model kind {kind!r}; trainable kinds: {', '.join(plugins.names(RECIPE_GROUP))}")
    return plugins.get(RECIPE_GROUP, kind, "model kind")(cfg, options)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside the DDP and torch.compile wrappers."""
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    return getattr(module, "_orig_mod", module)


def frozen(module: nn.Module) -> Callable[..., Any]:
    """`module` as a function of its inputs only: a loss through it reaches the inputs, not its weights.

    For judging one network's output with another (a GAN's generator loss through the discriminator):
    the judge's parameters are detached, so that loss trains only the judged network, and DDP is bypassed.
    """
    raw = unwrap(module)
    weights = {k: p.detach() for k, p in raw.named_parameters()}
    return lambda *args, **kwargs: torch.func.functional_call(raw, weights, args, kwargs)


@dataclass(frozen=True)
class StepReport:
    """What one optimizer step produced: each micro-batch's metrics and each stepped optimizer's grad norm."""

    metrics: list[dict[str, torch.Tensor]]  # detached 0-dim tensors, one dict per micro-batch
    grad_norms: dict[str, torch.Tensor]  # unclipped global norm per optimizer that stepped


def _no_sync(models: Mapping[str, nn.Module], sync: bool) -> contextlib.ExitStack:
    """Under DDP, skip the gradient all-reduce unless `sync` (all but the last accumulated micro-batch)."""
    stack = contextlib.ExitStack()
    if not sync:
        for m in models.values():
            if isinstance(m, nn.parallel.DistributedDataParallel):
                stack.enter_context(m.no_sync())
    return stack


def _forward_backward(
    recipe: Recipe, models: dict[str, nn.Module], batch: Batch, step: int, accum: int, bf16: bool
) -> StepOutput:
    """The recipe's forward pass under autocast, then backward of its losses outside it."""
    # Forward only under autocast (nanoGPT, edm); backward reuses the dtypes each op ran in.
    with torch.autocast(batch.hr.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = recipe.train_step(models, batch, step)
    if set(out.metrics) != set(recipe.metrics) or not out.losses:
        raise ValueError(
            f"{type(recipe).__name__}.train_step returned losses {sorted(out.losses)} and metrics "
            f"{sorted(out.metrics)}; it declares the metrics {list(recipe.metrics)} and must return at least one loss"
        )
    # Each loss depends only on its own optimizer's parameters, so one backward of their sum fills every
    # optimizer's gradients; dividing by accum makes the accumulated gradient the mean over the whole batch.
    total = functools.reduce(operator.add, out.losses.values())
    (total / accum if accum > 1 else total).backward()
    return StepOutput({k: v.detach() for k, v in out.losses.items()}, {k: v.detach() for k, v in out.metrics.items()})


def optimizer_step(
    recipe: Recipe,
    models: dict[str, nn.Module],
    optim: Optimizers,
    batches: Iterable[Batch],
    step: int,
    accum: int = 1,
    bf16: bool = False,
) -> StepReport:
    """One optimizer step over `accum` micro-batches: forward (autocast), backward, then clip and step."""
    optim.zero_grad()
    metrics, stepped = [], set()
    for i, batch in enumerate(batches):
        # Gradients add up over the micro-batches; DDP all-reduces them in the last backward only.
        with _no_sync(models, sync=i == accum - 1):
            out = _forward_backward(recipe, models, batch, step, accum, bf16)
        metrics.append(out.metrics)
        stepped.update(out.losses)
    if stepped - set(optim.names):
        raise ValueError(f"losses for unknown optimizers {sorted(stepped - set(optim.names))}; known: {optim.names}")
    return StepReport(metrics, optim.step(stepped))


def make_batch(hr_u8: torch.Tensor | Sequence[torch.Tensor], scale: int, blur_aug: bool, device: torch.device) -> Batch:
    """HR crops (uint8; or [crops, labels]) to [0,1] on the device, their LR by THE degradation (+ CDM's blur)."""
    labels = None
    if not isinstance(hr_u8, torch.Tensor):
        hr_u8, labels = hr_u8
        labels = labels.to(device, non_blocking=True)
    hr = hr_u8.to(device, non_blocking=True).float().div_(255.0)
    x_lr = degrade(hr, scale)
    if blur_aug:
        x_lr = gaussian_blur_aug(x_lr)
    return Batch(hr=hr, lr=x_lr, scale=scale, labels=labels)


def join_processes(device_name: str) -> torch.device:
    """This process's device, after joining the torchrun group when there is one (one path for 1 or N)."""
    device = pick_device(device_name)
    D.init_from_env(device)
    device = D.local_rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether the forward pass runs under bf16 autocast: `bf16`, or `auto` on CUDA."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def build_state(recipe: Recipe, cfg: TrainConfig, device: torch.device) -> TrainState:
    """Fresh modules, optimizers with warm-up and the EMA of the exported module; the same on every rank."""
    torch.manual_seed(cfg.seed)
    modules = {k: m.to(device) for k, m in recipe.build_modules().items()}
    # Warm-up longer than a tenth of a short run would never reach the full learning rate.
    warmup = min(cfg.warmup, max(1, cfg.steps // 10))
    optim = Optimizers(recipe.build_optimizers(modules, cfg.lr), warmup, cfg.grad_clip)
    return TrainState(modules, EMA(modules[recipe.export], cfg.ema_decay, cfg.ema_warmup), optim, device)


def wrap_modules(modules: dict[str, nn.Module], device: torch.device, compile: bool) -> dict[str, nn.Module]:
    """The modules `train_step` calls: in train mode, compiled if asked, in DDP when several processes run."""
    models: dict[str, nn.Module] = {}
    for k, m in modules.items():
        m.train()
        run_m = torch.compile(m) if compile else m
        # DDP wraps every module with trainable parameters; one process uses the modules as they are.
        if D.is_dist() and any(p.requires_grad for p in m.parameters()):
            run_m = nn.parallel.DistributedDataParallel(
                run_m, device_ids=[device.index] if device.type == "cuda" else None
            )
        models[k] = run_m
    return models


@dataclass
class TrainResult:
    """What a run produced."""

    checkpoint: Path
    step: int
    history: list[dict[str, float]] = field(default_factory=list)  # this rank's log rows (rank 0's are log.csv)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # the trained (raw, non-EMA) modules


def _run_steps(
    recipe: Recipe,
    cfg: TrainConfig,
    state: TrainState,
    models: dict[str, nn.Module],
    loader: Iterable[torch.Tensor],
    run_log: TrainLog,
) -> None:
    """Optimizer steps until cfg.steps: EMA after each, log rows and checkpoints at their intervals."""
    ckpt_path, train_config = Path(cfg.out) / "model.safetensors", config_to_dict(cfg)
    bf16 = use_bf16(cfg.precision, state.device)
    micro_batches = iter(loader)
    while state.step < cfg.steps:
        # One optimizer step over this rank's accum micro-batches, each moved to the device when it is used.
        batches = (make_batch(next(micro_batches), cfg.scale, cfg.blur_aug, state.device) for _ in range(cfg.accum))
        report = optimizer_step(recipe, models, state.optim, batches, state.step, cfg.accum, bf16)
        # The EMA of the exported module follows the raw weights after every step.
        state.ema.update(state.modules[recipe.export], state.step)
        state.step += 1
        state.position += cfg.batch_size
        # Metrics stay on the device until a log row (one sync per row); checkpoints every save_every steps.
        run_log.add(report.metrics, report.grad_norms, cfg.batch_size)
        at_save = state.step % cfg.save_every == 0
        if state.step % cfg.log_every == 0 or state.step == cfg.steps or at_save:
            run_log.row(state.step, state.optim.lr)
        if at_save and state.step < cfg.steps:
            save_training(ckpt_path, recipe, train_config, state, _keep(cfg, state.step))
    save_training(ckpt_path, recipe, train_config, state, _keep(cfg, state.step))


def _keep(cfg: TrainConfig, step: int) -> bool:
    return bool(cfg.keep_every) and step % cfg.keep_every == 0


def train(recipe: Recipe, cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print) -> TrainResult:
    """Train `recipe` for `cfg.steps` optimizer steps in all (continuing from OUT/model.state.pt on resume)."""
    # Device and process group; modules, optimizers and EMA built identically on every rank.
    device = join_processes(cfg.device)
    ckpt_path = Path(cfg.out) / "model.safetensors"
    if D.is_main():
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    state = build_state(recipe, cfg, device)
    # Resume restores weights, optimizers, step, data position and RNG; a fresh run seeds each rank's noise.
    if resume:
        resume_training(ckpt_path, recipe.kind, state, log)
    else:
        torch.manual_seed(cfg.seed * 1000 + D.rank() + 1)
    models = wrap_modules(state.modules, device, cfg.compile)
    # The crop stream from the run's data position: this rank's micro-batches of each global batch.
    remaining = max(0, cfg.steps - state.step)
    if remaining == 0:
        log(f"already trained {state.step} steps (asked for {cfg.steps}); nothing to do")
    if cfg.labels and not getattr(recipe, "uses_labels", False):
        raise ValueError(f"--labels: `train {recipe.kind}` takes no class labels (only `train ddpm` does)")
    labels = read_labels(cfg.data, cfg.labels) if cfg.labels else None
    dataset = CropDataset(cfg.data, cfg.crop, seed=cfg.seed, labels=labels)
    rank, world = D.rank(), D.world_size()
    loader = crop_loader(dataset, state.position, cfg.batch_size, remaining, rank, world, cfg.workers, cfg.accum)
    if D.is_main():
        n_params = sum(p.numel() for p in state.modules[recipe.export].parameters())
        bf16 = use_bf16(cfg.precision, device)
        log(
            f"training {recipe.kind}: {n_params / 1e6:.2f}M parameters, {len(dataset)} images, "
            f"{world} process(es), device {device}, {'bf16' if bf16 else 'fp32'}, steps {state.step}->{cfg.steps}, "
            f"batch {cfg.batch_size} (micro-batch {cfg.batch_size // (world * cfg.accum)} x accum {cfg.accum})"
        )
    run_log = TrainLog(
        Path(cfg.out) / "log.csv", recipe.metrics, state.optim.names, device, start_step=state.step,
        total_steps=cfg.steps, main=D.is_main(), progress=cfg.progress, desc=f"train {recipe.kind}",
    )
    try:
        _run_steps(recipe, cfg, state, models, loader, run_log)
    finally:
        run_log.close()
    if D.is_main():
        log(f"checkpoint: {ckpt_path} (step {state.step})")
    return TrainResult(ckpt_path, state.step, run_log.history, state.modules)


__all__ = [
    "Batch",
    "EMA",
    "Optimizers",
    "Recipe",
    "StepOutput",
    "StepReport",
    "TrainConfig",
    "TrainResult",
    "config_from_options",
    "frozen",
    "load_recipe",
    "optimizer_step",
    "train",
]
