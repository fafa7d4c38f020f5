"""Two-way cluster-robust (Cameron-Gelbach-Miller) intervals for study numbers judged by crossed raters and images.

One rater answers many trials and one image is judged by many raters, so judgments are correlated within
raters and within images at the same time (crossed, not nested). The CGM variance of an estimate is

    V = V_rater + V_image - V_(rater x image),

each term the one-way cluster-robust (sandwich) variance with the CRV1 small-sample factor
G/(G-1) * (N-1)/(N-K) (statsmodels' `cov_cluster_2groups` uses the same). Intervals use a t reference
with Satterthwaite degrees of freedom, clamped (`combine`), which keeps coverage within 93-97% from 10
raters or 10 images up (benchmarks/study_coverage.py measures it; docs/studies.md gives the figures).

Everything here is numpy and vectorised over a leading axis of replications, so the coverage benchmark
runs the exact code the analysis uses:
- `mean_interval`: a mean of per-trial values (a fool rate, a metric's agreement with raters);
- `contrast`: the last coefficient of OLS y ~ 1 + x (a difference of two fool rates);
- `bt_covariance`: the sandwich covariance of Bradley-Terry maximum-likelihood scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

LEVEL = 0.95
METHOD = "two-way cluster-robust (Cameron-Gelbach-Miller, CRV1) standard error by rater and image, t reference"
DF_RULE = ("Satterthwaite df clamped to [(s + min(R, I) - 1)/2, max(R, I) - 1], s = 1/(1/(R-1) + 1/(I-1)) "
           "([s, max(R, I) - 1] for a difference of two methods)")


def codes(labels: Sequence | np.ndarray) -> np.ndarray:
    """Integer codes 0..G-1 of a label array (the cluster index of each trial)."""
    return np.unique(np.asarray(labels).astype(str), return_inverse=True)[1].reshape(-1)


def crossed_groups(rater: np.ndarray, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The three CGM groupings as (codes, sign): rater (+), image (+), rater x image cell (-)."""
    r, i = codes(rater), codes(image)
    cell = codes(r.astype(np.int64) * (int(i.max()) + 1 if i.size else 1) + i)
    return [(r, 1.0), (i, 1.0), (cell, -1.0)]


def cluster_variance(infl: np.ndarray, groups: list[tuple[np.ndarray, float]], n_params: int = 1) -> np.ndarray:
    """CGM variance sum_g sign * c_g * sum_clusters (sum of influences)^2 over the last axis of `infl`.

    `infl` (..., N): each trial's influence on the estimate (estimate - truth ~ sum of influences);
    `groups`: (cluster codes of the N trials, +1 or -1). c_g = G/(G-1) * (N-1)/(N-K), the CRV1 factor.
    """
    infl = np.asarray(infl, dtype=np.float64)
    n = infl.shape[-1]
    flat = infl.reshape(-1, n)
    total = np.zeros(flat.shape[0])
    for g, sign in groups:
        n_g = int(g.max()) + 1 if g.size else 0
        if n_g < 2:
            continue
        # Per replication and cluster: the sum of the influences, by one bincount over offset codes.
        idx = (np.arange(flat.shape[0])[:, None] * n_g + g[None, :]).reshape(-1)
        sums = np.bincount(idx, weights=flat.reshape(-1), minlength=flat.shape[0] * n_g).reshape(-1, n_g)
        factor = n_g / (n_g - 1) * (n - 1) / max(n - n_params, 1)
        total += sign * factor * (sums**2).sum(axis=1)
    return total.reshape(infl.shape[:-1])


def components(infl: np.ndarray, groups: list[tuple[np.ndarray, float]], n_params: int = 1) -> np.ndarray:
    """The one-way CRV1 variances of each grouping (unsigned): (n_groupings, ...) over the leading axes."""
    return np.stack([cluster_variance(infl, [(g, 1.0)], n_params) for g, _ in groups])


