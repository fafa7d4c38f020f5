"""The study input of a report: an analysis folder (`studies.extended.load_analysis`) or a study database (`analyze`).

The analysis itself belongs to `studies.analysis`; this module only decides which of its two entry points
a `--study` argument names, and says what to pass when it names neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_study(source: str | Path, rule: Any = "stored", explicit: bool = False,
               run_dir: str | Path | None = None) -> Any:
    """A study analysis (`studies.analysis.StudyAnalysis`, with its ranking, agreement and reliability)
    from an analysis folder, a database file or URL.

    `rule` is the rater exclusion for a database (`studies.analysis.analyze_frame`'s exclude_rule: "stored"
    = the study's own quality policy, None for none); an analysis folder was analyzed with its own rule, so
    asking for another one (`explicit`) is an error. `run_dir`: the run whose per-image metrics the
    agreement uses (default: the run the study was made from).
    """
    # Imported here: a report without a study never needs the study stack.
    from studies.extended import analyze_study, load_analysis

    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "study.json").exists():
            raise FileNotFoundError(
                f"--study {path}: this folder holds no study analysis (no study.json); pass the folder "
                "written by `evalsuite study analyze --out DIR`, or the study database itself"
            )
        if explicit:
            raise ValueError(
                f"--study {path}: an analysis folder keeps the exclusion it was analyzed with; pass the study "
                "database to choose the exclusion, or rerun `evalsuite study analyze` with it"
            )
        return load_analysis(path)
    if "://" in text or path.is_file():
        return analyze_study(text, rule, run_dir)
    raise FileNotFoundError(
        f"--study {text}: no such folder or database file; pass an analysis folder (with study.json), "
        "a study database file (.db) or a database URL"
    )
