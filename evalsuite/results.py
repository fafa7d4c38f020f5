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
# skipped.csv: an image a metric cannot score (too small for it); every other metric keeps its value.
SKIPPED_COLUMNS = ["method", "image_id", "metric", "reason"]
# per_image.csv flag column (only when some metric ran on non-standard weights): the metrics whose value in
# that row comes from non-standard weights, comma-separated; empty where none.
NONSTANDARD_COLUMN = "nonstandard_weights"
COUNT_PREFIX = "n_"  # summary.csv `n_<column>`: the images behind that column, when not every image


def nonstandard_flags(per_image: pd.DataFrame, flagged: Mapping[str, str]) -> list[str]:
    """Per row, the metrics (comma-separated) whose value in that row comes from non-standard weights."""
    out = []
    for _, r in per_image.iterrows():
        names = [n for c, n in flagged.items() if c in r and pd.notna(r[c])]
        out.append(",".join(dict.fromkeys(names)))
    return out


def nonstandard_metrics(run_dir: str | Path) -> dict[str, str]:
    """Metrics of a run folder computed with non-standard weights -> the note (for reports and exports)."""
    import json

    path = Path(run_dir) / "manifest.json"
    if path.exists():
        try:
            marked = json.loads(path.read_text()).get("nonstandard_weights")
        except (json.JSONDecodeError, AttributeError):
            marked = None
        if isinstance(marked, dict):
            return dict(marked)
    # No manifest (or one older than the key): the summary's notes say "<metric>: NON-STANDARD weights ...".
    out: dict[str, str] = {}
    summary = Path(run_dir) / "summary.csv"
    notes = pd.read_csv(summary, dtype=TEXT_COLUMNS).get("notes") if summary.exists() else None
    if notes is not None:  # a summary written by another tool may have no notes column
        for note in notes.dropna():
            for part in str(note).split("; "):
                name, sep, body = part.partition(": ")
                if sep and body.startswith("NON-STANDARD"):
                    out.setdefault(name, body)
    return out


def count_column(col: str) -> str:
    """The summary column holding how many images a metric column's value is over."""
    return COUNT_PREFIX + col


def metric_columns(summary: pd.DataFrame) -> list[str]:
    """The metric columns of a summary table, in order (not its per-metric `n_<column>` counts)."""
    skip = {"method", "n_images", "notes"}
    cols = set(summary.columns)
    return [
        c
        for c in summary.columns
        if c not in skip
        and not c.endswith(("_ci_low", "_ci_high"))
        and not (c.startswith(COUNT_PREFIX) and c[len(COUNT_PREFIX) :] in cols)
    ]


def summary_columns(metric_cols: list[str], counted: Sequence[str] = ()) -> list[str]:
    """The summary.csv header for the given metric columns (`counted` ones followed by their `n_` count)."""
    cols = ["method", "n_images"]
    for m in metric_cols:
        cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
        if m in counted:
            cols.append(count_column(m))
    return cols + ["notes"]


def summary_row(
    label: str,
    rows: Mapping[str, Mapping[str, float | None]],
    per_image_cols: Sequence[str],
    all_cols: Sequence[str],
    dataset_values: Mapping[str, Any],
    n_resamples: int,
    seed: int,
    dataset_counts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A method's summary row: per-image means with bootstrap CIs; dataset-level values (MetricValue) as given.

    Each column's image count is kept as `n_<column>` (the images with a value, for a per-image column; the
    `dataset_counts` given, for a dataset-level one); `assemble_summary` keeps those that differ from n_images.
    """
    notes: list[str] = []
    row: dict[str, Any] = {"method": label, "n_images": len(rows)}
    for c in all_cols:
        if c in per_image_cols:
            v = np.array([np.nan if r.get(c) is None else r[c] for r in rows.values()], dtype=np.float64)
            row[c] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            row[f"{c}_ci_low"], row[f"{c}_ci_high"] = bootstrap_ci(v, n_resamples, seed)
            row[count_column(c)] = int(np.isfinite(v).sum())
            continue
        if dataset_counts and c in dataset_counts:
            row[count_column(c)] = int(dataset_counts[c])
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
    """The summary table: `empty_cols` left empty, and the run-wide notes (why) added to every row's notes.

    A column whose image count differs from its row's n_images on some row keeps its `n_<column>` count.
    """
    summary = pd.DataFrame(rows)
    for c in empty_cols:
        for suffix in ("", "_ci_low", "_ci_high"):
            summary[c + suffix] = math.nan
    counted = []
    for c in all_cols:
        n = count_column(c)
        if c not in empty_cols and n in summary and summary[c].notna().any():
            known = summary[n].notna()
            if (summary.loc[known, n] != summary.loc[known, "n_images"]).any():
                counted.append(c)
    if run_notes:
        summary["notes"] = [_add_notes(n, run_notes) for n in summary["notes"].fillna("")]
    summary = summary.reindex(columns=summary_columns(all_cols, counted))
    for c in counted:
        summary[count_column(c)] = summary[count_column(c)].astype("Int64")
    return summary


def _add_notes(own: str, run_notes: Sequence[str]) -> str:
    """A row's notes followed by the run-wide ones it does not already say (`metric: text`, text already there)."""
    parts = [own] if own else []
    for note in run_notes:
        body = note.partition(": ")[2] or note
        if body not in own:
            parts.append(note)
    return "; ".join(parts)


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
    # Images a metric could not score (too small for it): that metric's cell is empty, nothing else.
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIPPED_COLUMNS))

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
            skipped=read("skipped.csv", SKIPPED_COLUMNS),
        )

    def write(self) -> None:
        """Write summary.csv, per_image.csv, errors.csv, failures.csv and skipped.csv atomically."""
        for name, df in (
            ("summary.csv", self.summary),
            ("per_image.csv", self.per_image),
            ("errors.csv", self.errors),
            ("failures.csv", self.failures),
            ("skipped.csv", self.skipped),
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
                n_m = r.get(count_column(m))
                if row[m] != "-" and n_m is not None and not pd.isna(n_m) and int(n_m) != row["n"]:
                    row[m] += f" (n={int(n_m)})"
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
