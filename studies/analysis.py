"""Fool rates of a 2AFC study: two-way cluster-robust intervals and tests, rater exclusion, per-image extremes.

Fool rate = share of main-block trials in which the method's output was chosen over the ground truth
(SR3, Saharia et al.): 50% means raters cannot tell them apart. Judgments are not independent (one rater
answers many trials, one image is judged by many raters), so intervals and tests account for both with
the Cameron-Gelbach-Miller two-way cluster-robust variance by rater and image (studies.intervals):
- ci_low/high: the fool rate's 95% interval on the logit scale, t reference with Satterthwaite degrees of
  freedom, clamped (studies.intervals.combine); p_value_vs_50 is the matching t-test;
- comparisons: the difference of two methods' fool rates (OLS `fool ~ 1 + [method == a]`, same variance
  and df rule) with its interval, raw p-value and Holm-adjusted p-value (over the pairs of a task).
benchmarks/study_coverage.py measures the coverage; docs/studies.md gives the figures.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalsuite.io import atomic_write_text
from studies.design import MIN_CATCH_ACCURACY
from studies.intervals import DF_RULE, METHOD, contrast, holm, mean_interval
from studies.quality import QUALITY_COLUMNS, RULES, QualityPolicy, rater_values

FOOL_RATE_COLUMNS = [
    "method",
    "task",
    "n_judgments",
    "n_raters",
    "n_images",
    "fool_rate",
    "ci_low",
    "ci_high",
    "p_value_vs_50",
    "exclusion",
]
PER_IMAGE_COLUMNS = ["method", "task", "image_id", "n_judgments", "fool_rate"]
RATER_COLUMNS = [
    "rater_id",
    "rater_label",
    "study",
    "task",
    "n_judgments",
    "n_catch",
    "catch_accuracy",
    *QUALITY_COLUMNS,
    "excluded",
]
COMPARISON_COLUMNS = [
    "method_a",
    "method_b",
    "task",
    "fool_rate_a",
    "fool_rate_b",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "test",
]
CLUSTER_TEST = ("difference of fool rates, two-way cluster-robust (rater, image) t-test; p_holm: Holm-adjusted over "
                "the task's method pairs")


@dataclass(frozen=True)
class CatchRule:
    """Exclude raters whose catch accuracy is below `min_accuracy` (given >= `min_catch` catch trials)."""

    min_accuracy: float = MIN_CATCH_ACCURACY
    min_catch: int = 1

    def excluded(self, n_catch: int, accuracy: float) -> bool:
        """Whether a rater with this catch record is excluded."""
        return n_catch >= self.min_catch and accuracy < self.min_accuracy

    def describe(self) -> str:
        """The rule in words, for the notes."""
        return (
            f"raters whose catch-trial accuracy (ground truth chosen over a heavily degraded copy) is below "
            f"{self.min_accuracy:.0%} are excluded, with all their judgments; raters with fewer than "
            f"{self.min_catch} answered catch trial(s) are kept"
        )


STORED = "stored"  # exclude by the quality policy stored with each study at `study create`
DEFAULT_RULE = STORED
ALL_EXCLUDED = "none: every rater failed the exclusion rules, so these numbers keep all raters"
# What `exclude_rule` may be: the stored policy ("stored"), the stored one with some settings replaced (a
# dict of QualityPolicy fields), a policy for every study, the catch rule alone, or None (no exclusion).
ExcludeRule = str | dict | QualityPolicy | CatchRule | None


def resolve_policy(rule: ExcludeRule, study: dict[str, Any] | None) -> QualityPolicy | None:
    """The quality policy to apply to one study's raters (None: no exclusion)."""
    if rule is None or isinstance(rule, QualityPolicy):
        return rule
    if isinstance(rule, CatchRule):
        return QualityPolicy.catch_only(rule.min_accuracy, rule.min_catch)
    if rule != STORED and not isinstance(rule, dict):
        raise ValueError(f"exclude_rule must be 'stored', a dict, a QualityPolicy, a CatchRule or None, got {rule!r}")
    # A study created before policies were stored had the catch rule alone, fixed before its judgments.
    stored = (study or {}).get("quality") or {}
    base = QualityPolicy.from_dict(stored) if stored else QualityPolicy.catch_only()
    return base if rule == STORED else QualityPolicy(**(base.to_dict() | rule))


