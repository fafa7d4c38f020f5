"""Distribution metrics: FID and KID (clean-fid's Inception and "clean" resize) and IS (torch-fidelity).

Features are extracted per batch and accumulated: FID keeps the sum and the sum of outer products of the
2048-d features (float64), KID the features (8 KB per image; its unbiased estimator needs them), IS the 1008
logits per image; KID's and IS's rows, and a reference's features, go to disk (evalsuite.metrics.rows), so
memory does not grow with the number of images. Under torchrun every rank sees its shard of the images;
`compute()` all-reduces the sums and gathers features in image-id order, so N processes give the one-process
value. Reference statistics (the run's HR images, a folder, or an .npz) are cached by content hash.
"""

from __future__ import annotations

import hashlib
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from evalsuite import distributed as D
from evalsuite.datasets import scan_folder
from evalsuite.io import atomic_write
from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, register
from evalsuite.metrics.rows import RowFile, RowSpool, inception_score_rows, spool_folder
from evalsuite.metrics.weights import CheckedWeight, checked_weight
from evalsuite.paths import cache_dir
from evalsuite.weights import sha256_file

FEATURE_DIM = 2048
LOGITS_DIM = 1008  # torch-fidelity's Inception logits (IS)
FEW_IMAGES = 2000  # below this many images FID/KID/IS are too noisy and biased to compare with published values
REF_BATCH = 32
STATS_VERSION = 1


def to_uint8_hwc(x: torch.Tensor) -> list[np.ndarray]:
    """(B,3,H,W) in [0,1] -> B arrays (H,W,3) uint8, the 8-bit images a library would read from files."""
    u8 = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return list(u8.permute(0, 2, 3, 1).cpu().numpy())


def load_uint8(path: Path) -> np.ndarray:
    """An image file as (H,W,3) uint8 RGB, as clean-fid reads it."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


class _Extractor:
    """A feature network with a one-batch memo, so FID and KID on the same batch run Inception once."""

    def __init__(self) -> None:
        self._memo: list[tuple[Any, int, torch.Tensor]] = []  # the last two batches (SR and HR)

    def features_u8(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H,W,3) uint8 images -> (B,F) float64 on the CPU."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> (B,F) float64 on the CPU (memoized for the same tensor object)."""
        for ref, version, feats in self._memo:
            if ref() is x and version == x._version:
                return feats
        feats = self.features_u8(to_uint8_hwc(x))
        self._memo = [*self._memo[-1:], (weakref.ref(x), x._version, feats)]
        return feats


