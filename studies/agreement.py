"""Which automatic metric agrees with people, and how much agreement is possible at all.

- 2AFC agreement of a per-image metric: over answered trials (pairs format, studies.ranking), the share in
  which the image the metric prefers is the one the rater chose (a tie counts 1/2, a coin flip). The
  metric's values come from the benchmark run's per_image.csv (method, image_id, metric columns). A
  full-reference metric (PSNR, SSIM, LPIPS, ...) compares an image with the ground truth, so it cannot score
  the ground truth itself: method-vs-real trials are skipped for it; a no-reference metric scores the real
  image when per_image.csv holds a row for it (method "real"). CI: two-way cluster-robust by rater and
  image on the logit scale (studies.intervals.mean_interval).
- When the study has no method-vs-method trial (Task 1 only), agreement is also measured on derived pairs:
  for each image and pair of methods, the method whose output fooled raters more often on that image is
  the people's choice (ties skipped); CI clustered by image.
- Rank correlation: Spearman's rho between each method's mean metric (over the study's images) and its
  Bradley-Terry score, signed so that +1 means the metric orders methods as people do.
- Reliability: Krippendorff's alpha (nominal) over units = (image, stimulus pair) and coders = raters,
  coded without reference to the options' names (`krippendorff_alpha`), and split-half reliability of
  per-method and per-(method, image) win shares
  (raters split at random, Pearson r between halves, Spearman-Brown 2r / (1 + r)).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from studies.intervals import METHOD, mean_interval
from studies.ranking import REAL, Ranking, _check_pairs

AGREEMENT_COLUMNS = [
    "metric",
    "better",
    "kind",
    "basis",
    "n_trials",
    "n_skipped",
    "n_ties",
    "agreement",
    "ci_low",
    "ci_high",
    "spearman_rho",
    "spearman_p",
    "n_methods",
    "note",
]
BASIS_DIRECT = "method-vs-method trials"
BASIS_DERIVED = "image pairs"
BASIS_REAL = "trials with the real image"
# Columns of per_image.csv that are not metrics.
_NOT_METRICS = {"method", "image_id", "task", "n_images", "seconds", "error"}
# per_image.csv labels that mean the ground-truth image (a no-reference metric's scores of it).
REAL_LABELS = ("real", "reference (HR)", "hr")


def metric_direction(col: str) -> bool | None:
    """True when higher is better, False when lower is, None when neither: as the metric's declaration says."""
    from evalsuite.metrics.base import column_info  # the registry: imported only when an analysis needs it

    return column_info(col).higher_is_better


def metric_ideal(col: str) -> float | None:
    """A column without a direction: the ground truth's own value, closer to which is better (None: unknown)."""
    from evalsuite.metrics.base import column_info

    return column_info(col).ideal


def metric_needs_reference(col: str) -> bool:
    """Whether the metric compares with the ground truth (so it cannot score the ground truth itself); a column
    no metric declares is taken as full-reference (it is then never asked to score the ground truth)."""
    from evalsuite.metrics.base import column_metric, metric_info

    try:
        return bool(metric_info(column_metric(col)).full_reference)
    except ValueError:  # a column no metric declares
        return True


def metric_columns(per_image: pd.DataFrame) -> list[str]:
    """Numeric metric columns of a per_image table (not ids, not CI or helper columns)."""
    return [
        c for c in per_image.columns
        if c not in _NOT_METRICS and pd.api.types.is_numeric_dtype(per_image[c]) and per_image[c].notna().any()
    ]


def _lookup(per_image: pd.DataFrame, col: str) -> dict[tuple[str, str], float]:
    """(method, image_id) -> value of one metric column (rows with a value only)."""
    d = per_image[["method", "image_id", col]].dropna()
    return {(str(m), str(i)): float(v) for m, i, v in d.itertuples(index=False)}


