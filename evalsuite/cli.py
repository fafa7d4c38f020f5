"""The command line: thin parsers that build a spec or arguments and call one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from evalsuite.options import SuggestingParser, add_config_arguments
from evalsuite.options import csv_names as _csv
from evalsuite.plugins import command_adders


class _MetricsHelp(argparse.HelpFormatter):
    """Writes the `--metrics` help from the metric declarations, only when help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest == "metrics":
            from evalsuite.metrics.base import metrics_help

            return "comma-separated metric names. " + metrics_help().replace("%", "%%")
        return super()._get_help_string(action)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an evaluation")
    rsub = p.add_subparsers(dest="what", required=True)
    b = rsub.add_parser(
        "benchmark", help="benchmark SR methods on a folder of HR images", formatter_class=_MetricsHelp
    )
    from evalsuite.spec import BenchmarkSpec

    b.add_argument("--config", help="YAML spec file; flags given here override its keys")
    # One flag per spec key, made from the spec's own fields (their metadata holds the help).
    b.set_defaults(spec_keys=add_config_arguments(b, BenchmarkSpec))
    # Shortcuts into the spec's option dicts: method options for every method that has them (`*`), and metric
    # options.
    for flag, (_where, kind, doc) in SHORTCUTS.items():
        b.add_argument(flag, type=kind, help=doc)
    # A shortcut into the spec's post-run hooks: the trackers log the finished run (evalsuite/trackers.py).
    b.add_argument("--log-to", type=_csv, help="experiment trackers to log the finished run to: mlflow,tensorboard")
    b.set_defaults(func=_cmd_benchmark)
    p.kinds = rsub  # where command plugins add `run KIND` (run_kinds)
    add_suite_parser(rsub)