class CleanInception(_Extractor):
    """clean-fid's Inception torchscript behind its "clean" resize (PIL bicubic in float to 299x299)."""

    def __init__(self, path: Path, device: torch.device) -> None:
        super().__init__()
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            self.model = InceptionV3W(str(path.parent), download=False, resize_inside=False).to(device).eval()
        self.resize = build_resizer("clean")
        self.device = device

    def features_u8(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H,W,3) uint8 images -> (B,2048) float64 pool features."""
        # clean-fid's resize per image: (299,299,3) float32 in [0,255], then CHW without rescaling.
        batch = np.stack([self.resize(img) for img in images])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)
        with torch.no_grad():
            return self.model(x).double().cpu()  # (B, 2048)


class FidelityInception(_Extractor):
    """torch-fidelity's InceptionV3 (the same TF graph), returning the 1008 unbiased logits used by IS."""

    def __init__(self, path: Path, device: torch.device) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.model = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["logits_unbiased"], feature_extractor_weights_path=str(path)
        ).to(device)
        self.device = device

    def features_u8(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of (H,W,3) uint8 images of one size -> (B,1008) float64 logits."""
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(self.device)
        with torch.no_grad():
            (logits,) = self.model(x)
        return logits.double().cpu()


_EXTRACTORS: dict[tuple, _Extractor] = {}


def extractor(kind: type[_Extractor], weight: CheckedWeight, device: torch.device) -> _Extractor:
    """One shared extractor per (network, weights file, device): loaded once per process."""
    st = weight.path.stat()
    key = (kind.__name__, str(weight.path), st.st_size, st.st_mtime_ns, str(device))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = kind(weight.path, device)
    return _EXTRACTORS[key]


class GaussianStats:
    """Streamed mean and covariance of features: count, sum and sum of outer products in float64."""

    def __init__(self, dim: int = FEATURE_DIM) -> None:
        self.n = torch.zeros((), dtype=torch.float64)
        self.s = torch.zeros(dim, dtype=torch.float64)
        self.ss = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, feats: torch.Tensor) -> None:
        """Accumulate a batch of features (B, dim)."""
        f = feats.double()
        self.n += f.shape[0]
        self.s += f.sum(0)
        self.ss += f.T @ f

    def reduced(self) -> GaussianStats:
        """The statistics summed over ranks, as a new object (this one is unchanged, so it can be asked again)."""
        out = GaussianStats(self.s.shape[0])
        for mine, total in ((self.n, out.n), (self.s, out.s), (self.ss, out.ss)):
            total.copy_(mine)
            D.all_reduce_sum(total)
        return out

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (dim,) and unbiased covariance (dim, dim), as np.mean / np.cov(rowvar=False) give them."""
        n = float(self.n)
        if n < 2:
            raise ValueError(f"FID needs at least 2 images, got {int(n)}")
        mu = self.s / n
        # cov = (sum x x^T - n mu mu^T) / (n - 1)
        cov = (self.ss - n * torch.outer(mu, mu)) / (n - 1)
        return mu.numpy(), cov.numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """clean-fid's Fréchet distance ||mu1-mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))."""
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    return float(cleanfid_frechet(mu1, sigma1, mu2, sigma2))


def frechet_distance_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """The same Fréchet distance, exactly, from the features themselves: fast when there are few samples.

    With centered features X1 (n1,d), X2 (n2,d), S_k = X_k^T X_k / (n_k - 1). The nonzero eigenvalues of
    S1 S2 are those of M M^T / c with M = X1 X2^T (n1,n2), c = (n1-1)(n2-1) (AB and BA share them), so
    Tr sqrt(S1 S2) = (sum of singular values of M) / sqrt(c): an n1 x n2 SVD instead of a d x d sqrtm.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    n1, n2 = len(f1), len(f2)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    x1, x2 = f1 - mu1, f2 - mu2
    # Tr S1 + Tr S2, then Tr sqrt(S1 S2) from the singular values of X1 X2^T.
    trace_s = (x1 * x1).sum() / (n1 - 1) + (x2 * x2).sum() / (n2 - 1)
    tr_sqrt = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    return float(((mu1 - mu2) ** 2).sum() + trace_s - 2.0 * tr_sqrt)


def kernel_distance(
    feats1: np.ndarray, feats2: np.ndarray, seed: int, num_subsets: int = 100, max_subset_size: int = 1000
) -> float:
    """clean-fid's KID (unbiased MMD^2, cubic polynomial kernel, subsets) with a seeded subset draw."""
    from cleanfid.fid import kernel_distance as cleanfid_kid

    # Rows on disk are read 1,000 at a time as float64; arrays in memory are made float64 here.
    feats1, feats2 = (f if isinstance(f, RowFile) else np.asarray(f, dtype=np.float64) for f in (feats1, feats2))
    # clean-fid draws the subsets from numpy's global RNG: seed it, then restore the caller's state.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return float(cleanfid_kid(feats1, feats2, num_subsets=num_subsets, max_subset_size=max_subset_size))
    finally:
        np.random.set_state(state)


def gather_by_id(ids: Sequence[str], rows: Sequence[np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Every rank's (id, feature row) pairs, in id order: the same array at any world size."""
    local = (list(ids), np.stack(rows) if rows else np.zeros((0, 0), np.float32))
    pairs: dict[str, np.ndarray] = {}
    for part_ids, part_rows in D.gather_objects(local):
        for i, r in zip(part_ids, part_rows):
            pairs[i] = r
    order = sorted(pairs)
    return order, (np.stack([pairs[i] for i in order]) if order else np.zeros((0, 0), np.float32))


@dataclass(frozen=True)
class Reference:
    """Reference statistics for FID/KID: mean, covariance (None where only KID needs it), count, features
    (None from a stats file), label."""

    mu: np.ndarray | None
    sigma: np.ndarray | None
    n: int
    feats: np.ndarray | RowFile | None
    label: str


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def stats_of_files(
    paths: Sequence[Path],
    features: Callable[[Sequence[np.ndarray]], torch.Tensor],
    weights_sha: str,
    label: str,
    batch_size: int = REF_BATCH,
) -> Reference:
    """Reference statistics of image files, sharded over ranks, cached by content hash (files + weights)."""
    # The cache key: the weights file and every file's content, in order (names do not matter).
    shard = list(range(D.rank(), len(paths), D.world_size()))
    shas = {i: _file_sha(paths[i]) for i in shard}
    all_shas = {i: s for part in D.gather_objects(shas) for i, s in part.items()}
    h = hashlib.sha256(f"clean-fid clean v{STATS_VERSION} {weights_sha}".encode())
    for i in range(len(paths)):
        h.update(all_shas[i].encode())
    cache = cache_dir("fid_stats") / f"{h.hexdigest()[:32]}.npz"
    feats_file = cache.with_suffix(".feats.npy")  # the features beside the statistics, read row by row
    if cache.exists():
        with np.load(cache) as z:
            # Caches written before issue 27 hold the features inside the .npz.
            feats = z["feats"] if "feats" in z.files else (RowFile.of_npy(feats_file) if feats_file.exists() else None)
            return Reference(z["mu"], z["sigma"], int(z["n"]), feats, f"{label} (cached statistics)")
    # Extract this rank's shard in batches; the features (8 KB per image) go to disk, images are not kept.
    stats = GaussianStats()
    spool = RowSpool(FEATURE_DIM, folder=cache.parent)
    for k in range(0, len(shard), batch_size):
        idx = shard[k : k + batch_size]
        f = features([load_uint8(paths[i]) for i in idx])
        stats.add(f)
        spool.add([f"{i:09d}" for i in idx], f.float())
    stats = stats.reduced()
    _, feats = spool.ordered()  # file order at any world size
    mu, sigma = stats.mean_cov()
    if D.is_main():

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
                np.savez(f, mu=mu, sigma=sigma, n=np.int64(len(paths)))

        atomic_write(feats_file, feats.write_npy)  # the features first: the .npz marks a complete cache
        atomic_write(cache, write)
    D.barrier()
    return Reference(mu, sigma, len(paths), feats, label)


def load_stats_file(path: Path) -> Reference:
    """Reference statistics from an .npz with `mu` and `sigma` (clean-fid / pytorch-fid), optionally `feats`
    (inside, or beside it as NAME.feats.npy, as the run's cache writes them)."""
    with np.load(path) as z:
        missing = [k for k in ("mu", "sigma") if k not in z.files]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)} array; an FID statistics .npz needs 'mu' and 'sigma'")
        mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
        n = int(z["n"]) if "n" in z.files else 0
        feats = z["feats"] if "feats" in z.files else None
    beside = path.with_suffix(".feats.npy")  # the features the run's cache writes beside its statistics
    if feats is None and beside.exists():
        feats = RowFile.of_npy(beside)
    if mu.shape != (FEATURE_DIM,) or sigma.shape != (FEATURE_DIM, FEATURE_DIM):
        raise ValueError(f"{path}: expected mu (2048,) and sigma (2048, 2048), got {mu.shape} and {sigma.shape}")
    return Reference(mu, sigma, n, feats, f"statistics file {path.name}")


def few_images_warning(n: int, what: str) -> str:
    """The warning for too few images (empty when there are enough)."""
    if n >= FEW_IMAGES:
        return ""
    return f"WARNING: {what} from {n} images (< {FEW_IMAGES:,}) is biased and noisy; compare only equal-size runs"


@dataclass(frozen=True)
class FIDOptions:
    """`metric_options` of FID and KID."""

    fid_ref: str | None = None  # a folder of reference images or an .npz of mu/sigma; default: the run's HR


class _InceptionDistance:
    """Shared plumbing of FID and KID: clean-fid features of SR outputs, references, notes, rank sync."""

    name = ""  # its column
    uses_gaussian = True  # whether the reference's mean and covariance are used (FID), or only features (KID)

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx
        self.weight = checked_weight("inception-fid", self.name.upper(), ctx.options)
        self.nonstandard = self.weight.note  # the runner marks every stored value with it
        self.extractor = extractor(CleanInception, self.weight, ctx.device)
        self.ids: list[str] = []
        ref = ctx.options_of(FIDOptions).fid_ref
        self.ref_option = Path(ref).expanduser() if ref else None
        if self.ref_option is not None and not self.ref_option.exists():
            raise FileNotFoundError(f"fid_ref {self.ref_option} does not exist; pass a folder of images or an .npz")
        # Without a run folder or a reference, the HR batches themselves are the reference (streamed): their
        # features, and for FID also their mean and covariance.
        self.collect_hr = self.ref_option is None and ctx.run_dir is None
        self.hr_rows = RowSpool(FEATURE_DIM) if self.collect_hr else None  # no run folder: $TMPDIR
        self.hr_stats = GaussianStats() if (self.collect_hr and self.uses_gaussian) else None

    def _add(self, feats: torch.Tensor, ids: Sequence[str]) -> None:
        raise NotImplementedError

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor] | None:
        """Extract Inception features of the SR batch and accumulate them."""
        self._add(self.extractor(sr), ids)
        self.ids.extend(ids)
        if self.collect_hr:
            f = self.extractor(hr)
            if self.hr_stats is not None:
                self.hr_stats.add(f)
            self.hr_rows.add(ids, f.float())
        return None

    def reference_stats(self, ids: Sequence[str]) -> Reference:
        """The reference set: --fid-ref (.npz or folder), else the run's HR images of `ids`."""
        if self.ref_option is not None and self.ref_option.is_file():
            return load_stats_file(self.ref_option)
        weights_sha = _file_sha(self.weight.path)
        if self.ref_option is not None:
            refs = scan_folder(self.ref_option)
            if not refs:
                raise ValueError(f"fid_ref folder {self.ref_option} holds no image files")
            return stats_of_files(
                [r.path for r in refs], self.extractor.features_u8, weights_sha, f"folder {self.ref_option}"
            )
        if self.collect_hr:
            _, feats = self.hr_rows.ordered()
            if self.hr_stats is None:
                return Reference(None, None, len(feats), feats, "HR images of the batches")
            stats = self.hr_stats.reduced()
            mu, sigma = stats.mean_cov()
            return Reference(mu, sigma, int(stats.n), feats, "HR images of the batches")
        hr_dir = Path(self.ctx.run_dir) / "hr"
        return stats_of_files(
            [hr_dir / f"{i}.png" for i in ids], self.extractor.features_u8, weights_sha, "HR images of the run"
        )

    def note(self, n: int, ref: Reference) -> str:
        """How many images the value used, against what, and any warning."""
        parts = [f"{n} images vs {ref.n or 'unknown'} reference ({ref.label}; clean-fid clean mode)"]
        warn = few_images_warning(min(n, ref.n) if ref.n else n, self.name.upper())
        if warn:
            parts.append(warn)
        if self.weight.note:
            parts.append(self.weight.note)
        for p in parts[1:]:
            self.ctx.log(f"warning: {self.name}: {p}")
        return "; ".join(parts)