def combine(parts: np.ndarray, groups: list[tuple[np.ndarray, float]],
            midway: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The CGM variance from its one-way parts and the degrees of freedom of its t reference.

    V = V_rater + V_image - V_cell; where V is not positive (possible with few clusters), the larger one-way
    variance and min(R, I) - 1 df. df: Satterthwaite's V^2 / sum(V_g^2 / (G_g - 1)), clamped to
    [(s + min(R, I) - 1) / 2, max(R, I) - 1] with s = 1 / (1/(R-1) + 1/(I-1)), the Satterthwaite value when
    the rater and image parts are equal (an unclustered study, where V_R and V_I add their noise and a t
    with min(R, I) - 1 df is too narrow: 93% at 10 x 10). With few clusters the estimated df is itself
    noisy and biased low, so the lower end sits halfway between s and min(R, I) - 1; the upper end lets
    the larger dimension's df through where it dominates. benchmarks/study_coverage.py measures the result.
    `midway=False` (differences of two methods, `contrast`): the lower end is s itself. The rater and
    image tendencies two methods share largely cancel in their difference, which leaves V_R and V_I of
    similar size, the case s describes (halfway, the difference covered 92-93% at 10 x 10).
    A single grouping (one-way clustering): V_g and G - 1.
    """
    sizes = np.array([int(g.max()) + 1 if g.size else 0 for g, _ in groups], dtype=np.float64)
    signs = np.array([s for _, s in groups])
    if len(groups) == 1:
        return parts[0], np.full(parts.shape[1:], sizes[0] - 1.0)
    shape = (-1,) + (1,) * (parts.ndim - 1)
    var = (signs.reshape(shape) * parts).sum(axis=0)
    bad = ~(var > 0)
    var = np.where(bad, np.maximum(parts[0], parts[1]), var)
    dfs = np.maximum(sizes - 1.0, 1.0).reshape(shape)
    denom = (parts**2 / dfs).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        satt = np.where(denom > 0, var**2 / denom, np.inf)
    m = max(min(sizes[0], sizes[1]) - 1.0, 1.0)
    s = 1.0 / (1.0 / max(sizes[0] - 1, 1) + 1.0 / max(sizes[1] - 1, 1))
    low = (s + m) / 2 if midway else s
    df = np.where(bad, m, np.clip(satt, low, max(max(sizes[0], sizes[1]) - 1.0, 1.0)))
    return var, df


@dataclass(frozen=True)
class Interval:
    """An estimate, its CGM standard error (on the interval's scale), t degrees of freedom, interval and p-value."""

    estimate: float
    se: float
    df: float
    low: float
    high: float
    p_value: float


NAN = Interval(float("nan"), float("nan"), 0.0, float("nan"), float("nan"), float("nan"))


def t_quantile(df: float | np.ndarray, level: float = LEVEL) -> np.ndarray | float:
    """The two-sided t quantile for a `level` interval with `df` degrees of freedom (NaN below 1 df)."""
    df = np.asarray(df, dtype=np.float64)
    q = np.where(df >= 1, stats.t.ppf(0.5 + level / 2.0, np.maximum(df, 1.0)), np.nan)
    return float(q) if q.ndim == 0 else q


def mean_intervals(Y: np.ndarray, rater: np.ndarray, image: np.ndarray,
                   level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """Vectorised `mean_interval` over rows of Y (B, N) of one design: (estimate, se_logit, low, high, df).

    The interval is est +/- t * se on the logit scale (se_logit = se / (est (1 - est)), the delta method),
    mapped back: it stays inside (0, 1) and is asymmetric near the ends, as a proportion's interval should be.
    A constant `rater` (or `image`) array clusters by the other alone (one-way). All values equal (est 0
    or 1, no variance): the Wilson interval of N independent trials.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    groups = crossed_groups(rater, image)
    sizes = [int(g.max()) + 1 for g, _ in groups[:2]]
    if min(sizes) == 1:  # one-way: cluster by the dimension that varies
        groups = [groups[0] if sizes[0] > 1 else groups[1]]
    est = Y.mean(axis=1)
    infl = (Y - est[:, None]) / Y.shape[1]
    var, df = combine(components(infl, groups), groups)
    q = t_quantile(df, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.maximum(var, 0.0)) / (est * (1.0 - est))
        centre = special.logit(est)
        lo, hi = special.expit(centre - q * se), special.expit(centre + q * se)
    flat = ~(var > 0) | (est <= 0) | (est >= 1)
    if np.any(flat):
        n = Y.shape[1]
        z = float(stats.norm.ppf(0.5 + level / 2.0))
        mid = (est + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(est * (1 - est) / n + z * z / (4 * n * n))
        lo, hi = np.where(flat, np.maximum(mid - half, 0.0), lo), np.where(flat, np.minimum(mid + half, 1.0), hi)
    return est, se, lo, hi, df


def mean_interval(y: np.ndarray, rater: np.ndarray, image: np.ndarray, level: float = LEVEL,
                  null: float | None = None) -> Interval:
    """CGM interval of mean(y) (a fool rate, an agreement share), clustered by rater and image; logit scale.

    p_value: the t-test of logit(mean) = logit(null), so it is below 1 - level exactly when the interval
    excludes `null`.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return NAN
    est, se, lo, hi, df = (np.asarray(v).reshape(-1)[0] for v in mean_intervals(y[None, :], rater, image, level))
    p = float("nan")
    if null is not None and 0 < null < 1 and np.isfinite(se) and se > 0:
        p = float(2.0 * stats.t.sf(abs(special.logit(est) - special.logit(null)) / se, df))
    elif null is not None and np.isfinite(lo):
        p = 1.0 if lo <= null <= hi else 0.0  # no variance: the Wilson interval decides
    return Interval(float(est), float(se), float(df), float(lo), float(hi), p)


def contrast_intervals(Y: np.ndarray, x: np.ndarray, rater: np.ndarray, image: np.ndarray,
                       level: float = LEVEL) -> tuple[np.ndarray, ...]:
    """Vectorised `contrast` over rows of Y (B, N) of one design: (estimate, se, low, high, df) arrays."""
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    X = np.column_stack([np.ones(Y.shape[1]), np.asarray(x, dtype=np.float64)])
    pinv = np.linalg.pinv(X)  # (2, N): beta = pinv @ y; the slope's influence per trial is pinv[1, t] * residual_t
    beta = Y @ pinv.T
    infl = pinv[1][None, :] * (Y - beta @ X.T)
    groups = crossed_groups(rater, image)
    var, df = combine(components(infl, groups, 2), groups, midway=False)
    se = np.sqrt(np.maximum(var, 0.0))
    q = t_quantile(df, level)
    return beta[:, 1], se, beta[:, 1] - q * se, beta[:, 1] + q * se, df


def contrast(y: np.ndarray, x: np.ndarray, rater: np.ndarray, image: np.ndarray, level: float = LEVEL,
             null: float = 0.0) -> Interval:
    """CGM interval and t-test of the slope of OLS y ~ 1 + x (x a 0/1 indicator: a difference of means)."""
    y = np.asarray(y, dtype=np.float64)
    X = np.column_stack([np.ones(y.size), np.asarray(x, dtype=np.float64)])
    if y.size <= 2 or np.linalg.matrix_rank(X) < 2:
        return NAN
    est, se, lo, hi, df = (float(np.asarray(v).reshape(-1)[0]) for v in
                           contrast_intervals(y[None, :], x, rater, image, level))
    if not se > 0:
        return Interval(est, se, df, est, est, float("nan"))
    return Interval(est, se, df, lo, hi, float(2.0 * stats.t.sf(abs(est - null) / se, df)))


def bt_parts(theta: np.ndarray, winner: np.ndarray, loser: np.ndarray,
             groups: list[tuple[np.ndarray, float]], fixed: int) -> np.ndarray:
    """One-way sandwich covariances of Bradley-Terry ML scores, one per grouping: (G, B, k, k).

    theta (B, k) with theta[:, fixed] = 0; winner/loser (B, N) option indices of each trial. Each trial's
    score (gradient of its log-likelihood) is (1 - p)(e_winner - e_loser), p = P(winner chosen); the Hessian
    is sum p(1-p)(e_w - e_l)(e_w - e_l)'. Part g = H^-1 M_g H^-1, M_g = CRV1 factor * sum over clusters of
    (cluster score sum)(cluster score sum)'; `fixed`'s row and column are 0. `bt_intervals` combines them.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    winner, loser = np.atleast_2d(winner), np.atleast_2d(loser)
    n_b, k = theta.shape
    n = winner.shape[1]
    keep = np.array([j for j in range(k) if j != fixed])
    pos = np.full(k, -1)
    pos[keep] = np.arange(k - 1)
    rows = np.arange(n_b)[:, None]
    p = 1.0 / (1.0 + np.exp(-(theta[rows, winner] - theta[rows, loser])))  # (B, N)
    # d = e_winner - e_loser in the free parameters (the fixed option's entry dropped): (B, N, k-1).
    eye = np.vstack([np.eye(k - 1), np.zeros((1, k - 1))])  # row -1 (the fixed option): zeros
    d = eye[pos[winner]] - eye[pos[loser]]
    hess = np.einsum("bti,bt,btj->bij", d, p * (1 - p), d)
    score = d * (1.0 - p)[:, :, None]
    inv = np.linalg.pinv(hess)
    out = np.zeros((len(groups), n_b, k, k))
    for gi, (g, _) in enumerate(groups):
        n_g = int(g.max()) + 1
        if n_g < 2:
            continue
        # Per replication and cluster: the summed scores, one bincount per free parameter.
        idx = (np.arange(n_b)[:, None] * n_g + g[None, :]).reshape(-1)
        sums = np.stack([np.bincount(idx, weights=score[:, :, j].reshape(-1), minlength=n_b * n_g)
                         for j in range(k - 1)], axis=-1).reshape(n_b, n_g, k - 1)
        meat = n_g / (n_g - 1) * (n - 1) / max(n - (k - 1), 1) * np.einsum("bgi,bgj->bij", sums, sums)
        out[gi][:, keep[:, None], keep[None, :]] = inv @ meat @ inv
    return out


def bt_intervals(parts: np.ndarray, groups: list[tuple[np.ndarray, float]], centre: bool,
                 level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per score: (se, df, t quantile) arrays (B, k) from `bt_parts`; `centre`: scores are mean-centred."""
    if centre:
        k = parts.shape[-1]
        c = np.eye(k) - np.full((k, k), 1.0 / k)
        parts = c @ parts @ c.T
    diag = np.diagonal(parts, axis1=-2, axis2=-1)  # (G, B, k)
    var, df = combine(diag, groups)
    return np.sqrt(np.maximum(var, 0.0)), df, t_quantile(df, level)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN stays NaN, ignored in the count)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


__all__ = ["DF_RULE", "Interval", "LEVEL", "METHOD", "bt_intervals", "bt_parts", "cluster_variance", "combine",
           "components", "contrast", "contrast_intervals", "crossed_groups", "holm", "mean_interval", "mean_intervals",
           "t_quantile"]
