"""`evalsuite study export`: the raw trials of a study (one row per planned trial) and the refused answers,
as CSV or Parquet, for analyses outside evalsuite. docs/studies.md lists the columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from studies.store import Store

TIME_COLUMNS = ("first_shown_at", "shown_at", "answered_at", "at")


def write_table(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write a table as .csv or .parquet (by the file's suffix); times are written in UTC."""
    path = Path(out)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out {path}: name a .csv or .parquet file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--out {path}: folder {path.parent} does not exist; create it first")
    frame = frame.copy()
    for col in TIME_COLUMNS:
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], utc=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def export_study(db: str, study_id: int, out: str | Path, refused_out: str | Path | None = None) -> list[Path]:
    """Write the study's trials to `out` (and its refused answers to `refused_out`); returns the paths."""
    with Store(db, create=False) as store:
        trials = store.trials_frame(study_id)
        refusals = store.refusals_frame(study_id) if refused_out is not None else None
    paths = [write_table(trials, out)]
    if refusals is not None:
        paths.append(write_table(refusals, refused_out))
    return paths
