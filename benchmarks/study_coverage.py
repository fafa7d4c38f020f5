"""Coverage of every interval the study report shows, on simulated studies of known truth (issue 30).

Model (logit-normal, crossed random effects): rater r, image i, method m.
- Task 1 (method vs the real image): P(r fooled by m on i) = expit(mu_m + u_r + v_i), u_r ~ N(0, sd_rater),
  v_i ~ N(0, sd_image), shared by the methods (a gullible rater, a hard image). The TRUE fool rate is the
  population average p_m = E_{u,v}[expit(mu_m + u + v)] over raters and images (not expit(mu_m), which is
  the median rater's rate on the median image); mu_m is solved from p_m by Gauss-Hermite quadrature.
  Every rater judges every image once per method (crossed). Intervals: the fool rate (CGM mean interval),
  the difference of two methods' fool rates (CGM contrast; truth p_a - p_b) and the Bradley-Terry score
  against the real image (sandwich; truth logit(p_m), which is what the BT maximum-likelihood estimate of a
  method-vs-real design converges to).
- Duels (method vs method, 4 methods): P(r chooses a over b on i) = expit(t_a - t_b + u_ra - u_rb +
  v_ia - v_ib) with per-method rater and image effects. Each (rater, image) cell holds one duel, the pairs
  in rotation (balanced). Intervals: the Bradley-Terry scores (mean-centred; the truth is the pseudo-true
  value solving the population likelihood equations, i.e. a BT fit to the population-average win
  probabilities E[expit(t_a - t_b + e)], e ~ N(0, 2 sd_rater^2 + 2 sd_image^2)), and a metric's 2AFC
  agreement with the raters (metric value t_m + v_im + N(0, 0.5); truth by a 2e6-draw Monte Carlo).

Each interval is computed by the code the analysis uses (studies.intervals); the Bradley-Terry fit here is a
vectorised Newton iteration (the maximum-likelihood estimate is unique, so it equals choix's; the fast test
checks it). Printed: per interval, the coverage over the grid, its worst cell and the Monte Carlo standard
error sqrt(0.95 * 0.05 / reps).

    .venv/bin/python benchmarks/study_coverage.py                 # the full grid, 2000 replications per cell
    .venv/bin/python benchmarks/study_coverage.py --quick         # a small grid (what the fast test runs)
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studies.intervals import bt_intervals, bt_parts, contrast_intervals, crossed_groups, mean_intervals  # noqa: E402

LOW, HIGH = 0.93, 0.97  # issue 30: every interval's coverage must lie in [93%, 97%]
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(80)  # probabilists' Gauss-Hermite nodes: E f(Z), Z ~ N(0, 1)


@dataclass(frozen=True)
class Cell:
    """One grid point: raters, images, effect SDs (logit scale) and the fool rate (Task 1)."""

    raters: int
    images: int
    sd_rater: float
    sd_image: float
    fool_rate: float = 0.35
    per_rater: int | None = None  # images each rater judges (None: every image), in blocks as studies.design

    def label(self) -> str:
        """A short name for the tables."""
        part = f" {self.per_rater}/rater" if self.per_rater else ""
        return (f"R={self.raters} I={self.images}{part} sdR={self.sd_rater} sdI={self.sd_image} "
                f"p={self.fool_rate}")


def population_rate(mu: float, sd: float) -> float:
    """E[expit(mu + sd Z)], Z ~ N(0, 1): the population-average probability."""
    return float(np.dot(_GH_W, special.expit(mu + sd * _GH_X)) / _GH_W.sum())


def mu_for(rate: float, sd: float) -> float:
    """The logit-scale mean whose population-average probability is `rate`."""
    return float(optimize.brentq(lambda m: population_rate(m, sd) - rate, -20, 20))


def crossed(cell: Cell) -> tuple[np.ndarray, np.ndarray]:
    """The (rater, image) index of each trial: every rater judges every image once, or `per_rater` of them
    in consecutive blocks (rater k: images (k * per_rater + t) mod I, as studies.design deals them)."""
    if cell.per_rater:
        r = np.repeat(np.arange(cell.raters), cell.per_rater)
        t = np.tile(np.arange(cell.per_rater), cell.raters)
        return r, (r * cell.per_rater + t) % cell.images
    r, i = np.meshgrid(np.arange(cell.raters), np.arange(cell.images), indexing="ij")
    return r.reshape(-1), i.reshape(-1)


def fit_bt(wins: np.ndarray, fixed: int, iters: int = 60) -> np.ndarray:
    """Vectorised Bradley-Terry ML fit: wins (B, k, k) -> theta (B, k) with theta[:, fixed] = 0 (Newton)."""
    n_b, k, _ = wins.shape
    free = np.array([j for j in range(k) if j != fixed])
    n = wins + np.swapaxes(wins, 1, 2)
    theta = np.zeros((n_b, k))
    for _ in range(iters):
        p = special.expit(theta[:, :, None] - theta[:, None, :])
        grad = (wins - n * p).sum(axis=2)
        w = n * p * (1 - p)
        info = -w + np.eye(k)[None] * w.sum(axis=2)[:, :, None]
        sub = info[:, free[:, None], free[None, :]] + 1e-9 * np.eye(k - 1)
        step = np.linalg.solve(sub, grad[:, free, None])[..., 0]
        theta[:, free] += np.clip(step, -2, 2)
        if np.abs(step).max() < 1e-10:
            break
    return theta


def _covered(lo: np.ndarray, hi: np.ndarray, truth: float | np.ndarray) -> np.ndarray:
    """Whether each replication's interval holds the truth."""
    return (lo <= truth) & (truth <= hi)