def run_kinds(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-parsers of `evalsuite run`, for command plugins that add a kind of run (`run cascade`)."""
    return sub.choices["run"].kinds


# --flag -> (the spec dict it fills, value type, help): `method` fills method_options["*"], `metric` metric_options.
SHORTCUTS = {
    "--steps": ("method", int, "sampler steps for diffusion methods"),
    "--sampler": ("method", str, "sampler for diffusion methods (ancestral, ddim)"),
    "--tile": ("method", int, "LR tile size for tiled inference of large images"),
    "--lpips-net": ("metric", str, "LPIPS backbone: alex (default) or vgg"),
    "--fid-ref": ("metric", str, "reference folder or .npz statistics for FID/KID (default: the run's HR images)"),
    "--labels": ("metric", str, "labels for classification: CSV image_id,label or 'folders'"),
}


def spec_from_args(args: argparse.Namespace):
    """Build a BenchmarkSpec from parsed flags (over an optional --config file)."""
    from evalsuite.spec import BenchmarkSpec

    spec = BenchmarkSpec.from_yaml(args.config) if args.config else BenchmarkSpec()
    given = vars(args)
    changes = {k: given[k] for k in args.spec_keys if k in given and k not in ("task", "scale")}
    if given.get("scale") is not None:
        changes["scale"] = given["scale"]
        changes["task"] = given.get("task")  # --scale alone means a custom task, not the config's task
    elif given.get("task") is not None:
        changes["task"] = given["task"]
        changes["scale"] = None
    opts: dict[str, dict[str, Any]] = {"method": {}, "metric": {}}
    for flag, (where, _kind, _doc) in SHORTCUTS.items():
        key = flag.removeprefix("--").replace("-", "_")
        if given.get(key) is not None:
            opts[where][key] = given[key]
    mopts, xopts = opts["method"], opts["metric"]
    if mopts:
        # Flags apply to every method that has the option (`*`); a spec file can key options by method.
        every = {**spec.method_options.get("*", {}), **mopts}
        changes["method_options"] = {**spec.method_options, "*": every}
    if xopts:
        changes["metric_options"] = {**spec.metric_options, **xopts}
    if getattr(args, "log_to", None):
        from evalsuite.trackers import tracker_hooks  # post-run hooks, after the report (evalsuite/trackers.py)

        changes["post_run"] = spec.post_run + tracker_hooks(args.log_to)
    return spec.replace(**changes)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from evalsuite import distributed as D
    from evalsuite.runner import NoUsableImagesError, run

    spec = spec_from_args(args)
    if spec.suite:  # a spec file with a `suite:` key runs a suite
        from evalsuite.suite import SuiteSpec

        return run_suite_cli(SuiteSpec.from_spec(spec))
    try:
        results = run(spec)
    except NoUsableImagesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if D.is_main():  # under torchrun, one table and one set of notes
        _print_results(results)
    if results.per_image.empty:
        if D.is_main():
            print(f"error: no image was scored by any method; see {results.run_dir / 'failures.csv'}", file=sys.stderr)
        return 1
    return 0


def _print_results(results) -> None:
    """The summary table, run-wide notes once, per-method notes, and where the run folder and report are."""
    print()
    print(results.table())
    for note in results.run_notes:
        print(f"note: {note}")
    for method, notes in zip(results.summary["method"], results.summary["notes"].fillna("")):
        # Per-method notes only: the run-wide ones were printed once above.
        for note in results.run_notes:
            notes = notes.replace(note, "")
        notes = notes.strip("; ")
        if notes:
            print(f"note [{method}]: {notes}")
    print(f"\nrun folder: {results.run_dir.resolve()}")
    if (results.run_dir / "report.html").exists():
        print(f"report: {(results.run_dir / 'report.html').resolve()}")


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, fetch or locate the weights files metrics and methods use")
    p.add_argument("action", nargs="?", default="list", choices=["list", "fetch", "path"])
    p.add_argument("name", nargs="?", help="weights name (for fetch; fetch with no name fetches every fetchable one)")
    p.set_defaults(func=_cmd_weights)


def _cmd_weights(args: argparse.Namespace) -> int:
    from evalsuite import weights as W

    if args.action == "path":
        print(W.weight_path(args.name) if args.name else W.weights_dir())
        return 0
    if args.action == "fetch":
        names = [args.name] if args.name else [n for n, w in W.all_weights().items() if w.fetch]
        rc = 0
        for n in names:
            try:
                print(f"{n}: {W.ensure_weight(n)}")
            except (W.MissingWeightsError, KeyError) as exc:
                print(f"{n}: {exc}", file=sys.stderr)
                rc = 1
        return rc
    rows = W.status_table()
    print(f"weights folder: {W.weights_dir()}")
    for r in rows:
        print(f"{r['name']:<28} {r['status']:<10} {r['used_by']:<32} {r['path']}")
        if r["status"] != "present":
            print(f"{'':<28} source: {r['source']}")
    return 0


# ----------------------------------------------------------------- run suite (evalsuite/suite.py)
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
    from evalsuite.spec import BenchmarkSpec

    s.add_argument("--config", help="YAML spec file with a `suite:` key (data, scales); flags override its keys")
    s.add_argument("--data", type=_csv, help="comma-separated set names (set5,set14,...) or folders")
    s.add_argument("--scales", type=_scales, help="comma-separated integer scales, e.g. 2,3,4")
    # The benchmark's own flags, from the spec's fields, but those the suite sets per sub-run.
    keys = add_config_arguments(s, BenchmarkSpec, skip=("data", "lr", "lr_source", "task", "scale"))
    for flag, (_where, kind, doc) in SHORTCUTS.items():
        s.add_argument(flag, type=kind, help=doc)
    s.add_argument("--no-sub-reports", action="store_true", help="only the suite's report, none per sub-run")
    s.set_defaults(func=_cmd_suite, spec_keys=keys)


def _cmd_suite(args: argparse.Namespace) -> int:
    from evalsuite.suite import SuiteSpec

    data, scales = args.data, args.scales
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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with the sub-commands of every package."""
    parser = SuggestingParser(prog="evalsuite", description=__doc__)  # unknown --flags name the closest valid one
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_weights(sub)
    # Sub-commands of every package (train, sr3, study, report, data, ...): entry point group evalsuite.commands.
    for add_parsers in command_adders():
        add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `evalsuite` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        # Under torchrun: leave the process group before the interpreter exits (evalsuite/distributed.py).
        if "evalsuite.distributed" in sys.modules:
            sys.modules["evalsuite.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
