"""Sample-size planning for 2AFC fool-rate studies: raters x trials per rater x images, with clustering.

Judgments of one rater are correlated (some raters are fooled more easily), and so are judgments of one
image; the intra-class correlations ICC_rater and ICC_image (on the 0/1 judgment scale) measure it. A
method's fool rate from N = raters * m_r judgments (m_r per rater, m_i = N / images per image) has the
variance of N independent ones times the design effect

    DE = 1 + (m_r - 1) * ICC_rater + (m_i - 1) * ICC_image.

For the difference of two methods' fool rates judged by the same raters on the same images, rater and
image tendencies shared across methods (correlation `method_corr`, rho) cancel in part:

    Var(p_A - p_B) = (p_A q_A + p_B q_B) / N * (1 + (m_r (1 - rho) - 1) ICC_rater + (m_i (1 - rho) - 1) ICC_image)

(rho = 0, the default, is the conservative case: every method has its own rater and image effects).
The closed form is the two-proportion Wald test with this variance and the analysis's t reference
(df = min(raters, images) - 1, at or below the analysis's clamped Satterthwaite df, `studies.intervals`);
with more than two methods the level is Bonferroni-corrected over the k(k-1)/2 method pairs, a lower
bound on the power of the Holm-adjusted tests the analysis reports. The simulation draws judgments with
rater and image random effects on the logit scale whose ICCs match, and runs the analysis's test
(`studies.intervals.contrast`) itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from studies.intervals import contrast

DESIGN_COLUMNS = [
    "n_raters",
    "trials_per_rater",
    "n_images",
    "n_judgments",
    "per_image_per_method",
    "design_effect",
    "power",
    "half_width",
    "sim_power",
    "sim_se",
]


@dataclass(frozen=True)
class Design:
    """A study's size: raters, main trials per rater (over all methods), images, methods."""

    n_raters: int
    trials_per_rater: int
    n_images: int
    methods: int

    def __post_init__(self) -> None:
        if self.methods < 1 or self.n_raters < 1 or self.n_images < 1:
            raise ValueError(f"raters, images and methods must be at least 1, got {self}")
        if self.trials_per_rater < self.methods:
            raise ValueError(
                f"trials per rater ({self.trials_per_rater}) must be at least the number of methods "
                f"({self.methods}): each rater judges every method"
            )
        if self.m_rater > self.n_images:
            raise ValueError(
                f"{self.m_rater:g} trials per rater and method exceed the {self.n_images} images: a rater "
                "judges an image at most once per method; use more images or fewer trials per rater"
            )

    @property
    def m_rater(self) -> float:
        """Trials per rater and method."""
        return self.trials_per_rater / self.methods

    @property
    def n_per_method(self) -> float:
        """Judgments per method."""
        return self.n_raters * self.m_rater

    @property
    def m_image(self) -> float:
        """Judgments per image and method."""
        return self.n_per_method / self.n_images


@dataclass(frozen=True)
class Assumptions:
    """What the plan assumes: baseline fool rate, clustering (ICCs), shared tendencies, test level."""

    baseline: float = 0.4
    icc_rater: float = 0.05
    icc_image: float = 0.10
    method_corr: float = 0.0
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.baseline < 1:
            raise ValueError(f"baseline fool rate must be in (0, 1), got {self.baseline}")
        if not (0 <= self.icc_rater < 1 and 0 <= self.icc_image < 1 and self.icc_rater + self.icc_image < 1):
            raise ValueError(
                f"ICCs must be in [0, 1) with a sum below 1, got rater {self.icc_rater}, image {self.icc_image}"
            )
        if not 0 <= self.method_corr <= 1:
            raise ValueError(f"method_corr must be in [0, 1], got {self.method_corr}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")