def task1(cell: Cell, reps: int, rng: np.random.Generator) -> dict[str, float]:
    """Coverage of the Task 1 intervals: fool rate, difference of two methods, BT score vs real."""
    r, i = crossed(cell)
    sd = float(np.hypot(cell.sd_rater, cell.sd_image))
    p_a, p_b = cell.fool_rate, max(cell.fool_rate - 0.1, 0.05)
    mu_a, mu_b = mu_for(p_a, sd), mu_for(p_b, sd)
    u = rng.normal(0, cell.sd_rater, (reps, cell.raters))[:, r]
    v = rng.normal(0, cell.sd_image, (reps, cell.images))[:, i]
    ya = (rng.random(u.shape) < special.expit(mu_a + u + v)).astype(float)
    yb = (rng.random(u.shape) < special.expit(mu_b + u + v)).astype(float)
    out = {}
    est, _, lo, hi, _ = mean_intervals(ya, r, i)
    out["fool rate"] = _covered(lo, hi, p_a).mean()
    # Difference: y ~ 1 + [method == a] over both methods' trials.
    y2 = np.concatenate([ya, yb], axis=1)
    x = np.concatenate([np.ones(r.size), np.zeros(r.size)])
    est, _, lo, hi, _ = contrast_intervals(y2, x, np.tile(r, 2), np.tile(i, 2))
    out["difference of fool rates"] = _covered(lo, hi, p_a - p_b).mean()
    # Bradley-Terry score of the method against the real image (option 0, fixed at 0).
    wins = np.zeros((reps, 2, 2))
    wins[:, 1, 0] = ya.sum(axis=1)
    wins[:, 0, 1] = ya.shape[1] - ya.sum(axis=1)
    ok = (wins[:, 1, 0] > 0) & (wins[:, 0, 1] > 0)  # separable replications (never or always fooled) are rare
    theta = fit_bt(wins[ok], 0)
    winner = np.where(ya[ok] > 0, 1, 0)
    groups = crossed_groups(r, i)
    se, _, q = bt_intervals(bt_parts(theta, winner, 1 - winner, groups, 0), groups, centre=False)
    out["Bradley-Terry score (Task 1)"] = _covered(theta[:, 1] - q[:, 1] * se[:, 1], theta[:, 1] + q[:, 1] * se[:, 1],
                                                   special.logit(p_a)).sum() / reps
    return out


PAIRS = list(itertools.combinations(range(4), 2))
DUEL_SCORES = np.array([0.6, 0.2, -0.2, -0.6])
METRIC_NOISE = 0.5


