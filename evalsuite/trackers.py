"""Experiment trackers: a finished run's spec as params, its summary as metrics, report and CSVs as artifacts.

`--log-to mlflow,tensorboard` on `evalsuite run benchmark` adds these as post-run hooks (after the report),
and `evalsuite runs log RUN_DIR --to mlflow` logs a run that already finished. Both libraries are optional
(`pip install 'evalsuite[trackers]'`) and need no server:

- MLflow: the tracking URI is MLflow's own setting ($MLFLOW_TRACKING_URI: `file:/path` for a local file
  store, `sqlite:///mlflow.db`, or `http://server`); the experiment is $EVALSUITE_MLFLOW_EXPERIMENT
  (default `evalsuite`). Metrics are named `METHOD/METRIC` (and `METHOD/METRIC_ci_low`, `_ci_high`).
- TensorBoard: event files in $EVALSUITE_TENSORBOARD_DIR/<run folder name> (default RUN_DIR/tensorboard):
  scalars `METRIC/METHOD` (and `METRIC/METHOD_ci_low`, `_ci_high`), the spec as text and as hparams,
  and the report and CSVs copied beside the events (TensorBoard has no artifact store).

What was logged where is written to RUN_DIR/trackers.json.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from evalsuite.io import atomic_write_text
from evalsuite.results import REFERENCE_ROW, TEXT_COLUMNS, metric_columns

HOOKS = {"mlflow": "evalsuite.trackers:log_mlflow", "tensorboard": "evalsuite.trackers:log_tensorboard"}
ARTIFACTS = ("spec.yaml", "manifest.json", "summary.csv", "per_image.csv", "errors.csv", "failures.csv", "report.html")
EXPERIMENT_ENV = "EVALSUITE_MLFLOW_EXPERIMENT"
TB_DIR_ENV = "EVALSUITE_TENSORBOARD_DIR"
EXTRA_HINT = "install it with `pip install 'evalsuite[trackers]'`"


def tracker_hooks(names: Iterable[str]) -> tuple[str, ...]:
    """The post-run hooks of tracker names (mlflow, tensorboard); an unknown name is an error naming the valid ones."""
    out = []
    for n in names:
        if n not in HOOKS:
            raise ValueError(f"--log-to {n}: unknown tracker; choose from {', '.join(HOOKS)}")
        out.append(HOOKS[n])
    return tuple(out)


def _spec(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "spec.yaml"
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: {run_dir} is not a finished run folder")
    return yaml.safe_load(p.read_text()) or {}


def flat_params(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested spec flattened to `a.b` keys with string values (lists joined by commas)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ",".join(str(x) for x in v)
        else:
            out[key] = "" if v is None else str(v)
    return out


def summary_metrics(run_dir: Path) -> dict[str, float]:
    """{`METHOD/METRIC`: value} and the CI bounds (`..._ci_low`, `..._ci_high`), empty values left out."""
    summary = pd.read_csv(run_dir / "summary.csv", dtype=TEXT_COLUMNS)
    out: dict[str, float] = {}
    for _, r in summary.iterrows():
        method = "reference_HR" if r["method"] == REFERENCE_ROW else str(r["method"])
        for c in metric_columns(summary):
            for suffix in ("", "_ci_low", "_ci_high"):
                v = pd.to_numeric(r.get(c + suffix), errors="coerce")
                if v is not None and not math.isnan(v):
                    out[f"{method}/{c}{suffix}"] = float(v)
    return out


def _record(run_dir: Path, tracker: str, info: dict[str, Any]) -> None:
    """Add what was logged to RUN_DIR/trackers.json."""
    p = run_dir / "trackers.json"
    try:
        done = json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        done = {}
    done[tracker] = info
    atomic_write_text(p, json.dumps(done, indent=1))


_MLFLOW_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def mlflow_key(name: str) -> str:
    """A metric or param name MLflow accepts (letters, digits, _ - . space / :; others become _)."""
    return _MLFLOW_BAD.sub("_", name)


def log_mlflow(run_dir: str | Path) -> str:
    """Log a finished run to MLflow (params, metrics, artifacts); returns the MLflow run id."""
    try:
        import mlflow
        from mlflow.entities import Metric, Param
    except ImportError as exc:
        raise RuntimeError(f"--log-to mlflow needs MLflow (mlflow or mlflow-skinny); {EXTRA_HINT}") from exc
    run_dir = Path(run_dir)
    spec = _spec(run_dir)
    client = mlflow.tracking.MlflowClient()
    name = os.environ.get(EXPERIMENT_ENV) or "evalsuite"
    try:
        exp = client.get_experiment_by_name(name)
    except Exception as exc:
        if "MLFLOW_ALLOW_FILE_STORE" not in str(exc):
            raise
        raise RuntimeError(
            f"MLflow refuses its local file store ({mlflow.get_tracking_uri()}) unless MLFLOW_ALLOW_FILE_STORE=true; "
            "set that, or MLFLOW_TRACKING_URI to a database (sqlite:///mlflow.db) or a tracking server"
        ) from None
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    run = client.create_run(
        exp_id, run_name=str(spec.get("name") or run_dir.name),
        tags={"evalsuite.run_dir": str(run_dir.resolve()), "evalsuite.data": str(spec.get("data", ""))},
    )
    rid = run.info.run_id
    # MLflow caps a param value (6000 characters) and a batch (100 params, 1000 metrics).
    params = [Param(mlflow_key(k), v[:6000]) for k, v in flat_params(spec).items()]
    metrics = [Metric(mlflow_key(k), v, 0, 0) for k, v in summary_metrics(run_dir).items()]
    for i in range(0, len(params), 100):
        client.log_batch(rid, params=params[i: i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i: i + 1000])
    for f in ARTIFACTS:
        if (run_dir / f).exists():
            client.log_artifact(rid, str(run_dir / f))
    client.set_terminated(rid)
    _record(run_dir, "mlflow", {"tracking_uri": mlflow.get_tracking_uri(), "experiment": name, "run_id": rid})
    return rid


def log_tensorboard(run_dir: str | Path) -> Path:
    """Write a finished run as TensorBoard event files (scalars, spec text and hparams, files copied); the log dir."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise RuntimeError(f"--log-to tensorboard needs the tensorboard package; {EXTRA_HINT}") from exc
    run_dir = Path(run_dir)
    spec = _spec(run_dir)
    root = os.environ.get(TB_DIR_ENV)
    logdir = Path(root).expanduser() / run_dir.resolve().name if root else run_dir / "tensorboard"
    logdir.mkdir(parents=True, exist_ok=True)
    metrics = summary_metrics(run_dir)
    with SummaryWriter(str(logdir)) as w:
        for key, v in metrics.items():
            method, metric = key.rsplit("/", 1)
            suffix = next((x for x in ("_ci_low", "_ci_high") if metric.endswith(x)), "")
            # One chart per metric, a series per method (and its CI bounds): psnr/bicubic, psnr/bicubic_ci_low.
            w.add_scalar(f"{metric[: len(metric) - len(suffix)]}/{method}{suffix}", v, 0)
        w.add_text("spec", "```\n" + yaml.safe_dump(spec, sort_keys=False) + "\n```", 0)
        summary = (run_dir / "summary.csv").read_text()
        w.add_text("summary", "```\n" + summary + "\n```", 0)
        hparams = {k: v for k, v in flat_params(spec).items() if len(v) < 500}
        w.add_hparams(hparams, {f"hparam/{k}": v for k, v in metrics.items() if "_ci_" not in k}, run_name="hparams")
    files = logdir / "files"
    files.mkdir(exist_ok=True)
    for f in ARTIFACTS:
        if (run_dir / f).exists():
            shutil.copy2(run_dir / f, files / f)
    _record(run_dir, "tensorboard", {"logdir": str(logdir.resolve())})
    return logdir
