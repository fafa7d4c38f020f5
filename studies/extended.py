"""The questions beyond fool rates, in one call for `study analyze` and the report's study section.

`extended_analysis(judgments, per_image)` = Bradley-Terry ranking (studies.ranking) + metric agreement and
reliability (studies.agreement), each with a one-sentence reading; `save` writes CSVs and the plot next to
the fool-rate exports of `StudyAnalysis.save`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalsuite.io import atomic_write_text
from studies.agreement import (
    BASIS_DERIVED,
    Agreement,
    alpha_level,
    metric_agreement,
    reliability,
    reliability_reading,
)
from studies.analysis import DEFAULT_RULE, ExcludeRule, StudyAnalysis, analyze_frame
from studies.ranking import REAL, Ranking, bradley_terry, pairs_from_judgments, ranking_plot, win_matrix_plot


@dataclass
class ExtendedAnalysis:
    """Ranking, win matrix, metric agreement (when a per_image table is given) and reliability."""

    ranking: Ranking
    reliability: pd.DataFrame
    agreement: Agreement | None = None
    notes: list[str] = field(default_factory=list)

    def readings(self) -> dict[str, str]:
        """One plain-language sentence per table: ranking, win matrix, agreement, reliability."""
        out = {
            "ranking": self.ranking.reading(),
            "win_matrix": self.ranking.win_reading(),
            "reliability": reliability_reading(self.reliability),
        }
        if self.agreement is not None:
            out["agreement"] = self.agreement.reading()
        return out

    def save(self, out_dir: str | Path) -> Path:
        """Write ranking, win matrix/counts, agreement, reliability CSVs, the two plots (SVG) and extended.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "ranking.csv", self.ranking.scores.to_csv(index=False))
        atomic_write_text(out / "win_matrix.csv", self.ranking.win_fraction.to_csv(index_label="option"))
        atomic_write_text(out / "win_counts.csv", self.ranking.wins.to_csv(index_label="option"))
        atomic_write_text(out / "reliability.csv", self.reliability.to_csv(index=False))
        if self.agreement is not None:
            atomic_write_text(out / "agreement.csv", self.agreement.table.to_csv(index=False))
        plots = {"ranking.svg": ranking_plot(self.ranking), "win_matrix.svg": win_matrix_plot(self.ranking)}
        for name, svg in plots.items():
            if svg:
                atomic_write_text(out / name, svg)
        meta = {
            "readings": self.readings(),
            "notes": self.notes,
            "reference": self.ranking.reference,
            "ranking_notes": self.ranking.notes,
            "agreement_notes": self.agreement.notes if self.agreement is not None else None,
        }
        atomic_write_text(out / "extended.json", json.dumps(meta, indent=2))
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> ExtendedAnalysis | None:
        """Read back what save() wrote; None when the folder has no extended analysis (older analyses)."""
        out = Path(out_dir)
        if not (out / "extended.json").exists():
            return None
        meta = json.loads((out / "extended.json").read_text(encoding="utf-8"))
        scores = pd.read_csv(out / "ranking.csv", dtype={"option": str, "note": str}, keep_default_na=True)
        scores["note"] = scores["note"].fillna("")
        wins = pd.read_csv(out / "win_counts.csv", index_col="option")
        # Trials comparing i and j: wins of i over j plus wins of j over i.
        totals = wins + wins.T
        notes = list(meta.get("ranking_notes", []))
        ranking = Ranking(scores, wins.astype(float), totals, meta.get("reference"), notes)
        agreement = None
        if (out / "agreement.csv").exists():
            table = pd.read_csv(out / "agreement.csv", dtype={"metric": str})
            table["note"] = table["note"].fillna("")
            for col in ("n_trials", "n_skipped", "n_ties", "n_methods"):  # counts, as metric_agreement gives them
                table[col] = table[col].astype("Int64")
            agreement = Agreement(table, list(meta.get("agreement_notes") or []))
        return cls(ranking, pd.read_csv(out / "reliability.csv"), agreement, list(meta.get("notes", [])))


