"""KID's and IS's per-image rows on disk (evalsuite.metrics.rows): the same values as clean-fid and
torch-fidelity computing from arrays in memory, in image-id order whatever the arrival order, and memory
that does not grow with the number of rows (issue 27)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.metrics.distribution import inception_score, kernel_distance
from evalsuite.metrics.rows import RowFile, RowSpool, inception_score_rows

ROOT = Path(__file__).resolve().parents[1]


def _spooled(rows: np.ndarray, rng: np.random.Generator, dim: int | None = None) -> tuple[list[str], RowSpool]:
    """The rows under ids r00000.., appended in a shuffled order, in uneven batches."""
    ids = [f"r{k:05d}" for k in range(len(rows))]
    order = rng.permutation(len(rows))
    spool = RowSpool(dim or rows.shape[1])
    k = 0
    while k < len(order):
        take = order[k : k + int(rng.integers(1, 40))]
        spool.add([ids[j] for j in take], rows[take])
        k += len(take)
    return ids, spool


def test_rows_come_back_in_id_order_with_the_last_row_of_a_repeated_id(rng):
    rows = rng.normal(size=(300, 7)).astype(np.float32)
    ids, spool = _spooled(rows, rng)
    spool.add(["r00005"], np.full((1, 7), 9.0))  # a retried image: its last row counts
    got_ids, got = spool.ordered()
    assert got_ids == ids and isinstance(got, RowFile) and got.shape == (300, 7)
    want = rows.astype(np.float64)
    want[5] = 9.0
    np.testing.assert_array_equal(np.asarray(got), want)
    pick = np.array([299, 3, 5, 3])
    np.testing.assert_array_equal(got[pick], want[pick])


def test_chunked_inception_score_equals_torch_fidelity(rng):
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = (rng.normal(size=(2345, 1008)) * 3).astype(np.float32)
    ids, spool = _spooled(logits, rng)
    _, rows = spool.ordered()
    for splits in (1, 3, 10):
        want = isc_features_to_metric(torch.from_numpy(logits.astype(np.float64)), splits=splits)
        mean, std = inception_score_rows(rows, splits)
        assert mean == pytest.approx(want["inception_score_mean"], rel=1e-12)
        assert std == pytest.approx(want["inception_score_std"], rel=1e-9, abs=1e-12)
    # The engine's entry point (splits from the count) on rows and on the array give one value.
    assert inception_score(rows) == pytest.approx(inception_score(logits), rel=1e-12)


def test_kid_from_rows_on_disk_equals_clean_fid_on_arrays(rng):
    a = rng.normal(size=(700, 64)).astype(np.float32)
    b = (rng.normal(size=(500, 64)) + 0.3).astype(np.float32)
    _, sa = _spooled(a, rng)
    _, sb = _spooled(b, rng)
    on_disk = kernel_distance(sa.ordered()[1], sb.ordered()[1], seed=3, num_subsets=5, max_subset_size=200)
    in_memory = kernel_distance(a, b, seed=3, num_subsets=5, max_subset_size=200)
    assert on_disk == pytest.approx(in_memory, rel=1e-12)
    assert abs(in_memory) > 1e-3  # the two sets differ: a value that cannot be matched by accident


def test_npy_rows_round_trip(tmp_path, rng):
    rows = rng.normal(size=(50, 9)).astype(np.float32)
    _, spool = _spooled(rows, rng)
    spool.ordered()[1].write_npy(tmp_path / "r.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), rows)
    back = RowFile.of_npy(tmp_path / "r.npy")
    np.testing.assert_array_equal(back[np.array([49, 0])], rows[[49, 0]].astype(np.float64))


MEMORY = """
import re, sys
from pathlib import Path
import numpy as np
from evalsuite.metrics import rows
from evalsuite.metrics.rows import RowSpool, inception_score_rows
from evalsuite.metrics.distribution import kernel_distance
n = int(sys.argv[1])
# Small read chunks, so both sizes read full chunks: what is left to grow is what depends on the count.
rows.CHUNK_ROWS = 64
rng = np.random.default_rng(0)
Path("/proc/self/clear_refs").write_text("5")
def kib(key):
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
before = kib("VmRSS")
feats, logits = RowSpool(2048), RowSpool(1008)
for k in range(0, n, 250):
    ids = [f"i{j:06d}" for j in range(k, k + 250)]
    feats.add(ids, rng.normal(size=(250, 2048)).astype(np.float32))
    logits.add(ids, rng.normal(size=(250, 1008)).astype(np.float32))
_, f = feats.ordered()
_, lg = logits.ordered()
kernel_distance(f, f, seed=0, num_subsets=2)
inception_score_rows(lg, 10)
print((kib("VmHWM") - before) / 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_memory_does_not_grow_with_the_number_of_rows(tmp_path):
    def peak(n: int) -> float:
        done = subprocess.run([sys.executable, "-c", MEMORY, str(n)], capture_output=True, text=True,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
        assert done.returncode == 0, done.stderr[-2000:]
        return float(re.findall(r"[\d.]+", done.stdout)[-1])

    small, large = peak(2000), peak(8000)
    # 6,000 more images are 70 MiB of rows in memory (2048 + 1008 float32 each; the old lists and their
    # float64 copies grew 330 MiB); on disk they add the ids and their order (~1 MiB) and allocator noise
    # (0-8 MiB seen).
    assert large - small < 20, (small, large)


def test_a_run_spools_into_its_own_folder_and_leaves_no_file(tmp_path):
    import os

    from evalsuite.metrics.rows import spool_folder

    folder = spool_folder(tmp_path / "run")
    assert folder == tmp_path / "run" / ".cache" and spool_folder(None) is None
    spool = RowSpool(3, folder=folder)
    spool.add(["b", "a"], np.array([[1, 2, 3], [4, 5, 6]]))
    # The rows live on the run's file system (not $TMPDIR, which may be a RAM disk), under no name.
    assert os.fstat(spool._file.fileno()).st_dev == os.stat(folder).st_dev
    assert list(folder.iterdir()) == []
    np.testing.assert_array_equal(np.asarray(spool.ordered()[1]), [[4, 5, 6], [1, 2, 3]])
