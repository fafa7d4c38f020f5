"""Per-image feature rows of the dataset metrics kept on disk, not in memory (issue 27).

KID's unbiased estimator and IS's shuffled splits need every image's features (8 KB) or logits (4 KB), and
a clean-fid reference cache holds the reference features: 400 MB each at the paper's 50,000 images, held
twice while stacked. Here a metric appends each batch's rows to an unnamed temporary file (`RowSpool`) and
keeps only the ids; at the end the rows are read back in image-id order, a few at a time (`RowFile`), by
clean-fid's KID (which indexes 1,000-row subsets) and by the chunked Inception Score below. Reads go
through `os.pread`, not a memory map, so the pages read do not count in the process's resident set.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch

from evalsuite import distributed as D

CHUNK_ROWS = 1024  # rows read at once when a whole set is streamed


class RowFile:
    """Fixed-size rows of a binary file (raw or .npy), in a given order, read on demand as float64.

    Enough of an array for clean-fid's KID and for `np.asarray`: `.shape`, `len()`, `rows[int_array]`.
    """

    def __init__(self, f: IO[bytes], offset: int, dtype: np.dtype, dim: int, order: np.ndarray) -> None:
        self._f, self._offset, self._dtype, self._dim = f, offset, np.dtype(dtype), dim
        self._order = np.asarray(order, dtype=np.int64)
        self._row_bytes = self._dtype.itemsize * dim

    @classmethod
    def of_npy(cls, path: Path) -> RowFile:
        """The rows of a 2-D C-order .npy file, in file order."""
        f = open(path, "rb")
        fmt = np.lib.format
        read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if len(shape) != 2 or fortran:
            f.close()
            raise ValueError(f"{path}: expected a 2-D C-order array of rows, got shape {shape}")
        rows = cls(f, f.tell(), dtype, shape[1], np.arange(shape[0]))
        weakref.finalize(rows, f.close)
        return rows

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, dim)."""
        return (len(self._order), self._dim)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        """The rows at these positions (of this view's order), float64, read from the file."""
        pos = np.atleast_1d(self._order[index])
        # Read in file order (sequential where the positions are), then put back in the order asked for.
        sort = np.argsort(pos, kind="stable")
        out = np.empty((len(pos), self._dim), dtype=np.float64)
        fd = self._f.fileno()
        for k in sort:
            raw = os.pread(fd, self._row_bytes, self._offset + int(pos[k]) * self._row_bytes)
            out[k] = np.frombuffer(raw, dtype=self._dtype)
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        out = self[np.arange(len(self))] if len(self) else np.zeros((0, self._dim))
        return out if dtype is None else out.astype(dtype)

    def write_npy(self, path: Path, dtype: np.dtype = np.float32) -> None:
        """These rows, in this order, to a .npy file at `path`, a chunk at a time."""
        with open(path, "wb") as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                      "shape": self.shape}
            np.lib.format.write_array_header_1_0(f, header)
            for rows in row_chunks(self, np.arange(len(self))):
                f.write(rows.astype(dtype).tobytes())


class RowSpool:
    """Rows appended per batch to an unnamed temporary file, their image ids in memory."""

    def __init__(self, dim: int, dtype: np.dtype = np.float32, folder: Path | None = None) -> None:
        self.dim, self.dtype, self.folder = dim, np.dtype(dtype), folder
        self.ids: list[str] = []
        # In the run folder where there is one ($TMPDIR may be a RAM disk); the file has no name and goes
        # away when it is closed, also when the process is killed.
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="evalsuite-rows-", dir=folder)

    def add(self, ids: Sequence[str], rows: np.ndarray | torch.Tensor) -> None:
        """Append one row per id."""
        if isinstance(rows, torch.Tensor):
            rows = rows.detach().cpu().numpy()
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(len(ids), self.dim)
        self._file.seek(0, os.SEEK_END)
        self._file.write(rows.tobytes())
        self._file.flush()
        self.ids.extend(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def local(self) -> tuple[list[str], RowFile]:
        """This process's rows in image-id order (the last row of an id given twice), read on demand."""
        last = {i: k for k, i in enumerate(self.ids)}
        ids = sorted(last)
        return ids, RowFile(self._file, 0, self.dtype, self.dim, np.array([last[i] for i in ids], dtype=np.int64))

    def ordered(self) -> tuple[list[str], RowFile]:
        """Every rank's rows in image-id order: the same at any world size.

        Under torchrun the ranks' rows are exchanged CHUNK_ROWS at a time into a new spool on every rank
        (ranks may not share a disk), so memory holds one chunk per rank, not the set.
        """
        if not D.is_dist():
            return self.local()
        ids, rows = self.local()
        merged = RowSpool(self.dim, self.dtype, folder=self.folder)
        rounds = max(D.gather_objects(-(-len(ids) // CHUNK_ROWS)))
        for start in range(0, rounds * CHUNK_ROWS, CHUNK_ROWS):
            # Every rank takes part in every round, with an empty chunk once its own rows are sent.
            chunk = ids[start : start + CHUNK_ROWS]
            mine = (chunk, rows[start : start + len(chunk)].astype(self.dtype) if chunk else None)
            for part_ids, part_rows in D.gather_objects(mine):
                if part_ids:
                    merged.add(part_ids, part_rows)
        return merged.local()


def spool_folder(run_dir: Path | str | None) -> Path | None:
    """Where a run's metrics spool their rows: the run folder's .cache (None: the system's temporary folder)."""
    return Path(run_dir) / ".cache" if run_dir is not None else None


def row_chunks(rows: RowFile | np.ndarray, positions: np.ndarray, size: int | None = None) -> Iterator[np.ndarray]:
    """The rows at `positions`, `size` (CHUNK_ROWS) at a time, float64 (from a RowFile or an in-memory array)."""
    size = size or CHUNK_ROWS
    for k in range(0, len(positions), size):
        yield np.asarray(rows[positions[k : k + size]], dtype=np.float64)


def inception_score_rows(logits: RowFile | np.ndarray, splits: int, seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's Inception Score (mean, std over splits) of (N, C) logits, a chunk of rows at a time.

    The same arithmetic as `isc_features_to_metric`: the rows shuffled by numpy's RandomState(2020), cut into
    `splits` contiguous parts; per part, q = the mean softmax, and exp(mean KL(p || q)) in float64.
    """
    n = len(logits)
    # The shuffle torch-fidelity applies before splitting.
    perm = np.random.RandomState(seed).permutation(n)
    scores = []
    for i in range(splits):
        part = perm[i * n // splits : (i + 1) * n // splits]
        # First pass: q, the split's mean class distribution.
        p_sum = torch.zeros(logits.shape[1], dtype=torch.float64)
        for rows in row_chunks(logits, part):
            p_sum += torch.from_numpy(rows).double().softmax(dim=1).sum(0)
        log_q = (p_sum / len(part)).log()
        # Second pass: the mean over the split of KL(p(y|x) || q), then its exponential.
        kl_sum = torch.zeros((), dtype=torch.float64)
        for rows in row_chunks(logits, part):
            f = torch.from_numpy(rows).double()
            kl_sum += (f.softmax(dim=1) * (f.log_softmax(dim=1) - log_q)).sum(dim=1).sum()
        scores.append(float((kl_sum / len(part)).exp()))
    return float(np.mean(scores)), float(np.std(scores))
