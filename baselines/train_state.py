"""What a training run carries from step to step, and how it is saved and resumed exactly.

`TrainState` holds the modules, their EMA, the optimizers (with warm-up and clipping), the step and the
data position. `save_training` writes the EMA checkpoint and the state file; `resume_training` restores
everything, including each rank's RNG, so a resumed run continues as if never interrupted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from baselines.checkpoint import load_state, save_checkpoint, save_state, state_path
from evalsuite import distributed as D

if TYPE_CHECKING:
    from baselines.recipe import Recipe


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


class Optimizers:
    """The run's named optimizers, each with its linear warm-up and global-norm gradient clipping."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], warmup: int = 0, grad_clip: float = 0.0):
        """Attach a warm-up of `warmup` steps to each optimizer; `grad_clip` 0 disables clipping."""
        self.optimizers, self.grad_clip = optimizers, grad_clip
        factor = _warmup_factor(warmup)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in optimizers.items()}

    @property
    def names(self) -> tuple[str, ...]:
        """Optimizer names, in the recipe's order."""
        return tuple(self.optimizers)

    @property
    def lr(self) -> float:
        """The current learning rate of the first optimizer (a Python float: no device sync)."""
        return self.optimizers[self.names[0]].param_groups[0]["lr"]

    def zero_grad(self) -> None:
        """Drop every optimizer's gradients (start of an optimizer step)."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def step(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Clip, step and warm up the named optimizers; returns each one's unclipped grad norm (0-dim tensors)."""
        chosen = set(names)
        norms = {}
        for name in (n for n in self.names if n in chosen):
            opt = self.optimizers[name]
            params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
            # Global gradient norm of this optimizer's parameters, clipped to grad_clip when that is on.
            if self.grad_clip > 0:
                norms[name] = torch.nn.utils.clip_grad_norm_(params, self.grad_clip).detach()
            else:
                grads = [p.grad.norm() for p in params]
                norms[name] = torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros(())
            opt.step()
            # The warm-up advances only for optimizers that stepped (a GAN's D waits out L1 pre-training).
            self.schedulers[name].step()
        return norms


def _warmup_factor(warmup: int) -> Callable[[int], float]:
    return lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0


@dataclass
class TrainState:
    """Everything a run changes as it trains: modules, their EMA, optimizers, step, data position."""

    modules: dict[str, nn.Module]
    ema: EMA
    optim: Optimizers
    device: torch.device
    step: int = 0
    position: int = 0  # samples consumed from the crop stream


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_training(ckpt_path: Path, recipe: Recipe, train_config: dict[str, Any], state: TrainState, keep: bool) -> None:
    """All ranks gather their RNG; rank 0 writes the EMA checkpoint (`keep`: a step snapshot too) and the state."""
    rngs = D.gather_objects(_rng_state(state.device))
    if D.is_main():
        extra = {"step": state.step, "train": train_config, **recipe.checkpoint_extra()}
        sd = state.ema.module.state_dict()
        save_checkpoint(ckpt_path, sd, recipe.kind, recipe.config, extra)
        if keep:
            snapshot = ckpt_path.with_name(f"step-{state.step:07d}.safetensors")
            save_checkpoint(snapshot, sd, recipe.kind, recipe.config, extra)
        save_state(
            state_path(ckpt_path),
            {
                "kind": recipe.kind,
                "step": state.step,
                "data_position": state.position,
                "world_size": D.world_size(),
                "modules": {k: m.state_dict() for k, m in state.modules.items()},
                "ema": sd,
                "optimizers": {k: o.state_dict() for k, o in state.optim.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in state.optim.schedulers.items()},
                "rng": rngs,
                "train_config": train_config,
            },
        )
    D.barrier()


def resume_training(ckpt_path: Path, kind: str, state: TrainState, log: Callable[[str], None]) -> None:
    """Restore weights, EMA, optimizers, warm-up, step, data position and this rank's RNG from the state file."""
    path = state_path(ckpt_path)
    saved = load_state(path)
    if saved["kind"] != kind:
        raise ValueError(f"{path} belongs to a {saved['kind']!r} run, not {kind!r}")
    world = D.world_size()
    if saved["world_size"] != world:
        log(f"note: resuming a {saved['world_size']}-process run on {world} processes: RNG streams differ")
    for k, m in state.modules.items():
        m.load_state_dict(saved["modules"][k])
    state.ema.module.load_state_dict(saved["ema"])
    for k, o in state.optim.optimizers.items():
        o.load_state_dict(saved["optimizers"][k])
        state.optim.schedulers[k].load_state_dict(saved["schedulers"][k])
    state.step, state.position = int(saved["step"]), int(saved["data_position"])
    rngs = saved["rng"]
    _set_rng_state(rngs[D.rank()] if D.rank() < len(rngs) else rngs[0], state.device)
