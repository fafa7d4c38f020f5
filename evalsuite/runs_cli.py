"""`evalsuite runs list|show|add|rm|leaderboard`: the results index (evalsuite.index) on the command line."""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `runs` sub-commands to the evalsuite parser."""
    p = sub.add_parser("runs", help="the results index of finished runs (list, show, rm, leaderboard)")
    p.add_argument("--index", help="SQLAlchemy URL or SQLite file (default $EVALSUITE_INDEX_URL, "
                                   "else $EVALSUITE_HOME/index.sqlite, EVALSUITE_HOME defaulting to ~/.evalsuite)")
    rsub = p.add_subparsers(dest="runs_action", required=True)
    rsub.add_parser("list", help="every registered run, with its status (ok, missing, changed)")
    s = rsub.add_parser("show", help="one run's settings and registered summary")
    s.add_argument("run", metavar="ID_OR_DIR")
    a = rsub.add_parser("add", help="register run folders by hand (a moved folder takes over its old entry)")
    a.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    r = rsub.add_parser("rm", help="forget runs (their folders are left alone)")
    r.add_argument("runs", nargs="*", metavar="ID_OR_DIR")
    r.add_argument("--missing", action="store_true", help="forget every run whose folder is missing or changed")
    lg = rsub.add_parser("log", help="log finished run folders to experiment trackers (mlflow, tensorboard)")
    lg.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    lg.add_argument("--to", required=True, help="comma-separated trackers: mlflow,tensorboard")
    b = rsub.add_parser("leaderboard", help="methods ranked on one metric over comparable runs")
    b.add_argument("--metric", required=True, help="a metric column, e.g. psnr")
    b.add_argument("--data", help="set name or folder the runs were given")
    b.add_argument("--scale", type=int)
    b.add_argument("--protocol", help="basicsr or default")
    b.add_argument("--top", type=int, default=20, help="rows per board (default 20)")
    p.set_defaults(func=_cmd_runs)


def _cmd_runs(args: argparse.Namespace) -> int:
    from evalsuite.index import OK, RunIndex

    act = args.runs_action
    if act == "log":
        from evalsuite.lazy import load_object
        from evalsuite.trackers import tracker_hooks

        hooks = tracker_hooks(x.strip() for x in args.to.split(",") if x.strip())
        for d in args.run_dirs:
            for hook in hooks:
                print(f"{d}: {hook.rsplit('_', 1)[1]}: {load_object(hook)(d)}")
        return 0
    index = RunIndex(args.index)
    if act == "list":
        df = index.runs()
        if df.empty:
            print(f"no runs registered in {index.url}")
            return 0
        cols = ["id", "status", "name", "data", "task", "protocol", "methods", "n_images", "started", "run_dir"]
        print(df[cols].to_string(index=False))
        _stale_hint(df[df["status"] != OK])
        return 0
    if act == "show":
        row = index.find(args.run)
        for k in ("id", "status", "run_dir", "name", "data", "data_dir", "task", "scale", "protocol", "n_images",
                  "started", "registered"):
            print(f"{k:>12}: {row[k]}")
        for k, v in json.loads(row["identity"]).items():
            print(f"{k:>12}: {v}")
        res = index.results(int(row["id"]))
        if not res.empty:
            print()
            print(res.pivot(index="method", columns="metric", values="value").to_string())
        _stale_hint(pd.DataFrame([row]) if row["status"] != OK else pd.DataFrame())
        return 0
    if act == "add":
        for d in args.run_dirs:
            reg = index.register(d)
            moved = f" (moved from {reg.moved_from})" if reg.moved_from else ""
            print(f"registered {d} as run {reg.id}{moved}")
        return 0
    if act == "rm":
        ids = [int(index.find(k)["id"]) for k in args.runs]
        if args.missing:
            df = index.runs()
            ids += [int(i) for i in df[df["status"] != OK]["id"]]
        if not ids:
            print("nothing to remove: give run ids or folders, or --missing", file=sys.stderr)
            return 2
        print(f"removed {index.remove(sorted(set(ids)))} runs from {index.url}")
        return 0
    return _leaderboard(index, args)


def _stale_hint(stale: pd.DataFrame) -> None:
    for _, r in stale.iterrows():
        why = ("its folder is missing (moved or deleted)" if r["status"] == "missing"
               else "its manifest.json changed since it was registered (rerun or replaced)")
        print(f"warning: run {r['id']} at {r['run_dir']}: {why}; `evalsuite runs add NEW_DIR` registers it "
              f"again, `evalsuite runs rm {r['id']}` forgets it", file=sys.stderr)


def _leaderboard(index, args: argparse.Namespace) -> int:
    lb = index.leaderboard(args.metric, data=args.data, scale=args.scale, protocol=args.protocol)
    arrow = {True: "higher is better", False: "lower is better"}.get(lb.higher_is_better, "no direction")
    if not lb.boards:
        print(f"no registered run matches (metric {args.metric}, data {args.data}, scale {args.scale}, "
              f"protocol {args.protocol})")
    first = lb.boards[0].identity if lb.boards else {}
    for i, board in enumerate(lb.boards):
        if i == 0:
            print(f"{args.metric} ({arrow}), {board.n_images} images; "
                  + "; ".join(f"{k}: {v}" for k, v in board.identity.items()))
        else:
            diff = [f"{k}: {v}" for k, v in board.identity.items() if first.get(k) != v]
            if board.data_key != lb.boards[0].data_key:
                diff.append("another set of images (by content)")
            why = "; ".join(diff) or "other metric weights or metric library versions"
            print(f"\nNOT comparable with the board above ({why}); {board.n_images} images:")
        rows = board.rows.head(args.top)
        show = pd.DataFrame({
            "rank": rows["rank"], "method": rows["method"], args.metric: rows["value"].map("{:.4g}".format),
            "95% CI": [f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(rows["ci_low"], rows["ci_high"])],
            "run": rows["run_id"], "run_dir": rows["run_dir"],
        })
        print(show.to_string(index=False))
    _stale_hint(lb.stale)
    return 0
