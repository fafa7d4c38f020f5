"""Suites: many test sets x many scales in one run folder, one sub-run per (set, scale), one combined table.

`run_suite(SuiteSpec)` runs, for every data set (a registered set's name or a folder) and every scale, a
normal benchmark run in `RUN/<set>_x<scale>/` (cached and resumable as any run: a rerun reuses outputs and
metric values). A method that runs only at some scales (a x4 GAN, a checkpoint trained at one scale:
`evalsuite.methods.method_scales`) is run where it applies and left out elsewhere, with the reason. The
results are gathered into `RUN/suite.csv` (set, scale, method, metric, mean, ci_low, ci_high, n, note);
`RUN/suite.json` lists the sub-runs and the methods left out, `RUN/suite.yaml` holds the spec.

In a spec file, the key `suite:` with `data` and `scales` turns a benchmark spec into a suite.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evalsuite import distributed as D
from evalsuite import plugins
from evalsuite.io import atomic_write_text
from evalsuite.metrics.base import column_metric
from evalsuite.options import check_keys
from evalsuite.results import Results, count_column, metric_columns, nonstandard_metrics
from evalsuite.spec import BenchmarkSpec

SUITE_CSV = "suite.csv"
SUITE_JSON = "suite.json"
SUITE_COLUMNS = ["set", "scale", "method", "metric", "mean", "ci_low", "ci_high", "n", "note"]
SUITE_KEYS = ("data", "scales", "sub_reports")


@dataclass(frozen=True)
class SuiteSpec:
    """A suite: the data sets, the scales, and the benchmark settings every sub-run shares."""

    data: tuple[str, ...]
    scales: tuple[int, ...]
    base: BenchmarkSpec  # methods, metrics, protocol, out, device, ... (its data/task/scale are replaced)
    sub_reports: bool = True  # each sub-run writes its own report.html, as a normal run does

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if not self.data:
            raise ValueError("a suite needs at least one data set: --data set5,set14 or folders")
        if not self.scales or any(s < 1 for s in self.scales):
            raise ValueError(f"a suite needs scales of 1 or more: --scales 2,3,4 (got {list(self.scales)})")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"--scales lists a scale twice: {list(self.scales)}")

    @property
    def out_dir(self) -> Path:
        """The suite's folder (the base spec's run folder)."""
        return self.base.out_dir

    @classmethod
    def from_spec(cls, spec: BenchmarkSpec) -> SuiteSpec:
        """A suite from a benchmark spec with a `suite:` key ({data: [...], scales: [...]})."""
        d = dict(spec.suite or {})
        check_keys(d, SUITE_KEYS, "suite", "key")
        data, scales = d.get("data"), d.get("scales")
        if isinstance(data, str):
            data = [x.strip() for x in data.split(",") if x.strip()]
        if isinstance(scales, (str, int)):
            scales = [int(x) for x in str(scales).split(",") if x.strip()]
        return cls(tuple(data or ()), tuple(scales or ()), spec.replace(suite=None), bool(d.get("sub_reports", True)))

    def to_dict(self) -> dict[str, Any]:
        """The suite as a spec dict: the base spec's fields with `suite: {data, scales, sub_reports}`."""
        d = self.base.to_dict()
        d["suite"] = {"data": list(self.data), "scales": list(self.scales), "sub_reports": self.sub_reports}
        return d


def set_names(data: Sequence[str]) -> list[str]:
    """A short, unique, file-name-safe name per data entry: a set's name, or a folder's base name."""
    out: list[str] = []
    for d in data:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(d).rstrip("/\\")).name or str(d)) or "data"
        base, k = name, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out


def sub_dir_name(set_name: str, scale: int) -> str:
    """The sub-run folder of one (set, scale): `<set>_x<scale>`."""
    return f"{set_name}_x{scale}"


def scale_limits(methods: Sequence[str], scale: int) -> tuple[list[str], dict[str, str]]:
    """(methods that run at `scale`, {label: why not} for the others), labels as the runner makes them."""
    from evalsuite.methods import method_label, method_scales
    from evalsuite.sweep import expand_method

    keep: list[str] = []
    left_out: dict[str, str] = {}
    for name in methods:
        variants = expand_method(name)
        scales = method_scales(variants[0].name) if variants else None
        if scales is None or scale in scales:
            keep.append(name)
            continue
        why = "x" + "/x".join(str(s) for s in scales) + " only"
        for v in variants:
            left_out[method_label(v.name)] = why
    return keep, left_out


def _check_data(spec: SuiteSpec) -> None:
    """Every data set is there before any work (a missing one names what to fetch)."""
    from evalsuite.datasets import resolve_data

    for d in spec.data:
        resolve_data(d)