class FID(_InceptionDistance):
    """Fréchet Inception Distance (clean-fid) between the SR outputs and the references."""

    name = "fid"

    def __init__(self, ctx: MetricContext) -> None:
        super().__init__(ctx)
        self.stats = GaussianStats()
        # While there are fewer images than feature dimensions, the features are kept too (<= 32 MB):
        # the exact distance then needs an n x n SVD instead of a 2048 x 2048 matrix square root.
        self.rows: list[np.ndarray] | None = []

    def _add(self, feats: torch.Tensor, ids: Sequence[str]) -> None:
        self.stats.add(feats)
        if self.rows is not None:
            self.rows.extend(feats.numpy())
            if len(self.rows) >= FEATURE_DIM:
                self.rows = None

    def compute(self) -> dict[str, MetricValue]:
        """All-reduce the statistics, then the Fréchet distance to the reference statistics."""
        stats = self.stats.reduced()
        ids = sorted(i for part in D.gather_objects(self.ids) for i in part)
        if len(ids) < 2:
            return {"fid": MetricValue(None, note=f"FID needs at least 2 images, got {len(ids)}")}
        ref = self.reference_stats(ids)
        kept = all(D.gather_objects(self.rows is not None))
        few = kept and len(ids) < FEATURE_DIM and ref.feats is not None and len(ref.feats) < FEATURE_DIM
        feats = gather_by_id(self.ids, self.rows)[1] if few else None
        mu, sigma = stats.mean_cov()
        if D.is_main():
            # Few images: exact, from the features; otherwise clean-fid's sqrtm (rank 0 only, seconds on a CPU).
            value = (
                frechet_distance_from_features(feats, ref.feats)
                if feats is not None
                else frechet_distance(mu, sigma, ref.mu, ref.sigma)
            )
        value = D.gather_objects(value if D.is_main() else None)[0]
        return {"fid": MetricValue(value, note=self.note(len(ids), ref))}