def duel_truth(cell: Cell, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Pseudo-true mean-centred BT scores and the metric's true agreement for a duel cell."""
    sd = float(np.sqrt(2) * np.hypot(cell.sd_rater, cell.sd_image))
    wins = np.zeros((1, 4, 4))
    agree = []
    for a, b in PAIRS:
        pbar = population_rate(DUEL_SCORES[a] - DUEL_SCORES[b], sd)
        wins[0, a, b], wins[0, b, a] = pbar, 1 - pbar
        m = 2_000_000
        dr = rng.normal(0, np.sqrt(2) * cell.sd_rater, m)
        vi = rng.normal(0, cell.sd_image, (2, m))
        delta = DUEL_SCORES[a] - DUEL_SCORES[b] + dr + vi[0] - vi[1]
        metric_a = (DUEL_SCORES[a] - DUEL_SCORES[b] + vi[0] - vi[1]
                    + rng.normal(0, np.sqrt(2) * METRIC_NOISE, m)) > 0
        pa = special.expit(delta)
        agree.append(np.mean(np.where(metric_a, pa, 1 - pa)))
    theta = fit_bt(wins, 0)[0]
    return theta - theta.mean(), float(np.mean(agree))


def duels(cell: Cell, reps: int, rng: np.random.Generator) -> dict[str, float]:
    """Coverage of the duel intervals: each Bradley-Terry score (worst option) and a metric's agreement."""
    r, i = crossed(cell)
    pair = (r + i) % len(PAIRS)
    a = np.array([p[0] for p in PAIRS])[pair]
    b = np.array([p[1] for p in PAIRS])[pair]
    u = rng.normal(0, cell.sd_rater, (reps, cell.raters, 4))
    v = rng.normal(0, cell.sd_image, (reps, cell.images, 4))
    delta = DUEL_SCORES[a] - DUEL_SCORES[b] + u[:, r, a] - u[:, r, b] + v[:, i, a] - v[:, i, b]
    a_wins = rng.random(delta.shape) < special.expit(delta)
    winner, loser = np.where(a_wins, a, b), np.where(a_wins, b, a)
    wins = np.zeros((reps, 4, 4))
    np.add.at(wins, (np.arange(reps)[:, None], winner, loser), 1.0)
    theta = fit_bt(wins, 0)
    theta_c = theta - theta.mean(axis=1, keepdims=True)
    groups = crossed_groups(r, i)
    se, _, q = bt_intervals(bt_parts(theta, winner, loser, groups, 0), groups, centre=True)
    truth, agree_truth = duel_truth(cell, rng)
    cover = _covered(theta_c - q * se, theta_c + q * se, truth[None, :]).mean(axis=0)
    # The metric: value t_m + v_im + noise; it prefers a when its value is larger; agreement = rater chose it.
    noise = rng.normal(0, METRIC_NOISE, (reps, cell.images, 4))
    val = DUEL_SCORES[None, None, :] + v + noise
    metric_a = val[:, i, a] > val[:, i, b]
    y = (metric_a == a_wins).astype(float)
    _, _, lo, hi, _ = mean_intervals(y, r, i)
    worst = cover[int(np.argmax(np.abs(cover - 0.95)))]  # the option furthest from 95%
    return {"Bradley-Terry scores (duels, worst option)": float(worst),
            "metric agreement (duels)": _covered(lo, hi, agree_truth).mean()}


def grid(quick: bool) -> tuple[list[Cell], list[Cell]]:
    """(Task 1 cells, duel cells): the issue's grid, or a small one for the fast test."""
    if quick:
        t1 = [Cell(10, 10, 0.6, 0.6, 0.2), Cell(30, 20, 0.4, 0.4, 0.35), Cell(10, 100, 0.0, 0.6, 0.5),
              Cell(10, 20, 0.6, 0.6, 0.35, 10)]
        return t1, [Cell(10, 12, 0.6, 0.6), Cell(30, 20, 0.4, 0.4)]
    sizes = [(10, 10), (10, 100), (30, 20), (60, 10), (60, 100)]
    sds = [(0.0, 0.0), (0.6, 0.0), (0.0, 0.6), (0.3, 0.3), (0.6, 0.6)]
    t1 = [Cell(r, i, a, b, p) for (r, i), (a, b), p in itertools.product(sizes, sds, (0.2, 0.35, 0.5))]
    # The paper's design: each rater judges half the images (100 images, 50 per rater), and a small one.
    t1 += [Cell(r, i, a, b, 0.35, i // 2) for (r, i), (a, b) in itertools.product([(30, 100), (10, 20)], sds)]
    d = [Cell(r, i, a, b) for (r, i), (a, b) in itertools.product(sizes, sds)]
    return t1, d


def run(quick: bool, reps: int, seed: int, only_partial: bool = False) -> dict[str, list[tuple[Cell, float]]]:
    """Coverage per interval and cell (`only_partial`: the cells where raters judge part of the images)."""
    rng = np.random.default_rng(seed)
    t1, d = grid(quick)
    if only_partial:
        t1, d = [c for c in t1 if c.per_rater], []
    found: dict[str, list[tuple[Cell, float]]] = {}
    for cell in t1:
        for name, c in task1(cell, reps, rng).items():
            found.setdefault(name, []).append((cell, float(c)))
    for cell in d:
        for name, c in duels(cell, reps, rng).items():
            found.setdefault(name, []).append((cell, float(c)))
    return found


def main() -> int:
    """Print the coverage of every interval over the grid, its worst cell and the MC standard error."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small grid (the fast test's)")
    ap.add_argument("--reps", type=int, default=2000, help="simulated studies per cell (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--partial", action="store_true", help="only the cells where raters judge part of the images")
    args = ap.parse_args()
    t0 = time.perf_counter()
    found = run(args.quick, args.reps, args.seed, args.partial)
    mc = float(np.sqrt(0.95 * 0.05 / args.reps))
    print(f"coverage of 95% intervals, {args.reps} simulated studies per cell (MC standard error {mc:.1%} at 95%)")
    print(f"load: {os.getloadavg()[0]:.2f} (1-min); target {LOW:.0%}-{HIGH:.0%} in every cell")
    ok = True
    for name, rows in found.items():
        cov = np.array([c for _, c in rows])
        worst = rows[int(np.argmax(np.abs(cov - 0.95)))]
        inside = bool(((cov >= LOW) & (cov <= HIGH)).all())
        ok &= inside
        print(f"  {name:45s} cells {len(rows):3d}  mean {cov.mean():.1%}  min {cov.min():.1%}  max {cov.max():.1%}  "
              f"worst {worst[1]:.1%} at {worst[0].label()}  {'OK' if inside else 'OUTSIDE'}")
    print(f"{'every interval within' if ok else 'NOT every interval within'} {LOW:.0%}-{HIGH:.0%}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