@dataclass
class StudyAnalysis:
    """The analysis of a study database: four tables, the study settings and notes."""

    fool_rates: pd.DataFrame
    per_image: pd.DataFrame
    raters: pd.DataFrame
    comparisons: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    study: dict[str, Any] = field(default_factory=dict)
    # Per task: ranking, metric agreement and reliability (studies.extended.ExtendedAnalysis), when computed.
    extended: dict[int, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        """Write fool_rates.csv, per_image.csv, raters.csv, comparisons.csv, study.json and the extended
        analysis (into out_dir for one task, out_dir/task<N> for several) into out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("fool_rates", "per_image", "raters", "comparisons"):
            atomic_write_text(out / f"{name}.csv", getattr(self, name).to_csv(index=False))
        atomic_write_text(
            out / "study.json", json.dumps({"study": self.study, "notes": self.notes}, indent=2, default=str)
        )
        for task, ext in self.extended.items():
            ext.save(out if len(self.extended) == 1 else out / f"task{task}")
        return out

    @classmethod
    def load(cls, out_dir: str | Path, extended: Callable[[Path, list[int]], dict[int, Any]] | None = None
             ) -> StudyAnalysis:
        """Read back what save() wrote; `extended` reads the per-task extended analyses (studies.extended.load)."""
        out = Path(out_dir)
        if not (out / "study.json").exists():
            raise FileNotFoundError(f"{out} holds no study analysis (no study.json); run `evalsuite study analyze`")
        meta = json.loads((out / "study.json").read_text(encoding="utf-8"))
        frames = {}
        for name in ("fool_rates", "per_image", "raters", "comparisons"):
            df = pd.read_csv(
                out / f"{name}.csv",
                dtype={
                    "image_id": str,
                    "rater_id": str,
                    "rater_label": str,
                    "method": str,
                    "method_a": str,
                    "method_b": str,
                    "exclusion": str,
                    "excluded_by": str,
                },
            )
            frames[name] = df
        if len(frames["raters"]):
            frames["raters"]["excluded"] = frames["raters"]["excluded"].astype(bool)
            frames["raters"]["rater_label"] = frames["raters"]["rater_label"].fillna("").astype(str)
            if "excluded_by" in frames["raters"]:
                frames["raters"]["excluded_by"] = frames["raters"]["excluded_by"].fillna("").astype(str)
        return cls(**frames, notes=list(meta.get("notes", [])), study=dict(meta.get("study", {})),
                   extended=extended(out, meta.get("study", {}).get("tasks") or []) if extended else {})

    @property
    def all_excluded(self) -> bool:
        """Whether every rater failed the catch rule (the fool rates then keep everyone, labelled so)."""
        return bool(self.study.get("all_raters_excluded", False))

    def extremes(self, k: int = 5, min_judgments: int = 1) -> pd.DataFrame:
        """Per (task, method), the k images with the highest and the k with the lowest fool rate."""
        rows = []
        df = self.per_image[self.per_image["n_judgments"] >= min_judgments]
        for _key, g in df.groupby(["task", "method"], sort=True):
            g = g.sort_values(["fool_rate", "n_judgments", "image_id"], ascending=[False, False, True])
            # At most half of a method's images on each side, so no image is both best and worst.
            kk = min(k, max(1, len(g) // 2))
            rows.append(g.head(kk).assign(which="best"))
            if len(g) > 1:
                rows.append(g.iloc[::-1].head(kk).assign(which="worst"))
        if not rows:
            return pd.DataFrame(columns=PER_IMAGE_COLUMNS + ["which"])
        return pd.concat(rows, ignore_index=True)



# --------------------------------------------------------------------------- statistics
def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (statsmodels); (nan, nan) when n == 0."""
    if n == 0:
        return float("nan"), float("nan")
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=1.0 - level, method="wilson")
    return float(lo), float(hi)


# --------------------------------------------------------------------------- the analysis
def _rater_table(df: pd.DataFrame, policies: dict[Any, tuple[QualityPolicy | None, float]]) -> pd.DataFrame:
    """One row per rater with a main-block judgment: counts, what the quality rules measure, and the verdict.

    `policies`: study id -> (policy or None, exposure in seconds); a study not listed gets policies[None].
    """
    main = df[df["block"] == "main"]
    rows = []
    for rid, g in main.groupby("rater_id", sort=True):
        sid = g["study_id"].iloc[0] if "study_id" in g else None
        policy, exposure = policies.get(sid, policies.get(None, (None, 0.0)))
        values = rater_values(g, exposure)
        flagged = policy.flags(values) if policy is not None else []
        rows.append(
            {
                "rater_id": rid,
                "rater_label": g["rater_label"].iloc[0] if "rater_label" in g else "",
                "study": g["study"].iloc[0] if "study" in g else "",
                "task": int(g["task"].iloc[0]),
                "n_judgments": int(len(g)),
                "n_catch": int(values["n_catch"]),
                "catch_accuracy": values["catch_accuracy"],  # no catch trial: NaN, never flagged
                "median_rt_s": values["median_rt_s"],
                "side_streak": int(values["side_streak"]),
                "answer_streak": int(values["answer_streak"]),
                "excluded_by": ";".join(flagged),
                "excluded": bool(flagged),
            }
        )
    return pd.DataFrame(rows, columns=RATER_COLUMNS)