def _long_rows(set_name: str, scale: int, res: Results) -> list[dict[str, Any]]:
    """A sub-run's summary as suite.csv rows (one per method and metric column)."""
    rows = []
    nonstandard = nonstandard_metrics(res.run_dir)  # a value from non-standard weights keeps its note
    for _, r in res.summary.iterrows():
        note = str(r.get("notes")) if pd.notna(r.get("notes")) else ""
        for c in metric_columns(res.summary):
            v = r.get(c)
            n = r.get(count_column(c), r["n_images"])  # a metric that skipped images has its own count
            n = r["n_images"] if pd.isna(n) else n
            rows.append(
                {
                    "set": set_name,
                    "scale": scale,
                    "method": str(r["method"]),
                    "metric": c,
                    "mean": v,
                    "ci_low": r.get(f"{c}_ci_low"),
                    "ci_high": r.get(f"{c}_ci_high"),
                    "n": int(n) if pd.notna(n) else 0,
                    "note": nonstandard.get(column_metric(c), "") if pd.notna(v) else note,
                }
            )
    return rows


def combine(spec: SuiteSpec, sub_runs: list[dict[str, Any]]) -> pd.DataFrame:
    """suite.csv: every sub-run's summary in long form, and a row per metric with the reason for a method left out."""
    rows: list[dict[str, Any]] = []
    metrics: list[str] = []
    for sr in sub_runs:
        if sr.get("run_dir") and (Path(sr["run_dir"]) / "summary.csv").exists():
            res = Results.load(sr["run_dir"])
            rows += _long_rows(sr["set"], sr["scale"], res)
            metrics += [c for c in metric_columns(res.summary) if c not in metrics]
    for sr in sub_runs:
        for label, why in sr["left_out"].items():
            for c in metrics:
                rows.append({"set": sr["set"], "scale": sr["scale"], "method": label, "metric": c, "mean": math.nan,
                             "ci_low": math.nan, "ci_high": math.nan, "n": 0, "note": why})
    return pd.DataFrame(rows, columns=SUITE_COLUMNS)


def run_suite(
    spec: SuiteSpec, log: Callable[[str], None] = print, hooks: Sequence[str] = (), progress: bool = True
) -> pd.DataFrame:
    """Run every (set, scale) sub-run (cached), write suite.csv and suite.json, call `hooks(out)`; -> suite.csv."""
    from evalsuite.runner import NoUsableImagesError, run

    _check_data(spec)
    say = log if D.is_main() else (lambda *a, **k: None)
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if D.is_main():
        atomic_write_text(out / "suite.yaml", _yaml(spec.to_dict()))
    names = set_names(spec.data)
    methods = list(spec.base.methods)
    if not methods:
        raise ValueError("a suite needs --methods (e.g. bicubic,realesrgan-x4plus): the defaults depend on the scale")
    sub_runs: list[dict[str, Any]] = []
    for data, set_name in zip(spec.data, names, strict=True):
        for scale in spec.scales:
            keep, left_out = scale_limits(methods, scale)
            sub = out / sub_dir_name(set_name, scale)
            entry: dict[str, Any] = {"set": set_name, "data": data, "scale": scale, "run_dir": None,
                                     "left_out": left_out, "error": ""}
            sub_runs.append(entry)
            say(f"== {set_name} x{scale} -> {sub}")
            for label, why in left_out.items():
                say(f"note: {set_name} x{scale}: {label} left out ({why})")
            if not keep:
                entry["error"] = "no method runs at this scale"
                continue
            sub_spec = spec.base.replace(
                name=f"{spec.base.name}-{set_name}-x{scale}", data=data, task=None, scale=scale, lr=None,
                methods=tuple(keep), out=str(sub), report=spec.sub_reports and spec.base.report,
            )
            try:
                run(sub_spec, log=log, progress=progress)
            except NoUsableImagesError as exc:  # one empty set never sinks the others
                entry["error"] = str(exc)
                say(f"error: {set_name} x{scale}: {exc}")
                continue
            entry["run_dir"] = str(sub)
    table = combine(spec, sub_runs)
    if not D.is_main():  # under torchrun every rank ran the sub-runs; rank 0 writes the suite's files
        return table
    atomic_write_text(out / SUITE_CSV, table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / SUITE_JSON, json.dumps({"spec": spec.to_dict(), "runs": sub_runs}, indent=1,
                                                   default=str))
    for target in hooks:
        try:
            plugins.hook(target)(out)
        except Exception as exc:  # a failing report never loses the numbers written
            say(f"warning: post-run hook {target} failed: {type(exc).__name__}: {exc}")
    return table


def _yaml(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def load_suite(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A suite folder's suite.csv and suite.json."""
    run_dir = Path(run_dir)
    path = run_dir / SUITE_CSV
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a suite folder (no {SUITE_CSV}); run `evalsuite run suite`")
    table = pd.read_csv(path, dtype={"set": str, "method": str, "metric": str, "note": str})
    meta = json.loads((run_dir / SUITE_JSON).read_text()) if (run_dir / SUITE_JSON).exists() else {}
    return table, meta