def _reading_agreement(table: pd.DataFrame) -> str:
    """One sentence: which metric best predicts raters, and whether it is clearly better than the next."""
    t = table[table["basis"] != BASIS_REAL].dropna(subset=["agreement"]).sort_values("agreement", ascending=False)
    if t.empty:
        return "No metric could be compared with the raters' choices on this data (see the notes)."
    best = t.iloc[0]
    text = (
        f"On this data {best['metric']} best predicts the raters: the image it prefers is the one chosen in "
        f"{best['agreement']:.0%} of {int(best['n_trials'])} {best['basis']} "
        f"(95% CI {best['ci_low']:.0%}-{best['ci_high']:.0%}; 50% = chance)"
    )
    if len(t) > 1:
        nxt = t.iloc[1]
        if nxt["ci_high"] >= best["ci_low"]:
            text += f", not clearly ahead of {nxt['metric']} ({nxt['agreement']:.0%}, intervals overlap)"
        else:
            text += f", clearly ahead of {nxt['metric']} ({nxt['agreement']:.0%})"
    if best["ci_low"] <= 0.5:
        text += "; its interval includes 50%, so at this sample size it is not distinguishable from a coin"
    return text + "."


@dataclass
class Agreement:
    """Metric-human agreement: one row per metric (and basis), the notes, and a plain-language reading."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def reading(self) -> str:
        """Which metric best predicts raters on this data, in one sentence."""
        return _reading_agreement(self.table)


def _study_inputs(pairs: pd.DataFrame, per_image: pd.DataFrame, real: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validated pairs and per_image frames with string ids; the ground truth's rows relabelled `real`."""
    pairs = _check_pairs(pairs).astype({"image_id": str, "option_a": str, "option_b": str, "winner": str})
    if not {"method", "image_id"} <= set(per_image.columns):
        raise ValueError("per_image table needs columns method and image_id (the run folder's per_image.csv)")
    per_image = per_image.astype({"method": str, "image_id": str})
    # The ground truth's own scores (no-reference metrics) may be labelled real, hr or "reference (HR)".
    per_image = per_image.assign(method=per_image["method"].replace({lab: real for lab in REAL_LABELS}))
    return pairs, per_image


def _rank_correlation(
    per_image: pd.DataFrame, col: str, sign: float, bt: pd.Series | None, study_images: set[str], real: str
) -> dict:
    """Signed Spearman rho of the methods' mean metric (over the study's images) with their Bradley-Terry scores."""
    rho, p_rho, n_m = np.nan, np.nan, 0
    if bt is not None:
        sub = per_image[per_image["image_id"].isin(study_images) & (per_image["method"] != real)]
        means = sub.groupby("method")[col].mean().dropna()
        common = [m for m in means.index if m in bt.index and np.isfinite(bt[m])]
        n_m = len(common)
        if n_m >= 3:
            r = stats.spearmanr(means[common].to_numpy(), bt[common].to_numpy())
            rho, p_rho = sign * float(r.statistic), float(r.pvalue)
    return {"spearman_rho": rho, "spearman_p": p_rho, "n_methods": n_m}


