"""The study input of a report: an analysis folder (`StudyAnalysis.load`) or a study database (`analyze`).

The analysis itself belongs to `studies.analysis`; this module only decides which of its two entry points
a `--study` argument names, and says what to pass when it names neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_study(source: str | Path) -> Any:
    """A study analysis (`studies.analysis.StudyAnalysis`) from an analysis folder, a database file or URL."""
    # Imported here: a report without a study never needs the study stack.
    from studies.analysis import StudyAnalysis, analyze

    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "study.json").exists():
            raise FileNotFoundError(
                f"--study {path}: this folder holds no study analysis (no study.json); pass the folder "
                "written by `evalsuite study analyze --out DIR`, or the study database itself"
            )
        return StudyAnalysis.load(path)
    if "://" in text:
        return analyze(text)
    if path.is_file():
        return analyze(str(path))
    raise FileNotFoundError(
        f"--study {text}: no such folder or database file; pass an analysis folder (with study.json), "
        "a study database file (.db) or a database URL"
    )
