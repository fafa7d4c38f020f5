"""The pyiqa bridge: any pyiqa metric by name, its facts from pyiqa, honest when pyiqa or weights are missing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import evalsuite
from evalsuite.degrade import degrade, quantize, to_tensor, upsample
from evalsuite.metrics.base import MetricContext, build_metric, column_info, metric_info
from evalsuite.spec import BenchmarkSpec
from evalsuite.weights import MissingWeightsError

pyiqa = pytest.importorskip("pyiqa", reason="pyiqa is the `iqa` extra (make setup installs it)")


@pytest.fixture(scope="module")
def pairs(photos_dir):
    """(SR, HR): real photos cut to 144x112, SR a 4x bicubic round trip, 8-bit."""
    from PIL import Image

    paths = sorted(photos_dir.glob("*.png"))
    hr = torch.stack([to_tensor(Image.open(p).convert("RGB").crop((0, 0, 144, 112))) for p in paths])
    return quantize(upsample(quantize(degrade(hr, 4)), 4)), hr


@pytest.fixture()
def offline(monkeypatch, tmp_path) -> Path:
    """pyiqa with an empty cache folder and no network: every download fails."""
    from pyiqa.utils import download_util

    def unreachable(url, dst, *args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa"))
    monkeypatch.setattr(download_util, "download_url_to_file", unreachable)
    return tmp_path / "pyiqa"


def test_weight_free_pyiqa_metrics_agree_with_our_columns(pairs):
    sr, hr = pairs
    ids = [str(k) for k in range(len(sr))]
    ctx = MetricContext(torch.device("cpu"), 4, crop_border=4)
    # pyiqa's psnr and ssimc are RGB, data range 1: the same conventions as ours without --y-channel.
    psnr = build_metric("psnr", ctx).update(sr, hr, hr, ids)["psnr"]
    torch.testing.assert_close(build_metric("pyiqa:psnr", ctx).update(sr, hr, hr, ids)["pyiqa_psnr"], psnr, rtol=0,
                               atol=1e-4)
    # pyiqa's SSIM clamps negative contrast-structure terms to 0 (a ReLU Wang et al. do not have), so it sits
    # slightly above the standard value where local correlations are negative: close, never below ours.
    ssim = build_metric("ssim", ctx).update(sr, hr, hr, ids)["ssim"]
    theirs = build_metric("pyiqa:ssimc", ctx).update(sr, hr, hr, ids)["pyiqa_ssimc"]
    assert ((theirs - ssim) > -1e-5).all() and ((theirs - ssim) < 1e-3).all()
    # GMSD (no counterpart here): 0 for identical images, larger for the blurred ones.
    gmsd = build_metric("pyiqa:gmsd", ctx)
    assert gmsd.update(hr, hr, hr, ids)["pyiqa_gmsd"].abs().max() < 1e-6
    assert (gmsd.update(sr, hr, hr, ids)["pyiqa_gmsd"] > 0.01).all()


def test_direction_and_reference_kind_come_from_pyiqa():
    version = pyiqa.__version__
    gmsd, psnr, niqe = (metric_info(f"pyiqa:{n}") for n in ("gmsd", "psnr", "niqe"))
    assert gmsd.columns[0].higher_is_better is False and gmsd.full_reference
    assert psnr.columns[0].higher_is_better is True
    assert niqe.full_reference is False and niqe.columns[0].higher_is_better is False
    assert version in gmsd.help and gmsd.version == version
    assert column_info("pyiqa_gmsd").title == "gmsd (pyiqa)"
    with pytest.raises(ValueError, match="did you mean.*musiq"):
        metric_info("pyiqa:musiqq")


def test_offline_missing_weights_name_the_file_and_pyiqa_cache(offline):
    with pytest.raises(MissingWeightsError) as err:
        build_metric("pyiqa:musiq", MetricContext(torch.device("cpu"), 4))
    text = str(err.value)
    assert str(offline) in text and "musiq" in text and "network unreachable" in text and "https://" in text


def test_without_pyiqa_the_factory_says_what_to_install(monkeypatch):
    from evalsuite.metrics import iqa

    monkeypatch.setattr(iqa, "pyiqa_version", lambda: None)
    info = iqa.resolve("musiq")
    assert info.column_names == ("pyiqa_musiq",)
    with pytest.raises(MissingWeightsError, match=r"evalsuite\[iqa\]"):
        info.factory(MetricContext(torch.device("cpu"), 4))


def test_run_fills_pyiqa_columns_and_notes_the_missing_ones(photos_dir, tmp_path, offline):
    spec = BenchmarkSpec(data=str(photos_dir), scale=4, methods=("bicubic",), out=str(tmp_path / "run"),
                         metrics=("psnr", "pyiqa:gmsd", "pyiqa:musiq"), device="cpu", workers=1, bootstrap=100,
                         crop_border=4)
    res = evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    row = res.summary.iloc[0]
    assert 0 < row["pyiqa_gmsd"] < 1 and pd.isna(row["pyiqa_musiq"])
    assert "pyiqa:musiq" in row["notes"] and str(offline) in row["notes"]
    assert res.per_image["pyiqa_gmsd"].notna().all()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["versions"]["pyiqa"] == pyiqa.__version__
    assert pyiqa.__version__ in manifest["metrics"]["pyiqa:gmsd"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "gmsd (pyiqa)" in html


def test_summary_and_report_show_the_pyiqa_version(photos_dir, tmp_path, capsys):
    from evalsuite import cli

    run = tmp_path / "run"
    argv = ["run", "benchmark", "--data", str(photos_dir), "--scale", "4", "--methods", "bicubic,nearest",
            "--metrics", "psnr,pyiqa:psnr", "--device", "cpu", "--out", str(run), "--crop-border", "4"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    note = f"pyiqa: pyiqa_psnr computed by pyiqa {pyiqa.__version__}"
    assert f"note: {note}" in printed and printed.count(note) == 1  # once, not once per method
    # summary.csv: the contract's columns, the version in every row's notes.
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.columns) == ["method", "n_images"] + [
        f"{c}{x}" for c in ("psnr", "pyiqa_psnr") for x in ("", "_ci_low", "_ci_high")] + ["notes"]
    assert summary["notes"].str.contains(note, regex=False).all() and summary["pyiqa_psnr"].notna().all()
    # The report: once under the metric table, not in every row's notes cell.
    html = (run / "report.html").read_text()
    assert html.count(note) == 1 and 'id="common-notes"' in html
