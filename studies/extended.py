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

import pandas as pd

from evalsuite.io import atomic_write_text
from studies.agreement import Agreement, metric_agreement, reliability, reliability_reading
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


__all__ = ["ExtendedAnalysis", "extended_analysis", "read_per_image"]
