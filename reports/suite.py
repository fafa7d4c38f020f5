"""The report of a suite folder (`evalsuite run suite`): the paper-style table on top, then each sub-run.

`write_suite_report(run_dir)` writes RUN/report.html: the table of every set x scale x metric (best bold,
second underlined, "–" with the reason where a method does not apply), the sub-runs with links to their own
reports, and each sub-run's sweep plots and perception-distortion plane. One self-contained file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2

from evalsuite.io import atomic_write_text
from evalsuite.results import Results
from evalsuite.suite import load_suite
from reports.sweeps import sweeps_context
from reports.table import TableOptions, build_table, to_html

TEMPLATES = Path(__file__).parent / "templates"


def suite_context(run_dir: Path) -> dict[str, Any]:
    """What the suite template shows."""
    table, meta = load_suite(run_dir)
    runs = []
    for r in meta.get("runs", []):
        sub = Path(r["run_dir"]) if r.get("run_dir") else None
        entry = {"set": r["set"], "scale": r["scale"], "data": r.get("data", ""), "error": r.get("error", ""),
                 "left_out": r.get("left_out", {}), "link": None, "sweeps": None}
        if sub is not None and (sub / "summary.csv").exists():
            entry["link"] = f"{sub.name}/report.html" if (sub / "report.html").exists() else None
            entry["folder"] = sub.name
            entry["sweeps"] = sweeps_context(sub, Results.load(sub).summary)
        runs.append(entry)
    spec = meta.get("spec", {})
    return {
        "title": "Super-resolution benchmark suite",
        "run_dir": str(run_dir.resolve()),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "table": to_html(build_table([run_dir], TableOptions(ci=True)), standalone=False) if len(table) else "",
        "runs": runs,
        "methods": list(spec.get("methods", [])),
        "sets": (spec.get("suite") or {}).get("data", []),
        "scales": (spec.get("suite") or {}).get("scales", []),
    }


def write_suite_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the suite's report (default RUN/report.html) and return its path."""
    run_dir = Path(run_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    text = env.get_template("suite.html.j2").render(**suite_context(run_dir))
    path = Path(out) if out else run_dir / "report.html"
    atomic_write_text(path, text)
    path.chmod(0o644)
    return path
