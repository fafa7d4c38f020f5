"""A value from non-standard weights says so wherever it is stored: summary notes, per-image flag, manifest, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import evalsuite
from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights
from evalsuite.results import NONSTANDARD_COLUMN, Results, nonstandard_metrics
from evalsuite.spec import BenchmarkSpec

MARKED = ("lpips", "dists", "fid", "kid", "is", "classification")


def _random_vgg_features(seed: int) -> dict[str, torch.Tensor]:
    """torchvision's VGG-16 convolutional trunk, randomly initialized (He-scaled), under `features.<i>` keys."""
    from torchvision.models import vgg

    with torch.device("meta"):
        shapes = vgg.make_layers(vgg.cfgs["D"]).state_dict()
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in shapes.items():
        if k.endswith("weight"):
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            out[f"features.{k}"] = torch.randn(v.shape, generator=g) * (2 / fan_in) ** 0.5
        else:
            out[f"features.{k}"] = torch.randn(v.shape, generator=g) * 0.01
    return out


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init networks under their official file names (VGG-16 trunk, Inceptions, ResNet-50)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.save(_random_vgg_features(1), folder / SPECS["lpips-vgg"].entry.filename)
    write_random_weights("inception-fid", folder / SPECS["inception-fid"].entry.filename, small=True)
    write_random_weights("inception-is", folder / SPECS["inception-is"].entry.filename)
    write_random_weights("resnet50", folder / SPECS["resnet50"].entry.filename)
    return folder


def _data(folder: Path, n: int = 3) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = [f"img{k}" for k in range(n)]
    for i in ids:
        smooth = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.BICUBIC)
        smooth.save(folder / f"{i}.png")
    return ids


def test_every_nonstandard_value_is_marked_where_it_is_stored(random_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(random_weights))
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ALLOW_ENV, "1")
    ids = _data(tmp_path / "data")
    (tmp_path / "labels.csv").write_text("image_id,label\n" + "".join(f"{i},{k}\n" for k, i in enumerate(ids)))
    run = tmp_path / "run"
    spec = BenchmarkSpec(
        data=str(tmp_path / "data"), out=str(run), task=None, scale=4, methods=("bicubic",),
        metrics=("psnr", *MARKED), metric_options={"lpips_net": "vgg", "labels": str(tmp_path / "labels.csv")},
        report=True, bootstrap=100,
    )  # fmt: skip
    lines: list[str] = []
    res = evalsuite.run(spec, log=lines.append, progress=False)
    manifest = json.loads((run / "manifest.json").read_text())
    # Manifest: every marked metric, with its note, under nonstandard_weights and metric_notes; psnr is not.
    assert set(manifest["nonstandard_weights"]) == set(MARKED)
    for n in MARKED:
        note = manifest["nonstandard_weights"][n]
        assert note.startswith("NON-STANDARD weights") and manifest["metric_notes"][n] == note
    # summary.csv: each method row's notes (and the HR reference row's) carry every metric's note.
    summary = pd.read_csv(run / "summary.csv")
    by = summary.set_index("method")
    assert by.loc["bicubic", ["psnr", "lpips", "dists", "fid", "is", "top1_error"]].notna().all()
    for row_notes in summary["notes"]:
        for n in MARKED:
            assert manifest["nonstandard_weights"][n] in row_notes, (n, row_notes)
    assert by.loc["bicubic", "notes"].count(manifest["nonstandard_weights"]["fid"]) == 1  # said once
    # per_image.csv: the flag column names the per-image metrics whose value in the row is non-standard.
    per = pd.read_csv(run / "per_image.csv", dtype={NONSTANDARD_COLUMN: str})
    assert per[NONSTANDARD_COLUMN].tolist() == ["lpips,dists"] * len(ids)
    assert per["lpips"].notna().all() and per["dists"].notna().all()
    assert res.per_image[NONSTANDARD_COLUMN].tolist() == ["lpips,dists"] * len(ids)
    # The report: a banner over the table per metric and a mark on each of its columns.
    html = (run / "report.html").read_text()
    for n in MARKED:
        assert f'id="nonstandard-{n}"' in html, n
    assert html.count("nonstandard-tag") == len(Results.load(run).summary.columns.intersection(
        ["lpips", "dists", "fid", "kid", "is", "top1_error", "top5_error"]))  # fmt: skip
    # Without the manifest, readers (reports, exports) still find the marks in summary.csv.
    (run / "manifest.json").unlink()
    assert {"lpips", "dists"} <= set(nonstandard_metrics(run))


def test_official_or_weight_free_runs_carry_no_mark(tmp_path):
    _data(tmp_path / "data", 2)
    res = evalsuite.run(
        BenchmarkSpec(data=str(tmp_path / "data"), out=str(tmp_path / "run"), task=None, scale=4,
                      methods=("bicubic",), metrics=("psnr",), report=False),
        log=lambda *a: None, progress=False,
    )  # fmt: skip
    assert NONSTANDARD_COLUMN not in res.per_image
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["nonstandard_weights"] == {}
    assert nonstandard_metrics(tmp_path / "run") == {}
