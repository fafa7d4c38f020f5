"""`evalsuite report RUN_DIR [--study DB_OR_ANALYSIS_DIR] [-o FILE]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from studies.cli import add_exclusion_arguments, exclusion_rule


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `report` sub-command to the evalsuite parser."""
    p = sub.add_parser("report", help="write the HTML report of a run folder (and of a human study)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `evalsuite run benchmark`")
    p.add_argument("--study", help="study analysis folder, study .db file or database URL")
    add_exclusion_arguments(p)  # the same rater exclusion as `evalsuite study analyze`
    p.add_argument("-o", "--out", help="output HTML file (default RUN_DIR/report.html)")
    p.add_argument("--gallery", type=int, default=6, help="images in the side-by-side comparison (default 6)")
    p.add_argument("--worst", type=int, default=3, help="worst images listed per method (default 3)")
    p.set_defaults(func=_cmd_report)
    _add_table(sub)


def _add_table(sub: argparse._SubParsersAction) -> None:
    """`evalsuite table RUN [RUN...]`: the paper-ready table (reports/table.py)."""
    t = sub.add_parser("table", help="paper-ready table of suite/run folders: LaTeX, Markdown, CSV or HTML")
    t.add_argument("runs", nargs="+", metavar="RUN", help="suite folders (`run suite`) or run folders")
    t.add_argument("--format", default="markdown", choices=["latex", "markdown", "csv", "html"])
    t.add_argument("--metrics", help="comma-separated metric columns, in order (default: every one with values)")
    t.add_argument("--ci", action="store_true", help="add each value's 95%% bootstrap CI")
    t.add_argument("--precision", type=int, help="decimals of every value (default: 2 from 1 up, else 4)")
    t.add_argument("--with-paper", action="store_true", help="add the SR3 paper's own rows (marked) where tasks match")
    t.add_argument("--caption", help="table caption")
    t.add_argument("-o", "--out", help="write to FILE (default: print)")
    t.set_defaults(func=_cmd_table)


def _cmd_table(args: argparse.Namespace) -> int:
    from evalsuite.io import atomic_write_text
    from reports.table import TableOptions, build_table, render

    if args.precision is not None and not 0 <= args.precision <= 10:
        raise ValueError(f"--precision must be 0 to 10, got {args.precision}")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else None
    opts = TableOptions(metrics=metrics, ci=args.ci, precision=args.precision, with_paper=args.with_paper,
                        caption=args.caption)
    text = render(build_table(args.runs, opts), args.format)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"table: {Path(args.out).resolve()}")
    else:
        print(text, end="")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from reports.html import ReportOptions, write_report

    if args.gallery < 0 or args.worst < 0:
        raise ValueError("--gallery and --worst must be 0 or more")
    if (Path(args.run_dir) / "suite.csv").exists():
        # A suite folder of `evalsuite run suite`: the table on top, then the sub-runs (docs/reports.md).
        from reports.suite import write_suite_report

        print(f"report: {write_suite_report(args.run_dir, args.out).resolve()}")
        return 0
    if (Path(args.run_dir) / "cascade.json").exists():
        # A run folder of `evalsuite run cascade`: its own report (docs/cascade.md).
        from reports.cascade import write_cascade_report

        print(f"report: {write_cascade_report(args.run_dir, args.out).resolve()}")
        return 0
    study = args.study
    if study is not None:
        from reports.study import load_study

        explicit = args.no_exclusion or args.min_catch_accuracy is not None
        study = load_study(study, exclusion_rule(args), explicit=explicit, run_dir=args.run_dir)
    path = write_report(args.run_dir, study=study, out=args.out,
                        options=ReportOptions(n_gallery=args.gallery, n_worst=args.worst))
    print(f"report: {path.resolve()}")
    return 0
