"""The percentile bootstrap interval of a mean: the one the summary, the metrics and the reports quote."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(
    values: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (seeded); NaN values are dropped; (nan, nan) when empty."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # Resample in chunks: n_resamples x n indices at most ~1M at a time (16 MB, whatever the number of images).
    chunk = max(1, 1_000_000 // v.size)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, v.size, size=(stop - start, v.size))
        means[start:stop] = v[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