def _metric_rows(
    col: str,
    pairs: pd.DataFrame,
    per_image: pd.DataFrame,
    bt: pd.Series | None,
    real: str,
    n_resamples: int,
    seed: int,
    level: float,
) -> list[dict]:
    """The table rows of one metric: its common-basis row, plus a vs-real row for a no-reference metric."""
    better = metric_direction(col)
    full_ref = metric_needs_reference(col)
    base = {"metric": col, "better": {True: "higher", False: "lower", None: "-"}[better],
            "kind": "full-reference" if full_ref else "no-reference"}
    closeness = ""
    if better is None:
        ideal = metric_ideal(col)
        if ideal is None:
            why = ("no direction declared in the metric registry and no known value of the ground truth to be "
                   "close to (neither is better, or the column is unknown)")
            return [base | {"basis": "-", "note": why + ": not compared"}]
        # No direction: the output closer to the ground truth's own value is the better one.
        per_image = per_image.assign(**{col: -(per_image[col] - ideal).abs()})
        better, base["better"] = True, f"closer to {ideal:g}"
        closeness = f"no direction: compared by distance to the ground truth's own value ({ideal:g}), closer is better"
    sign = 1.0 if better else -1.0
    values = _lookup(per_image, col)
    # Rank correlation of method means (over the study's images) with the Bradley-Terry scores.
    spear = _rank_correlation(per_image, col, sign, bt, set(pairs["image_id"]), real)
    # The common basis, the same for every metric so they can be compared: method-vs-method trials,
    # else (Task 1 only) derived image pairs.
    vs_real = pairs[(pairs["option_a"] == real) | (pairs["option_b"] == real)]
    direct = pairs[(pairs["option_a"] != real) & (pairs["option_b"] != real)]
    if len(direct):
        common = _trial_agreement(direct, values, sign, n_resamples, seed, level) | {"basis": BASIS_DIRECT}
    else:
        common = _derived_agreement(pairs, values, sign, real, n_resamples, seed, level)
    # Trials with the real image: skipped for a full-reference metric, an extra row for a no-reference one.
    note = []
    if len(vs_real) and full_ref:
        note.append("method-vs-real trials skipped: a full-reference metric cannot score the ground truth")
    extra = None
    if len(vs_real) and not full_ref:
        extra = _trial_agreement(vs_real, values, sign, n_resamples, seed, level)
        if extra.get("n_trials", 0) == 0:
            note.append(f"no value for the real image in per_image.csv (method {real!r}): vs-real trials skipped")
            extra = None
    rows = [base | spear | common | {"note": "; ".join(filter(None, [closeness, common.get("note", ""), *note]))}]
    if extra is not None:
        rows.append(base | extra | {"basis": BASIS_REAL, "note": "no-reference metric: scores the real image"})
    return rows


def _agreement_notes(level: float, n_resamples: int, seed: int) -> list[str]:
    """The notes that say how agreement, its CI and the rank correlation were computed."""
    return [
        "agreement = share of trials in which the image the metric prefers is the one the rater chose (a tie "
        f"counts 1/2); {level:.0%} CI: {METHOD}, on the logit scale (on '{BASIS_DERIVED}': clustered by image, "
        "df = images - 1)",
        f"every metric is measured on one common basis: '{BASIS_DIRECT}' when the study has them, else "
        f"'{BASIS_DERIVED}' (for each image and pair of methods, people's choice is the method that fooled "
        "raters more often on that image; ties skipped; the CI resamples images); compare metrics on it",
        "full-reference metrics cannot score the ground truth, so method-vs-real trials are skipped for them; "
        f"no-reference metrics also get a row on '{BASIS_REAL}', using per_image.csv rows of method "
        f"{' / '.join(map(repr, REAL_LABELS))}",
        "spearman_rho: rank correlation of each method's mean metric over the study's images with its "
        "Bradley-Terry score, signed so that +1 = the metric orders methods as people do (needs >= 3 methods)",
    ]


