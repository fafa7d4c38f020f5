"""Self-describing checkpoints: one safetensors file holding the weights, the kind and the JSON config.

Loading needs no other flag: `load_checkpoint(path)` returns the kind (`sr3`, `regression`, `gan`, ...),
the model config as a dict, the state dict and any extras (sampling defaults, training summary).
Training state (optimizer, step, RNG, data position) lives in a separate `<stem>.state.pt` file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evalsuite.io import atomic_write

FORMAT = "evalsuite-checkpoint"
FORMAT_VERSION = "1"


class NotACheckpointError(ValueError):
    """A file is not an evalsuite checkpoint (or not the kind that was asked for)."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: what it is, how to rebuild it, its weights and extras."""

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen dataclass (nested ones too) or a dict -> a JSON-ready dict."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"checkpoint config must be a dataclass or a dict, got {type(config).__name__}")
    # Round-trip through JSON so tuples become lists exactly as they will be read back.
    return json.loads(json.dumps(config))


def state_path(path: str | Path) -> Path:
    """The training-state file that belongs to a checkpoint: `<stem>.state.pt` next to it."""
    p = Path(path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".state.pt")


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    kind: str,
    config: Any,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write weights + kind + JSON config (+ JSON extras) to ONE safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    # safetensors wants contiguous tensors that share no storage.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": str(kind),
        "config": json.dumps(config_to_dict(config), sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True, default=str),
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw metadata of a safetensors file, with a clear error when it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with `evalsuite train ...`")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise NotACheckpointError(
            f"{path} is not a safetensors file ({type(exc).__name__}: {exc}); "
            "pass a checkpoint written by `evalsuite train`"
        ) from exc


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None) -> Checkpoint:
    """Load a checkpoint; `kind` (optional) checks that it is the expected kind."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta or "kind" not in meta:
        raise NotACheckpointError(
            f"{path} is a safetensors file but not an evalsuite checkpoint (no kind/config in its metadata); "
            "train one with `evalsuite train sr3|regression|gan`, or load foreign weights with `spandrel:`"
        )
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and meta["kind"] not in kinds:
        raise NotACheckpointError(
            f"{path} is a {meta['kind']!r} checkpoint, expected {' or '.join(map(repr, kinds))}; "
            f"use the method `{meta['kind']}:{path}` instead"
        )
    return Checkpoint(
        kind=meta["kind"],
        config=json.loads(meta["config"]),
        state_dict=load_file(str(path)),
        extra=json.loads(meta.get("extra", "{}")),
        path=path,
    )


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the training state (optimizer, step, RNG, data position) with torch.save, atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a training-state file written by `save_state`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"training state {path} does not exist; cannot resume without it")
    return torch.load(path, map_location="cpu", weights_only=False)


def checkpoint_scales(path: str | Path | None) -> tuple[int, ...] | None:
    """The scale an evalsuite checkpoint was trained for, read from its metadata alone (None: not known)."""
    if not path or not Path(path).is_file():
        return None
    try:
        config = json.loads(read_metadata(path).get("config") or "{}")
    except (NotACheckpointError, ValueError):
        return None
    scale = config.get("scale") if isinstance(config, dict) else None
    return (int(scale),) if isinstance(scale, int) and scale > 0 else None
