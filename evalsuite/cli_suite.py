"""`evalsuite run suite`: many test sets x scales, one sub-run each, one table (evalsuite/suite.py)."""

from __future__ import annotations

import argparse
import sys

from evalsuite.cli import _csv, _methods_list, _MetricsHelp, spec_from_args

# Post-run hook of a suite: the combined report with the table on top (a hook plugin, group evalsuite.hooks).
SUITE_REPORT_HOOK = "suite-report"


def _scales(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: give integers such as 2,3,4") from None


def add_suite_parser(rsub: argparse._SubParsersAction) -> None:
    """`run suite`: many test sets x scales, one sub-run each, one table (evalsuite.suite, docs/reports.md)."""
    s = rsub.add_parser("suite", help="many test sets x scales in one run folder: one sub-run each, one table",
                        formatter_class=_MetricsHelp)
    s.add_argument("--config", help="YAML spec file with a `suite:` key (data, scales); flags override its keys")
    s.add_argument("--data", type=_csv, help="comma-separated set names (set5,set14,...) or folders")
    s.add_argument("--scales", type=_scales, help="comma-separated integer scales, e.g. 2,3,4")
    s.add_argument("--methods", type=_methods_list, help="comma-separated methods (sweeps allowed, as in benchmark)")
    s.add_argument("--metrics", type=_csv, help="comma-separated metric names (listed from their declarations)")
    s.add_argument("--protocol", choices=["basicsr"], help="basicsr: PSNR/SSIM on Y, crop border = scale")
    s.add_argument("--out", help="suite folder (default runs/<name>); rerunning it reuses every sub-run's outputs")
    s.add_argument("--name", help="suite name (default: demo)")
    for flag, kw in (("--device", {"choices": ["auto", "cpu", "cuda"]}), ("--batch-size", {"type": int}),
                     ("--limit", {"type": int}), ("--seed", {"type": int}), ("--workers", {"type": int}),
                     ("--steps", {"type": int}), ("--sampler", {}), ("--tile", {"type": int}),
                     ("--crop-border", {"type": int})):
        s.add_argument(flag, **kw)
    s.add_argument("--y-channel", action="store_true", default=None, help="PSNR/SSIM on the Y channel")
    s.add_argument("--no-report", action="store_true", help="write no report.html (neither the suite's nor sub-runs')")
    s.add_argument("--no-sub-reports", action="store_true", help="only the suite's report, none per sub-run")
    s.set_defaults(func=_cmd_suite, lr=None, lr_source=None, task=None, scale=None, samples=None, lpips_net=None,
                   fid_ref=None, labels=None)


def _cmd_suite(args: argparse.Namespace) -> int:
    from evalsuite.suite import SuiteSpec

    data, scales = args.data, args.scales
    args.data = None
    spec = spec_from_args(args)
    suite = dict(spec.suite or {})
    if data:
        suite["data"] = list(data)
    if scales:
        suite["scales"] = list(scales)
    if args.no_sub_reports:
        suite["sub_reports"] = False
    return run_suite_cli(SuiteSpec.from_spec(spec.replace(suite=suite)))


def run_suite_cli(suite) -> int:
    """Run a suite, print its table and where its folder and report are."""
    from evalsuite.suite import run_suite

    hooks = (SUITE_REPORT_HOOK,) if suite.base.report else ()
    table = run_suite(suite, hooks=hooks)
    shown = table[table["mean"].notna()][["set", "scale", "method", "metric", "mean", "n"]]
    if len(shown):
        print()
        print(shown.pivot_table(index="method", columns=["set", "scale", "metric"], values="mean").round(4).to_string())
    else:
        print(f"error: no value was computed; see the sub-runs in {suite.out_dir}", file=sys.stderr)
    print(f"\nsuite folder: {suite.out_dir.resolve()}")
    if (suite.out_dir / "report.html").exists():
        print(f"report: {(suite.out_dir / 'report.html').resolve()}")
    return 0 if len(shown) else 1