def metric_agreement(
    pairs: pd.DataFrame,
    per_image: pd.DataFrame,
    ranking: Ranking | None = None,
    metrics: list[str] | None = None,
    real: str = REAL,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Agreement:
    """2AFC agreement of every per-image metric with the raters' choices, with CIs and rank correlation."""
    pairs, per_image = _study_inputs(pairs, per_image, real)
    cols = metrics if metrics is not None else metric_columns(per_image)
    missing = sorted(set(cols) - set(per_image.columns))
    if missing:
        raise ValueError(f"metrics {missing} are not columns of per_image.csv; it has {metric_columns(per_image)}")
    bt = ranking.scores.set_index("option")["score"] if ranking is not None else None
    # One or two rows per metric, then the common basis first and the best agreement first within it.
    rows = [row for col in cols for row in _metric_rows(col, pairs, per_image, bt, real, n_resamples, seed, level)]
    table = pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
    for col in ("n_trials", "n_skipped", "n_ties", "n_methods"):
        table[col] = table[col].astype("Int64")
    table = table.sort_values(["basis", "agreement"], ascending=[True, False], na_position="last", key=_basis_order)
    return Agreement(table.reset_index(drop=True), _agreement_notes(level, n_resamples, seed))


def _basis_order(col: pd.Series) -> pd.Series:
    """Sort key: the common basis first, the no-reference extra rows after, unmeasured metrics last."""
    if col.name != "basis":
        return col
    return col.map({BASIS_DIRECT: 0, BASIS_DERIVED: 0, BASIS_REAL: 1}).fillna(2)


def _trial_agreement(
    trials: pd.DataFrame, values: dict[tuple[str, str], float], sign: float, n_resamples: int, seed: int,
    level: float,
) -> dict:
    """Agreement on trials: the option the metric prefers (sign * value larger) against the rater's choice."""
    y, raters, images, skipped, ties = [], [], [], 0, 0
    for r_, img, a, b, w in trials[["rater", "image_id", "option_a", "option_b", "winner"]].itertuples(index=False):
        va, vb = values.get((a, img)), values.get((b, img))
        if va is None or vb is None:
            skipped += 1
            continue
        if va == vb:
            # The metric prefers neither: count a coin flip.
            ties += 1
            y.append(0.5)
        else:
            preferred = a if sign * (va - vb) > 0 else b
            y.append(1.0 if preferred == w else 0.0)
        raters.append(r_)
        images.append(img)
    if not y:
        return {"n_trials": 0, "n_skipped": skipped, "note": "no trial has the metric's value for both images"}
    ci = mean_interval(np.array(y), np.array(raters), np.array(images), level)
    return {"n_trials": len(y), "n_skipped": skipped, "n_ties": ties, "agreement": float(np.mean(y)),
            "ci_low": ci.low, "ci_high": ci.high}


def _derived_agreement(
    pairs: pd.DataFrame, values: dict[tuple[str, str], float], sign: float, real: str, n_resamples: int,
    seed: int, level: float,
) -> dict:
    """Agreement on (image, method pair) items: the metric's preferred method vs the one with the higher fool rate."""
    vs_real = pairs[(pairs["option_a"] == real) | (pairs["option_b"] == real)]
    method = np.where(vs_real["option_a"] == real, vs_real["option_b"], vs_real["option_a"])
    fool = pd.DataFrame({"method": method, "image_id": vs_real["image_id"].to_numpy(),
                         "fooled": (vs_real["winner"] != real).to_numpy(float)})
    rates = fool.groupby(["image_id", "method"])["fooled"].mean()
    y, images, skipped, ties = [], [], 0, 0
    for img, g in rates.groupby(level=0):
        per = g.droplevel(0)
        for a, b in itertools.combinations(sorted(per.index), 2):
            va, vb = values.get((a, img)), values.get((b, img))
            if per[a] == per[b] or va is None or vb is None:
                skipped += 1
                continue
            people = a if per[a] > per[b] else b
            if va == vb:
                ties += 1
                y.append(0.5)
            else:
                y.append(1.0 if (a if sign * (va - vb) > 0 else b) == people else 0.0)
            images.append(img)
    if not y:
        return {"basis": BASIS_DERIVED, "n_trials": 0, "n_skipped": skipped,
                "note": "no image has two methods with different fool rates and metric values"}
    # Clustered by image alone (one item per image and method pair): one pseudo-rater.
    ci = mean_interval(np.array(y), np.zeros(len(y)), np.array(images), level)
    return {"basis": BASIS_DERIVED, "n_trials": len(y), "n_skipped": skipped, "n_ties": ties,
            "agreement": float(np.mean(y)), "ci_low": ci.low, "ci_high": ci.high}


# --------------------------------------------------------------------------- reliability
def krippendorff_alpha(pairs: pd.DataFrame, real: str = REAL) -> tuple[float, int]:
    """Krippendorff's alpha (nominal, binary) over units = (image, stimulus pair), coders = raters; and the unit count.

    What is coded never depends on the options' names or order:
    - a trial with the real image codes "chose the model output" (1) or "chose the real image" (0), as a
      fool rate does;
    - a method-vs-method trial has no natural orientation, so its unit enters the coincidence matrix in
      both orientations with weight 1/2 each (o_00 and o_11 averaged): disagreements count as they are and
      the expected disagreement uses margins that no renaming can tilt.
    Units judged by one rater only carry no information about agreement and are left out of the count.
    A rater who judged a unit twice keeps the first answer. Alpha = 1 - D_o / D_e from the coincidence
    matrix (Krippendorff 2011); equal to the `krippendorff` package's nominal alpha where no unit is a duel.
    """
    pairs = _check_pairs(pairs)
    a, b = pairs["option_a"].astype(str), pairs["option_b"].astype(str)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    vs_real = ((a == real) | (b == real)).to_numpy()
    winner = pairs["winner"].astype(str)
    value = np.where(vs_real, winner != real, winner == lo).astype(float)
    d = pd.DataFrame({"rater": pairs["rater"].astype(str), "unit": pairs["image_id"].astype(str) + "\x1f" + lo
                      + "\x1f" + hi, "value": value, "duel": ~vs_real})
    d = d.drop_duplicates(["rater", "unit"], keep="first")
    per = d.groupby("unit").agg(m=("value", "size"), k=("value", "sum"), duel=("duel", "first"))
    per = per[per["m"] >= 2]
    if per.empty:
        return float("nan"), 0
    m, k, duel = per["m"].to_numpy(float), per["k"].to_numpy(float), per["duel"].to_numpy(bool)
    # Coincidences per unit: pairs of values (ordered) over m - 1.
    o11, o00, o01 = k * (k - 1) / (m - 1), (m - k) * (m - k - 1) / (m - 1), k * (m - k) / (m - 1)
    same = (o11 + o00) / 2
    o11, o00 = np.where(duel, same, o11).sum(), np.where(duel, same, o00).sum()
    o01 = o01.sum()
    n1, n0 = o11 + o01, o00 + o01
    n = n0 + n1
    if n0 == 0 or n1 == 0:
        return 1.0, int(len(per))  # every rater gave the same coded answer on every unit
    return float(1.0 - (2 * o01) / (2 * n0 * n1 / (n - 1))), int(len(per))


def _unit_records(pairs: pd.DataFrame, by_image: bool, real: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each trial seen from each method in it: (unit index, won 0/1, rater index); the real image is left out."""
    sides = []
    for col in ("option_a", "option_b"):
        sides.append(pd.DataFrame({"option": pairs[col].astype(str), "image_id": pairs["image_id"].astype(str),
                                   "rater": pairs["rater"].astype(str),
                                   "won": (pairs["winner"] == pairs[col]).to_numpy(float)}))
    long = pd.concat(sides, ignore_index=True)
    long = long[long["option"] != real]
    key = long["option"] + "\x1f" + long["image_id"] if by_image else long["option"]
    _, unit = np.unique(key.to_numpy(), return_inverse=True)
    _, rater = np.unique(long["rater"].to_numpy(), return_inverse=True)
    return unit, long["won"].to_numpy(), rater


def split_half(
    pairs: pd.DataFrame, by_image: bool = False, n_splits: int = 200, seed: int = 0, real: str = REAL
) -> tuple[float, float, float, int]:
    """Spearman-Brown split-half reliability of win shares (fool rates for method-vs-real): median, 2.5%, 97.5%, units.

    Raters are split at random into halves n_splits times; each split gives Pearson r between the halves'
    win shares over the units (methods, or method x image) both halves judged, corrected to the full
    study size by Spearman-Brown: 2r / (1 + r).
    """
    unit, won, rater = _unit_records(pairs, by_image, real)
    n_raters = int(rater.max()) + 1 if rater.size else 0
    if n_raters < 2:
        return float("nan"), float("nan"), float("nan"), 0
    n_units = int(unit.max()) + 1
    rng = np.random.default_rng(seed)
    out, used = [], 0
    for _ in range(n_splits):
        # A random half of the raters; win shares per unit in each half: (U,) arrays.
        first = np.zeros(n_raters, bool)
        first[rng.permutation(n_raters)[: n_raters // 2]] = True
        in1 = first[rater]
        shares = []
        for mask in (in1, ~in1):
            n = np.bincount(unit[mask], minlength=n_units)
            w = np.bincount(unit[mask], weights=won[mask], minlength=n_units)
            shares.append((w, n))
        both = (shares[0][1] > 0) & (shares[1][1] > 0)
        s1 = shares[0][0][both] / shares[0][1][both]
        s2 = shares[1][0][both] / shares[1][1][both]
        if both.sum() < 3 or s1.std() == 0 or s2.std() == 0:
            continue
        r = float(np.corrcoef(s1, s2)[0, 1])
        out.append(2 * r / (1 + r) if r > -1 else -1.0)
        used = max(used, int(both.sum()))
    if not out:
        return float("nan"), float("nan"), float("nan"), used
    return float(np.median(out)), float(np.quantile(out, 0.025)), float(np.quantile(out, 0.975)), used


RELIABILITY_COLUMNS = ["measure", "value", "low", "high", "n_units", "note"]


def reliability(pairs: pd.DataFrame, n_splits: int = 200, seed: int = 0, real: str = REAL) -> pd.DataFrame:
    """Inter-rater reliability: Krippendorff's alpha and split-half reliability per method and per (method, image)."""
    alpha, n_alpha = krippendorff_alpha(pairs, real)
    rows = [{"measure": "krippendorff_alpha", "value": alpha, "low": np.nan, "high": np.nan, "n_units": n_alpha,
             "note": "nominal; units = (image, stimulus pair) judged by >= 2 raters; coded 'chose the model output' "
                     "against the real image, orientation-free (both orientations, weight 1/2) between methods; "
                     "1 = raters always agree, 0 = no more than chance"}]
    for by_image, name in ((False, "split_half_method"), (True, "split_half_method_image")):
        med, lo, hi, n = split_half(pairs, by_image, n_splits, seed, real)
        rows.append({"measure": name, "value": med, "low": lo, "high": hi, "n_units": n,
                     "note": f"Spearman-Brown corrected; median and 2.5-97.5% over {n_splits} random rater splits"
                     + ("" if n >= 3 else "; needs >= 3 units judged in both halves")})
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)


def alpha_level(alpha: float) -> str:
    """Krippendorff's alpha in words (0.667 and 0.4 are Krippendorff's own cut-offs; below 0.1 is near chance)."""
    return "high" if alpha >= 0.667 else "moderate" if alpha >= 0.4 else "low" if alpha >= 0.1 else "near chance"


def reliability_reading(table: pd.DataFrame) -> str:
    """One sentence: how much agreement between raters is possible at all on this data."""
    t = table.set_index("measure")
    alpha = t.loc["krippendorff_alpha", "value"] if "krippendorff_alpha" in t.index else np.nan
    sh = t.loc["split_half_method", "value"] if "split_half_method" in t.index else np.nan
    parts = []
    if np.isfinite(alpha):
        parts.append(
            f"raters agree with each other on single trials at a {alpha_level(alpha)} level "
            f"(Krippendorff's alpha {alpha:.2f}), "
            "which caps how well any metric can predict one rater's choice"
        )
    if np.isfinite(sh):
        parts.append(f"the per-method results would replicate with another group of raters this size "
                     f"(split-half reliability {sh:.2f}; 1 = exactly)")
    if not parts:
        return "Too few raters judged the same items to measure agreement between raters."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


__all__ = [
    "Agreement",
    "krippendorff_alpha",
    "metric_agreement",
    "metric_columns",
    "metric_direction",
    "metric_needs_reference",
    "reliability",
    "reliability_reading",
    "split_half",
]