def _policies(rule: ExcludeRule, studies: list[dict[str, Any]]) -> dict[Any, tuple[QualityPolicy | None, float]]:
    """Each study's policy and exposure; key None for frames without a study list."""
    out: dict[Any, tuple[QualityPolicy | None, float]] = {
        s["id"]: (resolve_policy(rule, s), float(s.get("exposure_s") or 0.0)) for s in studies
    }
    out[None] = (resolve_policy(rule, studies[0] if len(studies) == 1 else None), 0.0)
    return out


def exclusion_counts(raters: pd.DataFrame, policies: list[QualityPolicy | None]) -> list[dict[str, Any]]:
    """Per rule of the policies: its text and how many raters it flagged (a rater may be flagged by several)."""
    used = [p for p in policies if p is not None]
    out = []
    for rule in RULES:
        owners = [p for p in used if rule in p.active]
        if not owners:
            continue
        flagged = raters["excluded_by"].fillna("").str.split(";").map(lambda x, r=rule: r in x) \
            if len(raters) else pd.Series([], dtype=bool)
        only = flagged & (raters["excluded_by"].fillna("") == rule) if len(raters) else flagged
        out.append({"rule": rule, "text": owners[0].rule_text(rule), "n_raters": int(flagged.sum()),
                    "n_only": int(only.sum())})
    return out


def _fool_table(real: pd.DataFrame, exclusion: str) -> pd.DataFrame:
    """Fool rate per (method, task) with its two-way cluster-robust interval and t-test against 50%."""
    rows = []
    for (method, task), g in real.groupby(["method", "task"], sort=True):
        y, rater, image = g["fooled"].to_numpy(float), g["rater_id"].to_numpy(), g["image_id"].to_numpy()
        ci = mean_interval(y, rater, image, null=0.5)
        rows.append(
            {
                "method": method,
                "task": int(task),
                "n_judgments": int(y.size),
                "n_raters": g["rater_id"].nunique(),
                "n_images": g["image_id"].nunique(),
                "fool_rate": float(y.mean()),
                "ci_low": ci.low,
                "ci_high": ci.high,
                "p_value_vs_50": ci.p_value,
                "exclusion": exclusion,
            }
        )
    return pd.DataFrame(rows, columns=FOOL_RATE_COLUMNS)


def _comparison_table(real: pd.DataFrame) -> pd.DataFrame:
    """Every pair of methods within a task: difference of fool rates, its interval, raw and Holm-adjusted p."""
    rows = []
    for task, g in real.groupby("task", sort=True):
        first = len(rows)
        for a, b in itertools.combinations(sorted(g["method"].unique()), 2):
            pair = g[g["method"].isin([a, b])]
            x = (pair["method"] == a).to_numpy(float)
            test = contrast(pair["fooled"].to_numpy(float), x, pair["rater_id"].to_numpy(),
                            pair["image_id"].to_numpy())
            fa = float(pair.loc[pair["method"] == a, "fooled"].mean())
            fb = float(pair.loc[pair["method"] == b, "fooled"].mean())
            rows.append({"method_a": a, "method_b": b, "task": int(task), "fool_rate_a": fa, "fool_rate_b": fb,
                         "difference": fa - fb, "ci_low": test.low, "ci_high": test.high,
                         "p_value": test.p_value, "test": CLUSTER_TEST})
        # Holm over this task's pairs: the family a reader scans for "which methods differ".
        for row, adj in zip(rows[first:], holm([r["p_value"] for r in rows[first:]]), strict=True):
            row["p_holm"] = float(adj)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _study_dict(studies: list[dict[str, Any]], raters: pd.DataFrame) -> dict[str, Any]:
    """The study settings for reports: one study's fields, lists where a database holds several."""
    keys = ("name", "task", "exposure_s", "n_images", "per_rater", "run_dir", "methods", "quality", "design")
    per = [{k: s.get(k) for k in keys} | {"id": s["id"]} for s in studies]

    def one(key: str) -> Any:
        """The value shared by every study, else the list of values."""
        vals = [p[key] for p in per]
        return vals[0] if len({json.dumps(v, default=str) for v in vals}) == 1 else vals

    out: dict[str, Any] = {k: (one(k) if per else None) for k in keys}
    out["tasks"] = sorted({p["task"] for p in per})
    out["n_raters"] = int(len(raters))
    out["n_excluded"] = int(raters["excluded"].sum()) if len(raters) else 0
    out["studies"] = per
    return out


