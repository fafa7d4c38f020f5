"""Two runs compared image by image: paired differences, bootstrap CIs, sign-flip p-values (Holm over metrics).

`compare_runs(RUN_A, RUN_B)` refuses runs that are not comparable (evalsuite.comparable), pairs the images
the runs share by the content hash of their HR source (never by name alone), and for each metric gives the
mean paired difference B - A with a studentized (bootstrap-t) CI over image pairs and a two-sided sign-flip
permutation p-value (exact up to 2^16 sign patterns, else Monte Carlo), Holm-adjusted over the metrics
of one method pair. The command and its HTML gallery sit above the engine (docs/runs.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalsuite.comparable import RunInfo, check_comparable
from evalsuite.results import TEXT_COLUMNS

# Exact sign-flip enumeration up to this many patterns (n <= 16 images); Monte Carlo with as many beyond.
PERMUTATIONS = 1 << 16


@dataclass(frozen=True)
class MetricDiff:
    """One metric compared over the shared images: B - A, its CI, and the sign-flip p-value."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of (B - A) over image pairs
    ci_low: float
    ci_high: float
    p: float  # two-sided sign-flip permutation p-value
    p_holm: float  # Holm-adjusted over the metrics of this method pair
    higher_is_better: bool | None

    @property
    def verdict(self) -> str:
        """'B better', 'B worse', 'changed' (no direction), or 'no clear change' (the CI includes 0)."""
        if not (self.ci_low > 0 or self.ci_high < 0) or math.isnan(self.diff):
            return "no clear change"
        if self.higher_is_better is None:
            return "changed"
        return "B better" if (self.diff > 0) == self.higher_is_better else "B worse"


@dataclass
class Comparison:
    """Run B against run A for one method pair: per-metric differences and the per-image table."""

    a: RunInfo
    b: RunInfo
    method_a: str
    method_b: str
    metrics: list[MetricDiff]
    per_image: pd.DataFrame  # image_id_a, image_id_b, sha256, then M_a, M_b, M_diff per metric
    only_a: int = 0  # images only run A scored (by content)
    only_b: int = 0
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per metric, for the console and compare.csv."""
        rows = [
            {
                "method_a": self.method_a, "method_b": self.method_b, "metric": m.metric, "n": m.n,
                "mean_a": m.mean_a, "mean_b": m.mean_b, "diff": m.diff, "ci_low": m.ci_low, "ci_high": m.ci_high,
                "p": m.p, "p_holm": m.p_holm, "verdict": m.verdict,
            }
            for m in self.metrics
        ]
        return pd.DataFrame(rows)

    def most_changed(self, metric: str | None = None, k: int = 6) -> pd.DataFrame:
        """The k image pairs whose `metric` (default: the first with a direction) changed most, |B - A| first."""
        metric = metric or self.sort_metric
        if metric is None or f"{metric}_diff" not in self.per_image:
            return self.per_image.head(0)
        order = self.per_image[f"{metric}_diff"].abs().sort_values(ascending=False, na_position="last").index
        return self.per_image.loc[order[:k]]

    @property
    def sort_metric(self) -> str | None:
        """The metric the gallery orders by: the first one with a direction (PSNR in the default set)."""
        for m in self.metrics:
            if m.higher_is_better is not None:
                return m.metric
        return self.metrics[0].metric if self.metrics else None


def bootstrap_t_ci(
    d: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Studentized (bootstrap-t) CI of the mean of paired differences `d`, resampling image pairs (seeded).

    Unlike the percentile interval, it keeps its coverage with few images (Set5's five: ~96% against the
    percentile interval's ~84% for a nominal 95%; tests/test_compare.py checks it by simulation).
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[~np.isnan(d)]
    n = d.size
    if n == 0:
        return math.nan, math.nan
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    if se == 0.0:
        return mean, mean
    rng = np.random.default_rng(seed)
    ts = []
    chunk = max(1, 4_000_000 // n)  # at most ~4M resampled values at a time
    for start in range(0, n_resamples, chunk):
        x = d[rng.integers(0, n, size=(min(chunk, n_resamples - start), n))]
        ses = x.std(axis=1, ddof=1) / math.sqrt(n)
        ok = ses > 0  # a resample of one repeated value has no spread: no t
        ts.append((x.mean(axis=1)[ok] - mean) / ses[ok])
    t = np.concatenate(ts)
    if t.size == 0:
        return mean, mean
    alpha = (1.0 - level) / 2.0
    q_lo, q_hi = np.quantile(t, [alpha, 1.0 - alpha])
    return mean - float(q_hi) * se, mean - float(q_lo) * se


def sign_flip_pvalue(d: np.ndarray, seed: int = 0, n_resamples: int = PERMUTATIONS) -> float:
    """Two-sided sign-flip permutation p-value of mean(d) = 0 (exact when 2^n <= n_resamples)."""
    from scipy.stats import permutation_test

    d = np.asarray(d, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return math.nan
    if not np.any(d):
        return 1.0
    res = permutation_test(
        (d,), np.mean, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
        alternative="two-sided", rng=np.random.default_rng(seed), batch=max(1, 4_000_000 // d.size),
    )
    return float(min(1.0, res.pvalue))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels); NaN entries stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


def paired_diff(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float, float, int]:
    """(mean of B - A, CI low, CI high, sign-flip p, n pairs) over pairs where both values exist."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    lo, hi = bootstrap_t_ci(d, n_resamples, seed, level)
    return float(d.mean()), lo, hi, sign_flip_pvalue(d, seed), int(d.size)


