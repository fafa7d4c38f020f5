"""One code path for one process or N under torchrun: rank helpers and object gathering."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

if dist.is_available():
    # Imported before any process group exists: torch.distributed.nn's functions take `group=group.WORLD`
    # as a default argument, so an import after init_process_group (torch-fidelity makes one) would pin the
    # default group past destroy_process_group. gloo's worker threads then outlive the interpreter and can
    # abort it at exit ("terminate called without an active exception") after every file was written.
    import torch.distributed.nn  # noqa: F401


def pick_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def init_from_env(device: torch.device) -> bool:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA); True if distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def shutdown() -> None:
    """Leave the process group after this rank's last collective, so gloo's threads stop before exit."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on rank 0."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank."""
    if is_dist():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's object, in rank order, on every rank."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s object, on every rank."""
    if not is_dist():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place, returned)."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def local_rank_device(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, this rank's GPU; otherwise the device itself."""
    if device.type == "cuda" and is_dist() and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