def _exclusion_note(policies: list[QualityPolicy | None], n_raters: int, n_excluded: int, all_excluded: bool) -> str:
    """The exclusion line of the notes: the rules, and how many raters they removed."""
    used = [p for p in policies if p is not None]
    text = "; ".join(dict.fromkeys(p.describe() for p in used)) if used else "no rater exclusion"
    if all_excluded:
        return text + (
            f"; ALL {n_raters} rater(s) fail these rules, so the fool rates below keep every rater "
            "(column exclusion says so); check the catch trials and the raters before quoting them"
        )
    return text + f"; {n_excluded} of {n_raters} rater(s) excluded"


def _notes(exclusion_note: str) -> list[str]:
    """The analysis' notes: definitions, the exclusion, the intervals and the tests."""
    return [
        "fool rate = share of main-block trials in which the method's output was chosen over the ground "
        "truth; practice, catch and attention trials and duels are not counted",
        exclusion_note,
        f"ci_low/high: 95% interval, {METHOD} ({DF_RULE}), on the logit scale; p_value_vs_50: the matching "
        "t-test; coverage 93-97% on simulated studies of 10-60 raters x 10-100 images "
        "(benchmarks/study_coverage.py, docs/studies.md)",
        "comparisons: difference of two methods' fool rates (linear probability model, same variance and df "
        "rule) with its 95% interval; p_holm adjusts p_value for the number of method pairs in the task (Holm); "
        "quote p_holm",
    ]


def analyze_frame(
    judgments: pd.DataFrame,
    studies: list[dict[str, Any]] | None = None,
    exclude_rule: ExcludeRule = DEFAULT_RULE,
    n_resamples: int = 2000,
    seed: int = 0,
) -> StudyAnalysis:
    """Analyze a judgments table (`Store.judgments_frame()` columns) into a StudyAnalysis.

    `exclude_rule`: "stored" (each study's quality policy from its config; the catch rule alone for
    studies that stored none), a dict replacing some of the stored settings, a QualityPolicy, a CatchRule
    or None (keep everyone).
    """
    policies = _policies(exclude_rule, studies or [])
    raters = _rater_table(judgments, policies)
    excluded = set(raters.loc[raters["excluded"], "rater_id"])
    # Every rater excluded: say so, and report the numbers of all raters, labelled, rather than nothing.
    all_excluded = bool(len(raters)) and len(excluded) == len(raters)
    # The rule sets that apply to this frame's studies (the None entry only covers rows of unlisted studies).
    sids = set(judgments["study_id"].unique()) if "study_id" in judgments and len(judgments) else {None}
    applied = [policies.get(sid, policies[None])[0] for sid in sids]
    used = [p for p in dict.fromkeys(applied) if p is not None and p.active]  # every rule off: no exclusion
    exclusion = "none" if not used else "catch rule" if all(p.active == ("catch",) for p in used) else "quality rules"
    note = _exclusion_note(used, len(raters), len(excluded), all_excluded)
    if all_excluded:
        excluded, exclusion = set(), ALL_EXCLUDED
    # Fool rates use main-block trials of real outputs from raters who were kept.
    real = judgments[
        (judgments["block"] == "main") & (judgments["kind"] == "real") & ~judgments["rater_id"].isin(excluded)
    ].copy()
    real["fooled"] = (~real["chose_real"].astype(bool)).astype(float)
    real["task"] = real["task"].astype(int)
    per_image = (
        real.groupby(["method", "task", "image_id"], sort=True)["fooled"]
        .agg(["size", "mean"])
        .reset_index()
        .rename(columns={"size": "n_judgments", "mean": "fool_rate"})
    )
    counts = exclusion_counts(raters, used)
    return StudyAnalysis(
        fool_rates=_fool_table(real, exclusion),
        per_image=per_image[PER_IMAGE_COLUMNS],
        raters=raters,
        comparisons=_comparison_table(real),
        notes=_notes(note),
        study=_study_dict(studies or [], raters) | {"all_raters_excluded": all_excluded, "exclusions": counts},
    )


def analyze(
    db: str, exclude_rule: ExcludeRule = DEFAULT_RULE, n_resamples: int = 2000, seed: int = 0
) -> StudyAnalysis:
    """Analyze every study in a database (file path or SQLAlchemy URL) into fool rates, CIs and tests."""
    from studies.store import Store

    with Store(db, create=False) as store:
        return analyze_frame(store.judgments_frame(), store.studies(), exclude_rule, n_resamples, seed)


__all__ = [
    "CatchRule",
    "DEFAULT_RULE",
    "STORED",
    "StudyAnalysis",
    "exclusion_counts",
    "resolve_policy",
    "analyze",
    "analyze_frame",
    "wilson_interval",
]
