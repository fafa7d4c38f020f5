"""Two gloo processes on the CPU give the one-process FID, KID, IS and classification numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights

N_IMAGES = 7  # odd: the two ranks get different numbers of images


def _worker(rank: int, world: int, root: str, tag: str) -> None:
    """One rank: metrics over its shard of the images (ids[rank::world]), then compute() on every rank."""
    from evalsuite.degrade import to_tensor
    from evalsuite.metrics.base import MetricContext
    from evalsuite.metrics.classification import Classification
    from evalsuite.metrics.distribution import FID, KID, InceptionScore

    base = Path(root)
    os.environ["EVALSUITE_WEIGHTS"] = str(base / "weights")
    os.environ["EVALSUITE_CACHE"] = str(base / f"cache-{tag}")  # each run computes its reference itself
    os.environ[ALLOW_ENV] = "1"
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{base / f'init-{tag}'}", rank=rank, world_size=world)
    ids = sorted(p.stem for p in (base / "run" / "hr").glob("*.png"))
    mine = ids[rank::world]

    def load(folder: str, batch: list[str]) -> torch.Tensor:
        out = []
        for i in batch:
            with Image.open(base / folder / f"{i}.png") as im:
                out.append(to_tensor(im.convert("RGB")))
        return torch.stack(out)

    ctx = MetricContext(torch.device("cpu"), 4, run_dir=base / "run", options={"labels": str(base / "labels.csv")})
    metrics = [FID(ctx), KID(ctx), InceptionScore(ctx)]
    for k in range(0, len(mine), 2):
        batch = mine[k : k + 2]
        sr, hr = load("sr", batch), load("run/hr", batch)
        for m in metrics:
            m.update(sr, hr, hr, batch)
    cls = Classification(ctx)
    cls.evaluate(_Bicubic4x(), mine, base / "run" / "hr")
    values = {}
    for m in [*metrics, cls]:
        values.update({c: v.value for c, v in m.compute().items()})
    values["is_reference"] = metrics[2].reference(ids, base / "run" / "hr")["is"].value
    if rank == 0:
        (base / f"result-{tag}.json").write_text(json.dumps(values))
    if world > 1:
        dist.destroy_process_group()


class _Bicubic4x:
    scale = 4

    def __call__(self, x_lr: torch.Tensor, ids=None) -> torch.Tensor:
        return torch.nn.functional.interpolate(x_lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)


def test_two_gloo_processes_equal_one_process(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for folder in ("run/hr", "sr"):
        (tmp_path / folder).mkdir(parents=True)
    labels = ["image_id,label"]
    for k in range(N_IMAGES):
        hr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(hr).resize((64, 64), Image.BICUBIC))
        Image.fromarray(big).save(tmp_path / "run" / "hr" / f"im{k}.png")
        noisy = np.clip(big.astype(int) + rng.integers(-40, 40, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / "sr" / f"im{k}.png")
        labels.append(f"im{k},{k % 3}")
    (tmp_path / "labels.csv").write_text("\n".join(labels) + "\n")
    weights = tmp_path / "weights"
    write_random_weights("inception-fid", weights / SPECS["inception-fid"].entry.filename, small=True)
    write_random_weights("inception-is", weights / SPECS["inception-is"].entry.filename)
    write_random_weights("resnet50", weights / SPECS["resnet50"].entry.filename)

    # One process: here (the worker's environment changes are undone by monkeypatch); two: spawned.
    for key in ("EVALSUITE_WEIGHTS", "EVALSUITE_CACHE", ALLOW_ENV):
        monkeypatch.setenv(key, "")
    threads = torch.get_num_threads()
    try:
        _worker(0, 1, str(tmp_path), "one")
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_worker, args=(2, str(tmp_path), "two"), nprocs=2, join=True)
    one = json.loads((tmp_path / "result-one.json").read_text())
    two = json.loads((tmp_path / "result-two.json").read_text())
    assert set(one) == {"fid", "kid", "is", "top1_error", "top5_error", "is_reference"}
    for key, value in one.items():
        assert value is not None, key
        assert two[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    assert one["fid"] > 0


def _spool_worker(rank: int, world: int, root: str) -> None:
    """One rank spools its rows (rank 0: 8, rank 1: 3, in shuffled order) and merges them in chunks of 3."""
    from evalsuite.metrics import rows as rows_mod

    rows_mod.CHUNK_ROWS = 3  # rank 0 needs 3 rounds, rank 1 one: the ranks must still meet every round
    base = Path(root)
    dist.init_process_group("gloo", init_method=f"file://{base / 'init-spool'}", rank=rank, world_size=world)
    mine = list(range(8)) if rank == 0 else [9, 8, 10]
    spool = rows_mod.RowSpool(4, folder=base / f"spool{rank}")
    for k in reversed(mine):
        spool.add([f"r{k:02d}"], np.full((1, 4), float(k)))
    ids, merged = spool.ordered()
    np.save(base / f"merged{rank}.npy", np.asarray(merged))
    (base / f"ids{rank}.json").write_text(json.dumps(ids))
    dist.destroy_process_group()


def test_ranks_merge_their_spooled_rows_in_chunks(tmp_path):
    mp.spawn(_spool_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    want_ids = [f"r{k:02d}" for k in range(11)]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"ids{rank}.json").read_text()) == want_ids
        want = np.repeat(np.arange(11.0), 4).reshape(11, 4)
        np.testing.assert_array_equal(np.load(tmp_path / f"merged{rank}.npy"), want)


GLOO_EXIT_SCRIPT = """
import gc, os, tempfile
from evalsuite import distributed as D
import torch.distributed as dist

def gloo_threads():
    tasks = os.listdir("/proc/self/task")
    return sum(open(f"/proc/self/task/{t}/comm").read().strip() == "pt_gloo_runloop" for t in tasks)

dist.init_process_group("gloo", init_method=f"file://{tempfile.mkdtemp()}/init", rank=0, world_size=1)
import torch_fidelity.feature_extractor_inceptionv3  # imports torch.distributed.nn, as IS does after init
before = gloo_threads()
D.shutdown()
gc.collect()
print(before, gloo_threads())
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_shutdown_stops_gloo_threads_even_after_a_late_torch_distributed_nn_import():
    """A group pinned past destroy_process_group keeps gloo's threads, which can abort the interpreter at exit."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", GLOO_EXIT_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split())
    assert before > 0  # the group had its worker threads
    assert after == 0, "the default process group outlived destroy_process_group"