def n_pairs(methods: int) -> int:
    """Method pairs the Bonferroni correction divides alpha by (1 for one or two methods)."""
    return max(1, methods * (methods - 1) // 2)


def design_effect(
    m_rater: float, m_image: float, icc_rater: float, icc_image: float, method_corr: float = 0.0
) -> float:
    """1 + (m_r (1 - rho) - 1) ICC_rater + (m_i (1 - rho) - 1) ICC_image (rho = 0: one method's fool rate)."""
    keep = 1.0 - method_corr
    return 1.0 + (m_rater * keep - 1) * icc_rater + (m_image * keep - 1) * icc_image


def _diff_se(design: Design, effect: float, a: Assumptions) -> float:
    """Standard error of the difference of two methods' fool rates under the design effect."""
    p1, p2 = a.baseline, a.baseline + effect
    if not 0 < p2 < 1:
        raise ValueError(f"baseline + effect must be in (0, 1), got {a.baseline} + {effect}")
    de = design_effect(design.m_rater, design.m_image, a.icc_rater, a.icc_image, a.method_corr)
    return math.sqrt(de * (p1 * (1 - p1) + p2 * (1 - p2)) / design.n_per_method)


def _t_power(ncp: float, df: int, level: float) -> float:
    """P(|T| > t_crit) for a noncentral t with noncentrality ncp (two-sided test at `level`)."""
    t_crit = stats.t.isf(level / 2, df)
    return float(stats.nct.sf(t_crit, df, ncp) + stats.nct.cdf(-t_crit, df, ncp))


def design_power(
    n_raters: int,
    trials_per_rater: int,
    n_images: int,
    methods: int,
    effect: float,
    baseline: float = 0.4,
    alpha: float = 0.05,
    icc_rater: float = 0.05,
    icc_image: float = 0.10,
    method_corr: float = 0.0,
) -> float:
    """Closed-form power to detect a fool-rate difference `effect` between two of `methods` (Bonferroni)."""
    design = Design(n_raters, trials_per_rater, n_images, methods)
    a = Assumptions(baseline, icc_rater, icc_image, method_corr, alpha)
    df = max(1, min(n_raters, n_images) - 1)
    return _t_power(abs(effect) / _diff_se(design, effect, a), df, alpha / n_pairs(methods))


def half_width(design: Design, a: Assumptions, level: float = 0.95) -> float:
    """Expected half-width of one method's fool-rate CI (normal approximation with the design effect)."""
    p = a.baseline
    de = design_effect(design.m_rater, design.m_image, a.icc_rater, a.icc_image)
    return float(stats.norm.isf((1 - level) / 2) * math.sqrt(de * p * (1 - p) / design.n_per_method))


def raters_needed(
    trials_per_rater: int,
    n_images: int,
    methods: int,
    a: Assumptions,
    effect: float | None = None,
    power: float = 0.8,
    target_half_width: float | None = None,
) -> int | None:
    """Fewest raters for the target power (effect) or CI half-width; None when no number of raters suffices.

    Var = c * [(1 - ICC_r - ICC_i) / (R m_r) + (1 - rho) ICC_r / R + (1 - rho) ICC_i / I] falls with R
    towards c (1 - rho) ICC_i / I: image-to-image variation alone sets a floor that only more images lower.
    """
    m_r = trials_per_rater / methods
    if effect is not None:
        p1, p2 = a.baseline, a.baseline + effect
        c, rho = p1 * (1 - p1) + p2 * (1 - p2), a.method_corr
        # Normal-approximation target variance; the t correction is applied by stepping R up below.
        z = stats.norm.isf(a.alpha / n_pairs(methods) / 2) + stats.norm.ppf(power)
        v_target = (abs(effect) / z) ** 2
    elif target_half_width is not None:
        c, rho = a.baseline * (1 - a.baseline), 0.0
        v_target = (target_half_width / stats.norm.isf(a.alpha / 2)) ** 2
    else:
        raise ValueError("give an effect (difference in fool rate) or a target CI half-width")
    room = v_target / c - (1 - rho) * a.icc_image / n_images
    if room <= 0:
        return None
    per_rater = (1 - a.icc_rater - a.icc_image) / m_r + (1 - rho) * a.icc_rater
    r = max(2, math.ceil(per_rater / room))
    if effect is not None:
        # Step up until the t-reference power reaches the target (few steps: df only matters for small R).
        while r < 100_000:
            got = design_power(r, trials_per_rater, n_images, methods, effect, a.baseline, a.alpha, a.icc_rater,
                               a.icc_image, a.method_corr)
            if got >= power:
                break
            r += 1
    return r


def power_sentence(
    n_raters: int,
    trials_per_rater: int,
    n_images: int,
    methods: int,
    effects: tuple[float, ...] = (0.05, 0.10, 0.15),
    baseline: float = 0.4,
    alpha: float = 0.05,
    icc_rater: float = 0.05,
    icc_image: float = 0.10,
) -> str:
    """The achieved power of a design in one plain-language sentence (for `study create` and the report)."""
    parts = [
        f"{design_power(n_raters, trials_per_rater, n_images, methods, e, baseline, alpha, icc_rater, icc_image):.0%}"
        f" for a difference of {e:g}"
        for e in effects
    ]
    k = n_pairs(methods)
    return (
        f"With {n_raters} raters x {trials_per_rater} trials each x {n_images} images, the chance of detecting "
        f"a fool-rate difference between two of the {methods} methods is {', '.join(parts)} "
        f"(two-sided alpha {alpha:g}" + (f", Bonferroni over {k} pairs" if k > 1 else "")
        + f"; assumed baseline {baseline:g}, ICC rater {icc_rater:g}, image {icc_image:g})."
    )


# --------------------------------------------------------------------------- simulation
def logit_random_effects(p: float, icc_rater: float, icc_image: float) -> tuple[float, float, float]:
    """(mu, sigma_rater, sigma_image) of logit P = mu + u_r + v_i whose marginal mean is p and ICCs match.

    ICC_rater = Var_u(E_v[expit(mu + u + v)]) / (p (1 - p)), and likewise for images; solved with 2-D
    Gauss-Hermite quadrature.
    """
    x, w = np.polynomial.hermite_e.hermegauss(40)  # nodes/weights for a standard normal
    w = w / w.sum()

    def moments(mu: float, s_r: float, s_i: float) -> tuple[float, float, float]:
        """Marginal mean and the two ICCs of the logit-normal model."""
        # P[u, v]: (40, 40) grid of probabilities.
        prob = special.expit(mu + s_r * x[:, None] + s_i * x[None, :])
        mean = float(w @ prob @ w)
        by_rater = prob @ w  # E_v given u
        by_image = w @ prob  # E_u given v
        pq = mean * (1 - mean)
        return mean, float(w @ (by_rater - mean) ** 2) / pq, float(w @ (by_image - mean) ** 2) / pq

    def residual(params: np.ndarray) -> np.ndarray:
        mu, lr, li = params
        mean, ir, ii = moments(mu, math.exp(lr), math.exp(li))
        return np.array([mean - p, ir - max(icc_rater, 1e-9), ii - max(icc_image, 1e-9)])

    # Start: logit-scale SD about 3 sqrt(ICC) (latent variance pi^2/3 makes ICC ~ sigma^2 / 3.3 near p = 0.5).
    start = np.array([special.logit(p), *(math.log(3 * max(icc, 1e-4) ** 0.5) for icc in (icc_rater, icc_image))])
    sol = optimize.least_squares(residual, start, xtol=1e-12, ftol=1e-12)
    if np.max(np.abs(sol.fun)) > 1e-5:
        raise ValueError(f"no logit-normal model has fool rate {p} with ICCs {icc_rater}, {icc_image}")
    mu, lr, li = sol.x
    s_r = 0.0 if icc_rater == 0 else math.exp(lr)
    s_i = 0.0 if icc_image == 0 else math.exp(li)
    if s_r == 0.0 or s_i == 0.0:
        # Re-solve the mean alone with the zeroed effect removed.
        mu = optimize.brentq(lambda m: moments(m, s_r, s_i)[0] - p, -20, 20)
    return float(mu), float(s_r), float(s_i)


def _mu_for(p: float, s_r: float, s_i: float) -> float:
    """The logit intercept whose marginal mean is p given the random-effect SDs."""
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    return optimize.brentq(lambda m: float(w @ special.expit(m + s_r * x[:, None] + s_i * x[None, :]) @ w) - p, -20, 20)


def simulate_judgments(design: Design, effect: float, a: Assumptions, rng: np.random.Generator) -> pd.DataFrame:
    """Judgments of two methods A (baseline) and B (baseline + effect): fooled, method, rater, image."""
    mu_a, s_r, s_i = logit_random_effects(a.baseline, a.icc_rater, a.icc_image)
    mu_b = _mu_for(a.baseline + effect, s_r, s_i)
    fooled, is_a, rater, image = _draw(design, (mu_a, mu_b), s_r, s_i, a.method_corr, rng)
    return pd.DataFrame({"fooled": fooled, "method": np.where(is_a > 0, "A", "B"), "rater": rater, "image": image})


def _draw(
    design: Design, mus: tuple[float, float], s_r: float, s_i: float, rho: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One simulated study: rater k judges images (k m_r + t) mod I, t < m_r, with both methods."""
    m_r = int(round(design.m_rater))
    n_r, n_i = design.n_raters, design.n_images
    # Rater and image effects per method: a shared part (weight rho) and a method-specific part.
    u = s_r * (math.sqrt(rho) * rng.standard_normal((n_r, 1)) + math.sqrt(1 - rho) * rng.standard_normal((n_r, 2)))
    v = s_i * (math.sqrt(rho) * rng.standard_normal((n_i, 1)) + math.sqrt(1 - rho) * rng.standard_normal((n_i, 2)))
    # Consecutive image blocks per rater, as studies.design hands them out: (R, m_r) image indices.
    rater = np.repeat(np.arange(n_r), m_r)
    image = (np.arange(n_r)[:, None] * m_r + np.arange(m_r)[None, :]).ravel() % n_i
    # Both methods on every (rater, image) trial: (2 R m_r,) arrays; is_a = 1 for method A.
    logit = np.concatenate([mus[k] + u[rater, k] + v[image, k] for k in (0, 1)])
    fooled = (rng.random(logit.size) < special.expit(logit)).astype(float)
    is_a = np.repeat([1.0, 0.0], rater.size)
    return fooled, is_a, np.tile(rater, 2), np.tile(image, 2)


def simulate_power(
    design: Design, effect: float, a: Assumptions, n_sims: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Share of simulated studies whose `contrast` test (the analysis's) rejects at the Bonferroni level; MC SE."""
    mu_a, s_r, s_i = logit_random_effects(a.baseline, a.icc_rater, a.icc_image)
    mu_b = _mu_for(a.baseline + effect, s_r, s_i)
    rng = np.random.default_rng(seed)
    level = a.alpha / n_pairs(design.methods)
    hits = 0
    for _ in range(n_sims):
        fooled, is_a, rater, image = _draw(design, (mu_a, mu_b), s_r, s_i, a.method_corr, rng)
        # The same test `study analyze` runs for a pair of methods: fooled ~ 1 + [method == A], two-way clustered.
        test = contrast(fooled, is_a, rater, image)
        hits += bool(test.p_value < level)
    share = hits / n_sims
    return share, math.sqrt(max(share * (1 - share), 1.0 / n_sims) / n_sims)


# --------------------------------------------------------------------------- from a pilot
def _pair_sum(e: np.ndarray, *keys: np.ndarray) -> tuple[float, float]:
    """Sum of e_j * e_k over ordered pairs j != k sharing all keys, and the number of such pairs."""
    _, group = np.unique(np.column_stack(keys), axis=0, return_inverse=True)
    group = group.ravel()
    total = np.bincount(group, weights=e)
    n = np.bincount(group).astype(float)
    sq = np.bincount(group, weights=e * e)
    return float((total**2 - sq).sum()), float((n * (n - 1)).sum())


@dataclass(frozen=True)
class PilotEstimate:
    """Clustering measured on pilot judgments: ICCs, shared-tendency correlation, baseline, sizes."""

    icc_rater: float
    icc_image: float
    method_corr: float
    baseline: float
    n_judgments: int
    n_raters: int
    n_images: int


def estimate_iccs(fooled: np.ndarray, method: np.ndarray, rater: np.ndarray, image: np.ndarray) -> PilotEstimate:
    """Moment estimates of ICC_rater, ICC_image and method_corr from 0/1 fooled judgments of a pilot.

    Residuals e = fooled - its method's mean. ICC_rater = mean e_j e_k over pairs of one rater and one method
    (different images) / mean e^2; ICC_image likewise over pairs of one image and one method (different
    raters); method_corr = the same covariances over pairs of different methods (sharing neither image nor
    rater respectively) / the same-method ones, averaged over raters and images, clipped to [0, 1].
    """
    y = np.asarray(fooled, dtype=np.float64)
    _, m = np.unique(np.asarray(method).astype(str), return_inverse=True)
    _, r = np.unique(np.asarray(rater).astype(str), return_inverse=True)
    _, i = np.unique(np.asarray(image).astype(str), return_inverse=True)
    if y.size < 4 or r.max() < 1 or i.max() < 1:
        raise ValueError("a pilot needs judgments from at least 2 raters on at least 2 images to estimate ICCs")
    # Residuals from each method's fool rate.
    e = y - (np.bincount(m, weights=y) / np.bincount(m))[m]
    var = float((e * e).mean())
    if var == 0:
        raise ValueError("every pilot judgment has its method's fool rate (all 0 or all 1): no variance to split")
    ratios = []
    iccs = []
    for own, other in ((r, i), (i, r)):
        s_same, n_same = _pair_sum(e, own, m)
        s_all, n_all = _pair_sum(e, own)
        s_both, n_both = _pair_sum(e, own, other)  # the same rater and image under two methods
        cov_same = s_same / n_same if n_same else 0.0
        n_cross = n_all - n_same - n_both
        cov_cross = (s_all - s_same - s_both) / n_cross if n_cross > 0 else np.nan
        iccs.append(max(0.0, cov_same / var))
        # The ratio is only meaningful when there is clustering to share (ICC above 1%).
        if cov_same > 0.01 * var and np.isfinite(cov_cross):
            ratios.append(min(1.0, max(0.0, cov_cross / cov_same)))
    return PilotEstimate(
        icc_rater=iccs[0],
        icc_image=iccs[1],
        method_corr=float(np.mean(ratios)) if ratios else 0.0,
        baseline=float(y.mean()),
        n_judgments=int(y.size),
        n_raters=int(r.max()) + 1,
        n_images=int(i.max()) + 1,
    )


def estimate_from_judgments(judgments: pd.DataFrame) -> PilotEstimate:
    """estimate_iccs on a pilot study's judgments frame (Store.judgments_frame(): main-block real trials)."""
    real = judgments[(judgments["block"] == "main") & (judgments["kind"] == "real")]
    fooled = (~real["chose_real"].astype(bool)).to_numpy(float)
    return estimate_iccs(fooled, real["method"].to_numpy(), real["rater_id"].to_numpy(), real["image_id"].to_numpy())


# --------------------------------------------------------------------------- the plan
def plan(
    methods: int,
    a: Assumptions,
    effect: float | None = None,
    power: float = 0.8,
    target_half_width: float | None = None,
    trials_per_rater: tuple[int, ...] | None = None,
    images: tuple[int, ...] = (50, 100, 200),
    n_sims: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """A table of designs (raters x trials per rater x images) reaching the target, with closed-form power.

    Default trials per rater: 10, 20 and 40 per method. `n_sims > 0` adds the simulated power of each
    design (the analysis's cluster-robust test on simulated judgments).
    """
    tpr = trials_per_rater or tuple(m * methods for m in (10, 20, 40))
    rows = []
    for t in tpr:
        for n_i in images:
            if t / methods > n_i:
                continue
            r = raters_needed(t, n_i, methods, a, effect, power, target_half_width)
            if r is None:
                rows.append({"n_raters": np.nan, "trials_per_rater": t, "n_images": n_i})
                continue
            d = Design(r, t, n_i, methods)
            row = {
                "n_raters": r,
                "trials_per_rater": t,
                "n_images": n_i,
                "n_judgments": int(round(r * t)),
                "per_image_per_method": d.m_image,
                "design_effect": design_effect(d.m_rater, d.m_image, a.icc_rater, a.icc_image),
                "half_width": half_width(d, a),
                "power": np.nan,
            }
            if effect is not None:
                row["power"] = design_power(r, t, n_i, methods, effect, a.baseline, a.alpha, a.icc_rater,
                                            a.icc_image, a.method_corr)
                if n_sims:
                    row["sim_power"], row["sim_se"] = simulate_power(d, effect, a, n_sims, seed)
            rows.append(row)
    table = pd.DataFrame(rows, columns=DESIGN_COLUMNS)
    for col in ("n_raters", "trials_per_rater", "n_images", "n_judgments"):
        table[col] = table[col].astype("Int64")
    return table


def plan_reading(table: pd.DataFrame) -> str:
    """One plain-language sentence: the design with the fewest judgments that reaches the target."""
    ok = table.dropna(subset=["n_raters"])
    if ok.empty:
        return "No design in the table reaches the target: use more images (image-to-image variation sets a floor)."
    best = ok.sort_values(["n_judgments", "n_raters"]).iloc[0]
    return (
        f"The cheapest design here is {int(best['n_raters'])} raters x {int(best['trials_per_rater'])} trials "
        f"each on {int(best['n_images'])} images ({int(best['n_judgments'])} judgments); more trials per rater "
        "need fewer raters "
        "but each extra trial from the same rater adds less, because a rater's answers are alike."
    )


def plan_notes(methods: int, a: Assumptions, effect: float | None, power: float,
               target_half_width: float | None) -> list[str]:
    """The assumptions and the reading of a plan table, in words."""
    k = n_pairs(methods)
    target = (
        f"{power:.0%} power to detect a fool-rate difference of {effect:g} between two methods "
        f"(baseline {a.baseline:g}), two-sided alpha {a.alpha:g}"
        + (f" Bonferroni-corrected over {k} method pairs (alpha {a.alpha / k:.4g} per pair)" if k > 1 else "")
        if effect is not None
        else f"a {1 - a.alpha:.0%} CI half-width of at most {target_half_width:g} on each method's fool rate"
    )
    return [
        f"target: {target}",
        f"clustering assumed: ICC_rater {a.icc_rater:g}, ICC_image {a.icc_image:g} (0/1 judgment scale), "
        f"rater/image tendencies shared across methods: {a.method_corr:g} (0 = conservative); estimate them "
        "from a pilot: they change the answer more than anything else",
        "trials_per_rater counts main trials over all methods (catch and practice trials come on top); "
        "design_effect is for one method's fool rate: 1 + (m_r - 1) ICC_rater + (m_i - 1) ICC_image",
        "power: closed form (Wald test of the difference with the design effect, t reference with "
        "min(raters, images) - 1 df, at or below the analysis's); sim_power: share of simulated studies "
        "(logit-normal rater and image effects with these ICCs) in which studies.intervals.contrast "
        "rejects, with its Monte Carlo standard error",
        "n_raters \"-\" means no number of raters suffices with that many images: image-to-image "
        "variation alone is too large; add images",
    ]


__all__ = [
    "Assumptions",
    "Design",
    "design_effect",
    "design_power",
    "PilotEstimate",
    "estimate_from_judgments",
    "estimate_iccs",
    "half_width",
    "logit_random_effects",
    "plan",
    "plan_notes",
    "plan_reading",
    "power_sentence",
    "raters_needed",
    "simulate_judgments",
    "simulate_power",
]