def extended_analysis(
    judgments: pd.DataFrame,
    per_image: pd.DataFrame | None = None,
    excluded: Sequence[str] = (),
    methods: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    tasks: Sequence[int] | None = None,
) -> ExtendedAnalysis:
    """Ranking with CIs, win matrix, metric agreement and reliability from a judgments frame (kept raters only).

    `judgments`: `Store.judgments_frame()` (or a pairs frame); `excluded`: rater ids the exclusion rule
    removed (`StudyAnalysis.raters` where `excluded`); `per_image`: the benchmark run's per_image.csv;
    `methods`: the study's methods (a method without judgments is listed with a reason); `tasks`: keep
    only these tasks (pairs from different questions should not be pooled into one ranking unless intended).
    """
    pairs = pairs_from_judgments(judgments, excluded)
    if tasks is not None:
        if "task" not in pairs:
            raise ValueError("tasks= given but the judgments have no task column")
        pairs = pairs[pairs["task"].isin(list(tasks))].reset_index(drop=True)
    if pairs.empty:
        raise ValueError("no main-block judgments to rank (after exclusions); collect judgments first")
    options = None
    if methods is not None:
        seen = set(pairs["option_a"]) | set(pairs["option_b"])
        options = [REAL, *methods] if REAL in seen else list(methods)
        options += sorted(seen - set(options))
    ranking = bradley_terry(pairs, REAL, options, n_resamples, seed)
    agreement = metric_agreement(pairs, per_image, ranking, n_resamples=n_resamples, seed=seed) \
        if per_image is not None else None
    notes = ranking.notes + (agreement.notes if agreement else [])
    return ExtendedAnalysis(ranking, reliability(pairs, seed=seed), agreement, notes)


def read_per_image(run_dir: str | Path) -> pd.DataFrame:
    """A run folder's per_image.csv with string ids (clear error when the run has none)."""
    path = Path(run_dir) / "per_image.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: metric agreement needs the benchmark run the study came from "
            "(`evalsuite run benchmark` writes per_image.csv); pass that run folder"
        )
    return pd.read_csv(path, dtype={"method": str, "image_id": str})


def _per_image(run_dir: object) -> tuple[pd.DataFrame | None, str]:
    """The run's per_image.csv, or None and the reason metric agreement is skipped."""
    if not isinstance(run_dir, (str, Path)) or not str(run_dir):
        return None, "metric agreement skipped: the database's studies come from different runs; pass --run"
    try:
        return read_per_image(run_dir), ""
    except FileNotFoundError as e:
        return None, f"metric agreement skipped: {e}"


def extend(result: StudyAnalysis, judgments: pd.DataFrame, run_dir: str | Path | None = None,
           n_resamples: int = 1000, seed: int = 0) -> StudyAnalysis:
    """Add each task's ranking, metric agreement and reliability, and the design's power, to a fool-rate analysis.

    The raters the analysis excluded are left out (all kept, as in the fool rates, when every rater failed);
    `run_dir` (default: the run the study was made from) gives the per-image metrics.
    """
    raters = result.raters
    excluded = [] if result.all_excluded else raters.loc[raters["excluded"].astype(bool), "rater_id"].tolist()
    per_image, why = _per_image(run_dir if run_dir is not None else result.study.get("run_dir"))
    studies = result.study.get("studies") or []
    tasks = (result.study.get("tasks") or sorted(judgments["task"].unique())) if len(judgments) else []
    for task in tasks:
        methods = [m for s in studies if s.get("task") == task for m in (s.get("methods") or [])]
        try:
            ext = extended_analysis(judgments, per_image, excluded, list(dict.fromkeys(methods)) or None,
                                    n_resamples, seed, tasks=[task])
        except ValueError as e:  # nothing to rank yet (no judgments of this task after the exclusions)
            result.study.setdefault("extended_skipped", {})[str(task)] = str(e)
            continue
        ext.notes += [why] if why else []
        result.extended[int(task)] = ext
    result.study["power"] = achieved_power(result.study, len(raters) - len(excluded))
    return result


