"""Two-process gloo DDP through the same training code path: replicas stay identical, accumulation is exact."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_train import make_photos, tiny_cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str, data: str) -> None:
    import torch.distributed as dist

    from baselines.train import load_recipe, train

    torch.set_num_threads(1)
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    cfg = tiny_cfg(Path(tmp), Path(data), steps=4, save_every=2)
    res = train(load_recipe("sr3", cfg, {"preset": "tiny", "dropout": "0.1"}), cfg, log=lambda s: None)
    # Regression (no randomness) with 2 micro-batches of 1 per process: all-reduced in the last backward only.
    acfg = tiny_cfg(Path(tmp) / "accum", Path(data), steps=3, accum=2)
    acc = train(load_recipe("regression", acfg, {"preset": "tiny", "dropout": "0"}), acfg, log=lambda s: None)
    torch.save(
        {
            "weights": res.modules["net"].state_dict(),
            "losses": [r["loss"] for r in res.history],
            "accum_weights": acc.modules["net"].state_dict(),
            "accum_grad_norms": [r["grad_norm_net"] for r in acc.history],
        },
        Path(tmp) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_two_process_ddp_keeps_replicas_identical(tmp_path):
    data = make_photos(tmp_path / "photos")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(data)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k, v in r0["weights"].items():
        assert torch.equal(v, r1["weights"][k]), k
    # The ranks saw different data and noise (their own half of each global batch), so their losses differ.
    assert r0["losses"] != r1["losses"]
    # Training moved the weights away from the shared initialization.
    from baselines.sr3.model import SR3Denoiser
    from baselines.train import load_recipe

    torch.manual_seed(0)
    init = load_recipe("sr3", tiny_cfg(tmp_path, data), {"preset": "tiny", "dropout": "0.1"}).build_modules()["net"]
    assert isinstance(init, SR3Denoiser)
    assert any(not torch.equal(v, r0["weights"][k]) for k, v in init.state_dict().items())
    assert (tmp_path / "run" / "model.safetensors").exists()
    # 2 processes x 2 micro-batches of 1 take the steps of one process with batches of 4: the same gradients.
    from baselines.train import train

    cfg = tiny_cfg(tmp_path / "single", data, steps=3)
    single = train(load_recipe("regression", cfg, {"preset": "tiny", "dropout": "0"}), cfg, log=lambda s: None)
    assert [r["grad_norm_net"] for r in single.history] == pytest.approx(r0["accum_grad_norms"], rel=1e-4)
    assert r0["accum_grad_norms"] == r1["accum_grad_norms"]
    torch.manual_seed(0)
    init = load_recipe("regression", cfg, {"preset": "tiny", "dropout": "0"}).build_modules()["net"].state_dict()
    assert all(torch.equal(r0["accum_weights"][k], r1["accum_weights"][k]) for k in init)
    # The weights agree up to float rounding (that Adam amplifies where a gradient is ~0), far below the steps.
    flat = lambda sd: torch.cat([sd[k].flatten() for k in init])  # noqa: E731
    w_ddp, w_single = flat(r0["accum_weights"]), flat(single.modules["net"].state_dict())
    assert float((w_ddp - w_single).norm()) < 1e-3 * float((w_single - flat(init)).norm())