class KID(_InceptionDistance):
    """Kernel Inception Distance (clean-fid: unbiased MMD^2, cubic kernel, 100 subsets of <= 1000)."""

    name = "kid"
    uses_gaussian = False

    def __init__(self, ctx: MetricContext) -> None:
        super().__init__(ctx)
        self.rows = RowSpool(FEATURE_DIM, folder=spool_folder(ctx.run_dir))

    def _add(self, feats: torch.Tensor, ids: Sequence[str]) -> None:
        self.rows.add(ids, feats.float())

    def compute(self) -> dict[str, MetricValue]:
        """Gather the features in id order, then KID against the reference features."""
        ids, feats = self.rows.ordered()
        if len(ids) < 2:
            return {"kid": MetricValue(None, note=f"KID needs at least 2 images, got {len(ids)}")}
        ref = self.reference_stats(ids)
        if ref.feats is None:
            return {"kid": MetricValue(None, note=f"KID needs reference features; {ref.label} holds only mu/sigma")}
        value = kernel_distance(feats, ref.feats, self.ctx.seed)
        return {"kid": MetricValue(value, note=self.note(len(ids), ref))}


def inception_score(logits: np.ndarray | RowFile) -> tuple[float, float, int]:
    """torch-fidelity's IS of (N,C) logits: mean, std over splits, and the number of splits.

    Ten splits as usual, fewer below 1,000 images (at least 100 images per split, one split under 200),
    so a small run is not scored on splits of a handful of images. Computed a chunk of rows at a time
    (`inception_score_rows`, checked against torch-fidelity's `isc_features_to_metric` in the tests).
    """
    splits = max(1, min(10, len(logits) // 100))
    mean, std = inception_score_rows(logits, splits)
    return mean, std, splits


class InceptionScore:
    """Inception Score with torch-fidelity's Inception (logits_unbiased, 10 splits, its shuffle seed)."""

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx
        self.weight = checked_weight("inception-is", "IS", ctx.options)
        self.nonstandard = self.weight.note  # the runner marks every stored value with it
        self.extractor = extractor(FidelityInception, self.weight, ctx.device)
        self.rows = RowSpool(LOGITS_DIM, folder=spool_folder(ctx.run_dir))

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor] | None:
        """Keep the 1008 logits of each SR image."""
        self.rows.add(ids, self.extractor(sr).float())
        return None

    def score(self, rows: RowSpool) -> MetricValue:
        """IS of the gathered logits (id order, so any world size gives the same splits)."""
        all_ids, logits = rows.ordered()
        n = len(all_ids)
        if n < 2:
            return MetricValue(None, note=f"IS needs at least 2 images, got {n}")
        mean, std, splits = inception_score(logits)
        parts = [f"{n} images, {splits} split(s), std {std:.4g} (torch-fidelity)"]
        for extra in (few_images_warning(n, "IS"), self.weight.note):
            if extra:
                parts.append(extra)
                self.ctx.log(f"warning: is: {extra}")
        return MetricValue(mean, note="; ".join(parts))

    def compute(self) -> dict[str, MetricValue]:
        """IS of the SR outputs seen by every rank."""
        return {"is": self.score(self.rows)}

    def reference(self, ids: Sequence[str], hr_dir: Path) -> dict[str, MetricValue]:
        """IS of the HR images (the reference row), sharded over ranks."""
        mine = list(ids)[D.rank() :: D.world_size()]
        rows = RowSpool(LOGITS_DIM, folder=spool_folder(self.ctx.run_dir))
        for k in range(0, len(mine), REF_BATCH):
            chunk = mine[k : k + REF_BATCH]
            batch = [load_uint8(hr_dir / f"{i}.png") for i in chunk]
            sizes = {b.shape for b in batch}
            groups = [(chunk, batch)] if len(sizes) == 1 else [([i], [b]) for i, b in zip(chunk, batch)]
            for g_ids, g in groups:
                rows.add(g_ids, self.extractor.features_u8(g).float())
        return {"is": self.score(rows)}


def _inception_distance(name: str, factory: type, long_name: str, source: str) -> MetricInfo:
    """The declaration FID and KID share: one column (lower is better) against a reference set, FIDOptions."""
    title = name.upper()
    return MetricInfo(
        name=name,
        factory=factory,
        columns=(Column(name, title, title, f"{long_name} to the reference images", False),),
        help=f"clean-fid {title} vs references (lower)",
        source=source,
        needs="inception-2015-12-05.pt (inception-fid)",
        per_image=False,
        needs_reference_set=True,
        options=FIDOptions,
    )


register(_inception_distance("fid", FID, "Fréchet Inception Distance", "clean-fid, clean mode (Parmar et al. 2022)"))
register(
    _inception_distance(
        "kid",
        KID,
        "Kernel Inception Distance",
        "clean-fid kernel_distance (Binkowski et al. 2018), subsets drawn with the run's seed",
    )
)
register(
    MetricInfo(
        name="is",
        factory=InceptionScore,
        columns=(Column("is", "Inception Score", "IS", "Inception Score of the outputs", True),),
        help="Inception Score (higher)",
        source="torch-fidelity isc_features_to_metric (Salimans et al. 2016)",
        needs="weights-inception-2015-12-05-6726825d.pth (inception-is)",
        per_image=False,
        full_reference=False,
        hr_row=True,
    )
)
