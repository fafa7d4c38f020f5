"""`--log-to mlflow|tensorboard`: what the real libraries stored, read back (offline: MLflow's file store,
TensorBoard event files)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import evalsuite
from evalsuite.cli import build_parser, spec_from_args
from evalsuite.spec import REPORT_HOOK, BenchmarkSpec
from evalsuite.trackers import HOOKS, summary_metrics, tracker_hooks


@pytest.fixture(scope="module")
def logged_run(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One finished run (with its report) logged to both trackers by the post-run hooks `--log-to` adds."""
    pytest.importorskip("mlflow", reason="MLflow not installed (pip install 'evalsuite[trackers]')")
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'evalsuite[trackers]')")
    base = tmp_path_factory.mktemp("trackers")
    mp = pytest.MonkeyPatch()
    # A local file store under tmp: no server, nothing written outside the test's folder.
    mp.setenv("MLFLOW_TRACKING_URI", (base / "mlruns").as_uri())
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    mp.setenv("EVALSUITE_MLFLOW_EXPERIMENT", "tests")
    mp.setenv("EVALSUITE_TENSORBOARD_DIR", str(base / "tb"))
    spec = BenchmarkSpec(data=str(photos_dir), scale=2, methods=("bilinear", "bicubic"), metrics=("psnr", "ssim"),
                         out=str(base / "run"), workers=1, limit=2, post_run=tracker_hooks(["mlflow", "tensorboard"]))
    evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    yield {"run": base / "run", "mlruns": base / "mlruns", "tb": base / "tb" / "run"}
    mp.undo()


def test_log_to_flag_adds_the_hooks_after_the_report():
    args = build_parser().parse_args(["run", "benchmark", "--log-to", "mlflow,tensorboard", "--methods", "bicubic"])
    spec = spec_from_args(args)
    assert spec.hooks == (REPORT_HOOK, HOOKS["mlflow"], HOOKS["tensorboard"])
    with pytest.raises(ValueError, match="unknown tracker; choose from mlflow, tensorboard"):
        tracker_hooks(["wandb"])


def test_mlflow_stores_params_metrics_and_artifacts(logged_run, tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    info = json.loads((logged_run["run"] / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(logged_run["mlruns"].as_uri())
    run = client.get_run(info["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    params = run.data.params
    assert params["methods"] == "bilinear,bicubic" and params["scale"] == "2" and params["limit"] == "2"
    summary = pd.read_csv(logged_run["run"] / "summary.csv").set_index("method")
    for m in ("bilinear", "bicubic"):
        assert run.data.metrics[f"{m}/psnr"] == pytest.approx(summary.loc[m, "psnr"])
        assert run.data.metrics[f"{m}/ssim_ci_low"] == pytest.approx(summary.loc[m, "ssim_ci_low"])
    names = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"report.html", "summary.csv", "per_image.csv", "spec.yaml", "manifest.json"} <= names
    got = client.download_artifacts(info["run_id"], "summary.csv", str(tmp_path))
    assert Path(got).read_bytes() == (logged_run["run"] / "summary.csv").read_bytes()


def test_tensorboard_event_files_read_back(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logged_run["tb"]))
    acc.Reload()
    expected = summary_metrics(logged_run["run"])
    scalars = set(acc.Tags()["scalars"])
    assert {"psnr/bicubic", "psnr/bilinear", "ssim/bicubic_ci_high"} <= scalars
    assert acc.Scalars("psnr/bicubic")[0].value == pytest.approx(expected["bicubic/psnr"], rel=1e-6)
    # The spec as text (a tensor of strings), and the report and CSVs copied beside the events.
    spec_text = acc.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "methods:" in spec_text and "bicubic" in spec_text
    for f in ("report.html", "summary.csv", "per_image.csv"):
        assert (logged_run["tb"] / "files" / f).read_bytes() == (logged_run["run"] / f).read_bytes()