def analyze_study(db: str, exclude_rule: ExcludeRule = DEFAULT_RULE, run_dir: str | Path | None = None,
                  n_resamples: int = 2000, seed: int = 0) -> StudyAnalysis:
    """`study analyze`: fool rates (studies.analysis) plus ranking, metric agreement, reliability and power."""
    from studies.store import Store

    with Store(db, create=False) as store:
        judgments, studies = store.judgments_frame(), store.studies()
    result = analyze_frame(judgments, studies, exclude_rule, n_resamples, seed)
    # The ranking refits once per resample: at most 1000 resamples keep it to seconds.
    return extend(result, judgments, run_dir, min(n_resamples, 1000), seed)


def metric_verdict(ext: ExtendedAnalysis) -> str:
    """One sentence: which metric best predicts raters, with its interval and the ceiling reliability sets."""
    if ext.agreement is None:
        return "No metric agreement: the benchmark run's per_image.csv was not available (see the notes)."
    t = ext.agreement.table.dropna(subset=["agreement"])
    t = t[t["basis"] == t["basis"].iloc[0]] if len(t) else t  # the common basis sorts first
    if t.empty:
        return ext.agreement.reading()
    best = t.sort_values("agreement", ascending=False).iloc[0]
    text = (f"{best['metric']} predicts raters best: it agrees with them on {best['agreement']:.0%} "
            f"[{best['ci_low']:.0%}, {best['ci_high']:.0%}] of {int(best['n_trials'])} {best['basis']}")
    rel = ext.reliability.set_index("measure")["value"]
    alpha = float(rel.get("krippendorff_alpha", np.nan))
    if np.isfinite(alpha) and best["basis"] == BASIS_DERIVED:
        text += (f"; these compare per-image fool rates, which average over raters (single choices agree between "
                 f"raters only at Krippendorff alpha={alpha:.2f})")
    elif np.isfinite(alpha):
        text += (f"; raters agree with each other at Krippendorff alpha={alpha:.2f} ({alpha_level(alpha)}), "
                 "which caps what any metric can reach on single trials")
    return text + "."


def achieved_power(study: dict, n_raters: int) -> str:
    """The power (two or more methods) or expected CI half-width (one method) a study's design has."""
    from studies.power import Assumptions, Design, half_width, power_sentence

    methods = study.get("methods")
    per_rater, n_images = study.get("per_rater"), study.get("n_images")
    if not isinstance(methods, list) or not isinstance(per_rater, int) or not isinstance(n_images, int):
        return "Power not computed: the database holds several studies with different designs."
    if n_raters < 1:
        return "Power not computed: no rater has answered yet."
    if study.get("design") == "duels":
        return ("Power not computed: a duels-only design has no method-vs-real trials, and the planner sizes "
                "fool-rate differences (use --design both, or simulate the ranking with pilot data).")
    k, trials = len(methods), per_rater * len(methods)
    # Fool rates come from the method-vs-real trials alone: duels inform the ranking, not this power.
    duels = " Duel trials inform the ranking, not these fool rates." if study.get("design") == "both" else ""
    if k >= 2:
        return power_sentence(n_raters, trials, n_images, k) + duels
    hw = half_width(Design(n_raters, trials, n_images, 1), Assumptions())
    return (f"With {n_raters} raters x {trials} trials each x {n_images} images, the fool rate's 95% interval is "
            f"expected to be about +/-{hw:.0%} wide (assumed fool rate 0.4, ICC rater 0.05, image 0.1).")


__all__ = [
    "ExtendedAnalysis",
    "achieved_power",
    "analyze_study",
    "extend",
    "extended_analysis",
    "metric_verdict",
    "read_per_image",
]


def load_extended(out: Path, tasks: list[int]) -> dict[int, ExtendedAnalysis]:
    """The extended analyses save() wrote: out_dir itself (one task) or out_dir/task<N>."""
    found = {}
    for task in tasks:
        ext = ExtendedAnalysis.load(out / f"task{task}") or (ExtendedAnalysis.load(out) if len(tasks) == 1 else None)
        if ext is not None:
            found[int(task)] = ext
    return found


def load_analysis(out_dir: str | Path) -> StudyAnalysis:
    """A saved study analysis with its extended analyses (what `study analyze --out DIR` wrote)."""
    return StudyAnalysis.load(out_dir, extended=load_extended)
