"""Results of a run: the per-image table, the summary with bootstrap CIs, and the files of a run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalsuite.bootstrap import bootstrap_ci  # noqa: F401  (re-exported: the summary's interval)
from evalsuite.io import atomic_write_text

# The summary row of metrics that also score the HR images themselves (NIQE, IS, classification): not a method.
REFERENCE_ROW = "reference (HR)"
# Columns read as text, so ids such as "0001" stay "0001".
TEXT_COLUMNS = {"method": str, "image_id": str, "path": str, "stage": str, "reason": str, "notes": str}
FAILURE_COLUMNS = ["method", "image_id", "stage", "reason"]


def metric_columns(summary: pd.DataFrame) -> list[str]:
    """The metric columns of a summary table, in order."""
    skip = {"method", "n_images", "notes"}
    return [c for c in summary.columns if c not in skip and not c.endswith(("_ci_low", "_ci_high"))]


def summary_columns(metric_cols: list[str]) -> list[str]:
    """The summary.csv header for the given metric columns."""
    cols = ["method", "n_images"]
    for m in metric_cols:
        cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
    return cols + ["notes"]


def summary_row(
    label: str,
    rows: Mapping[str, Mapping[str, float | None]],
    per_image_cols: Sequence[str],
    all_cols: Sequence[str],
    dataset_values: Mapping[str, Any],
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """A method's summary row: per-image means with bootstrap CIs; dataset-level values (MetricValue) as given."""
    notes: list[str] = []
    row: dict[str, Any] = {"method": label, "n_images": len(rows)}
    for c in all_cols:
        if c in per_image_cols:
            v = np.array([np.nan if r.get(c) is None else r[c] for r in rows.values()], dtype=np.float64)
            row[c] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            row[f"{c}_ci_low"], row[f"{c}_ci_high"] = bootstrap_ci(v, n_resamples, seed)
            continue
        mv = dataset_values.get(c)
        for suffix, attr in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
            x = getattr(mv, attr, None)
            row[c + suffix] = math.nan if x is None else x
        if getattr(mv, "note", ""):
            notes.append(f"{c}: {mv.note}")
    row["notes"] = "; ".join(notes)
    return row


def assemble_summary(
    rows: list[dict[str, Any]], all_cols: list[str], empty_cols: Sequence[str], run_notes: Sequence[str]
) -> pd.DataFrame:
    """The summary table: `empty_cols` left empty, and the run-wide notes (why) added to every row's notes."""
    summary = pd.DataFrame(rows)
    for c in empty_cols:
        for suffix in ("", "_ci_low", "_ci_high"):
            summary[c + suffix] = math.nan
    general = "; ".join(run_notes)
    if general:
        summary["notes"] = ["; ".join(x for x in (n, general) if x) for n in summary["notes"].fillna("")]
    return summary.reindex(columns=summary_columns(all_cols))


@dataclass(frozen=True)
class PairedLead:
    """How far method A leads method B on one metric, image by image (positive = A better)."""

    n: int
    wins: int
    mean: float
    ci_low: float
    ci_high: float

    @property
    def clear(self) -> bool:
        """A clear lead: the paired interval excludes 0."""
        return self.ci_low > 0


def paired_lead(
    per_image: pd.DataFrame, a: str, b: str, col: str, higher_is_better: bool, seed: int = 0
) -> PairedLead | None:
    """Method a's lead over method b on `col` over the images both have (paired bootstrap), or None (< 2)."""
    va = per_image[per_image["method"] == a].set_index("image_id")[col]
    vb = per_image[per_image["method"] == b].set_index("image_id")[col]
    lead = ((va - vb) * (1 if higher_is_better else -1)).dropna()
    if len(lead) < 2:
        return None
    lo, hi = bootstrap_ci(lead.to_numpy(), 2000, seed)
    return PairedLead(len(lead), int((lead > 0).sum()), float(lead.mean()), lo, hi)


@dataclass
class Results:
    """A finished run: summary and per-image DataFrames, skipped files, and the run folder."""

    run_dir: Path
    summary: pd.DataFrame
    per_image: pd.DataFrame
    errors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    # Notes that hold for every method (a metric left empty, and why); summary.csv repeats them per row.
    run_notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: str | Path) -> Results:
        """Read a run folder's CSV files."""
        run_dir = Path(run_dir)
        if not (run_dir / "summary.csv").exists():
            raise FileNotFoundError(f"{run_dir} is not a finished run folder (no summary.csv)")

        def read(name: str, cols: list[str]) -> pd.DataFrame:
            p = run_dir / name
            return pd.read_csv(p, dtype=TEXT_COLUMNS) if p.exists() else pd.DataFrame(columns=cols)

        return cls(
            run_dir,
            read("summary.csv", ["method", "n_images"]),
            read("per_image.csv", ["method", "image_id"]),
            read("errors.csv", ["path", "reason"]),
            read("failures.csv", FAILURE_COLUMNS),
        )

    def write(self) -> None:
        """Write summary.csv, per_image.csv, errors.csv and failures.csv atomically."""
        for name, df in (
            ("summary.csv", self.summary),
            ("per_image.csv", self.per_image),
            ("errors.csv", self.errors),
            ("failures.csv", self.failures),
        ):
            atomic_write_text(self.run_dir / name, df.to_csv(index=False, float_format="%.6g"))

    def table(self) -> str:
        """A console table of the summary: value [CI] per metric, each header with its direction arrow."""
        from evalsuite.metrics.base import column_info

        df = self.summary
        metric_cols = metric_columns(df)
        header = {m: f"{m} {column_info(m).arrow}".rstrip() for m in metric_cols}
        rows = []
        for _, r in df.iterrows():
            row = {"method": r["method"], "n": int(r["n_images"])}
            for m in metric_cols:
                v, lo, hi = r[m], r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high")
                if pd.isna(v):
                    row[m] = "-"
                elif pd.isna(lo) or pd.isna(hi) or lo == hi:
                    row[m] = fmt_number(v)
                else:
                    row[m] = f"{fmt_number(v)} [{fmt_number(lo)}, {fmt_number(hi)}]"
            rows.append(row)
        return pd.DataFrame(rows).rename(columns=header).to_string(index=False)


def fmt_number(v: float) -> str:
    """A metric value for display: 1 decimal from 100, 2 from 1, else 4."""
    a = abs(v)
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"
