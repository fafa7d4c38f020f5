"""`TrainConfig`: everything about a training run that is not the model or its objective.

Kept free of torch so the command line can build its flags from the fields (`baselines.cli`) without
importing the training loop. Each field's metadata holds its help text (and `flag`, `choices`, `cli`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from evalsuite.options import check_keys
from evalsuite.options import config_field as _arg  # a field with its flag's help (`flag`, `choices`, `cli=False`)


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a training run that is not the model or its objective; each field is a CLI flag."""

    data: str = _arg(doc="folder of HR images of any size (recursive)")
    out: str = _arg(doc="run folder: model.safetensors, model.state.pt, log.csv")
    scale: int = _arg(cli=False)  # from --task or --scale
    crop: int = _arg(128, "HR crop side, LR crops are crop // scale (with --task: the task's HR size)")
    batch_size: int = _arg(16, "global batch per optimizer step, split over the torchrun processes and --accum")
    accum: int = _arg(1, "gradient accumulation: micro-batches per optimizer step (batch = micro x accum x processes)")
    steps: int = _arg(1000, "total optimizer steps")
    lr: float | None = _arg(None, "learning rate (default: the recipe's; sr3 1e-4, regression 1e-5, as in the paper)")
    warmup: int = _arg(10_000, "linear warm-up steps (paper: 10k); capped at steps // 10")
    grad_clip: float = _arg(1.0, "max global gradient norm per optimizer (0: off)")
    ema_decay: float = _arg(0.9999, "EMA decay (with the (1+t)/(10+t) warm-up)", flag="--ema")
    ema_warmup: bool = _arg(True, "the EMA warm-up decay_t = min(ema_decay, (1+t)/(10+t)), for short runs")
    save_every: int = _arg(1000, "checkpoint every N steps (and at the end)")
    keep_every: int = _arg(0, "also keep step-NNNNNNN.safetensors snapshots every N steps (0: only the latest)")
    log_every: int = _arg(10, "a log.csv row every N steps")
    seed: int = _arg(0, "seed of the weights, the crop stream and the noise")
    blur_aug: bool = _arg(False, "CDM: 3x3 Gaussian blur of the LR, sigma ~ U(0.4, 0.6), on 50% of examples")
    labels: str | None = _arg(None, "ddpm: class labels, a CSV image_id,label or 'folders' (DIR/<class>/...)")
    workers: int = _arg(2, "data loader processes")
    device: str = _arg("auto", "auto, cpu or cuda")
    precision: str = _arg("auto", "bf16 autocast of the forward pass (auto: on CUDA)", choices=("auto", "bf16", "fp32"))
    compile: bool = _arg(False, "torch.compile the modules")
    progress: bool = _arg(True, "the tqdm progress bar (rank 0)")

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.crop % self.scale:
            raise ValueError(f"--crop {self.crop} is not a multiple of the scale {self.scale}")
        if self.accum < 1 or self.batch_size % self.accum:
            raise ValueError(f"--batch-size {self.batch_size} must be a positive multiple of --accum {self.accum}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from field values in one call; an unknown key fails naming the valid keys and the closest one."""
        check_keys(values, [f.name for f in fields(cls)], "TrainConfig")
        return cls(**values)