def _per_image(info: RunInfo) -> pd.DataFrame:
    p = info.run_dir / "per_image.csv"
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: {info.run_dir} is not a finished run folder")
    return pd.read_csv(p, dtype=TEXT_COLUMNS)


def _methods(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["method"]))


def method_pairs(da: pd.DataFrame, db: pd.DataFrame, method: str | None, a: Path, b: Path) -> list[tuple[str, str]]:
    """Which methods to compare: `NAME` (in both), `NAME_A,NAME_B`, or every method both runs have."""
    ma, mb = _methods(da), _methods(db)
    if method:
        parts = [x.strip() for x in method.split(",")]
        if len(parts) > 2 or not all(parts):
            raise ValueError(f"--method {method}: give NAME (in both runs) or NAME_A,NAME_B")
        pa, pb = parts if len(parts) == 2 else (parts[0], parts[0])
        for name, have, run in ((pa, ma, a), (pb, mb, b)):
            if name not in have:
                raise ValueError(f"--method: {run} has no method {name!r}; it has {', '.join(have) or 'none'}")
        return [(pa, pb)]
    shared = [m for m in ma if m in mb]
    if shared:
        return [(m, m) for m in shared]
    if len(ma) == 1 and len(mb) == 1:
        return [(ma[0], mb[0])]
    raise ValueError(
        f"the runs share no method name ({a}: {', '.join(ma)}; {b}: {', '.join(mb)}); "
        "say which to compare with --method NAME_A,NAME_B"
    )


def _pairs(a: RunInfo, b: RunInfo) -> tuple[list[tuple[str, str, str]], int, int]:
    """(id_a, id_b, sha256) for images both runs scored, matched by content; counts of unmatched ones."""
    by_hash_b: dict[str, list[str]] = {}
    for i, h in sorted(b.image_hashes.items()):
        by_hash_b.setdefault(h, []).append(i)
    pairs = []
    used: set[str] = set()
    for i, h in sorted(a.image_hashes.items()):
        for j in by_hash_b.get(h, []):
            if j not in used:  # identical files within a run pair one to one, in id order
                used.add(j)
                pairs.append((i, j, h))
                break
    return pairs, len(a.image_hashes) - len(pairs), len(b.image_hashes) - len(pairs)


def compare_runs(
    run_a: str | Path, run_b: str | Path, method: str | None = None, metrics: tuple[str, ...] = (),
    n_resamples: int = 2000, seed: int = 0,
) -> list[Comparison]:
    """Compare run B with run A (B - A) for each method pair; NotComparableError names what differs."""
    from evalsuite.metrics.base import column_info

    a, b = RunInfo.load(run_a), RunInfo.load(run_b)
    check_comparable(a, b)
    pairs, only_a, only_b = _pairs(a, b)
    if not pairs:
        raise ValueError(
            f"{a.run_dir} and {b.run_dir} share no image (matched by the content hash of the HR source files); "
            "compare runs made on the same data"
        )
    da, db = _per_image(a), _per_image(b)
    out = []
    for ma, mb in method_pairs(da, db, method, a.run_dir, b.run_dir):
        ta = da[da["method"] == ma].set_index("image_id")
        tb = db[db["method"] == mb].set_index("image_id")
        cols = [c for c in ta.columns if c in tb.columns and c != "method"]
        if metrics:
            missing = [m for m in metrics if m not in cols]
            if missing:
                raise ValueError(f"--metrics {','.join(missing)}: not a per-image column of both runs ({cols})")
            cols = list(metrics)
        ida, idb = [p[0] for p in pairs], [p[1] for p in pairs]
        table = pd.DataFrame({"image_id_a": ida, "image_id_b": idb, "sha256": [p[2] for p in pairs]})
        diffs, notes = [], []
        for c in cols:
            va = pd.to_numeric(ta[c].reindex(ida), errors="coerce").to_numpy(dtype=np.float64)
            vb = pd.to_numeric(tb[c].reindex(idb), errors="coerce").to_numpy(dtype=np.float64)
            if np.isnan(va).all() or np.isnan(vb).all():
                continue  # a dataset-level metric (FID) or one not computed: nothing to pair
            table[f"{c}_a"], table[f"{c}_b"], table[f"{c}_diff"] = va, vb, vb - va
            diff, lo, hi, p, n = paired_diff(va, vb, n_resamples, seed)
            diffs.append(MetricDiff(c, n, float(np.nanmean(va)), float(np.nanmean(vb)), diff, lo, hi, p, math.nan,
                                    column_info(c).higher_is_better))
        adjusted = holm([m.p for m in diffs])
        diffs = [MetricDiff(**{**m.__dict__, "p_holm": q}) for m, q in zip(diffs, adjusted)]
        if len(pairs) < 5:
            notes.append(f"only {len(pairs)} image pairs: the interval and the p-value say little")
        if only_a or only_b:
            notes.append(f"{only_a} images only in A and {only_b} only in B (by content) are left out")
        out.append(Comparison(a, b, ma, mb, diffs, table, only_a, only_b, notes))
    return out
