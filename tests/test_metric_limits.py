"""Each metric's size limit empties that metric only: the image set never depends on the metrics asked for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import evalsuite
from evalsuite.metrics.pixel import MS_SSIM_MIN_SIDE
from evalsuite.metrics.weights import ALLOW_ENV
from evalsuite.results import Results
from evalsuite.spec import BenchmarkSpec

SMALL = ("small_a", "small_b")


@pytest.fixture(scope="module")
def mixed_sizes(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four photos at 200 px (MS-SSIM can score them) and two at 100 px (too small for MS-SSIM)."""
    d = tmp_path_factory.mktemp("mixed")
    photos = sorted(photos_dir.glob("*.png"))
    for p in photos:
        Image.open(p).convert("RGB").resize((200, 200), Image.BICUBIC).save(d / p.name)
    for name, p in zip(SMALL, photos):
        Image.open(p).convert("RGB").resize((100, 100), Image.BICUBIC).save(d / f"{name}.png")
    return d


def _run(data: Path, out: Path, metrics: tuple[str, ...]) -> tuple[Results, list[str]]:
    lines: list[str] = []
    spec = BenchmarkSpec(
        data=str(data), out=str(out), task=None, scale=4, methods=("bicubic",), metrics=metrics,
        batch_size=4, report=False, bootstrap=200,
    )  # fmt: skip
    return evalsuite.run(spec, log=lines.append, progress=False), lines


def test_ms_ssim_does_not_change_the_other_metrics(mixed_sizes: Path, tmp_path: Path) -> None:
    assert 100 < MS_SSIM_MIN_SIDE <= 200
    without, _ = _run(mixed_sizes, tmp_path / "a", ("psnr", "ssim"))
    with_ms, lines = _run(mixed_sizes, tmp_path / "b", ("psnr", "ssim", "ms_ssim"))
    # Same images, same PSNR/SSIM values and means, with or without ms_ssim.
    assert len(without.per_image) == len(with_ms.per_image) == 6
    a = without.per_image.set_index("image_id").sort_index()
    b = with_ms.per_image.set_index("image_id").sort_index()
    pd.testing.assert_frame_equal(a[["psnr", "ssim"]], b[["psnr", "ssim"]])
    sa, sb = without.summary.iloc[0], with_ms.summary.iloc[0]
    assert sa["psnr"] == pytest.approx(sb["psnr"], abs=1e-12) and sa["n_images"] == sb["n_images"] == 6
    # ms_ssim is empty for the small images only, and counted over the others.
    assert b.loc[list(SMALL), "ms_ssim"].isna().all() and b.drop(list(SMALL))["ms_ssim"].notna().all()
    assert sb["ms_ssim"] == pytest.approx(b["ms_ssim"].mean())
    assert sb["n_ms_ssim"] == 4 and "n_psnr" not in with_ms.summary and "n_ms_ssim" not in without.summary
    assert with_ms.errors.empty
    # skipped.csv names each (image, metric) with the reason; the console and notes say which metric skipped what.
    skipped = Results.load(tmp_path / "b").skipped
    assert sorted(skipped["image_id"]) == sorted(SMALL) and set(skipped["metric"]) == {"ms_ssim"}
    assert all("100x100" in r and f"{MS_SSIM_MIN_SIDE} px" in r for r in skipped["reason"])
    assert any("ms_ssim skipped 2 image(s)" in line for line in lines), lines
    assert not any("failed" in line for line in lines), lines
    assert "ms_ssim skipped 2 image(s)" in sb["notes"]
    assert Results.load(tmp_path / "a").skipped.empty
    # The summary file keeps the count column next to its metric, and the console table shows it.
    s = pd.read_csv(tmp_path / "b" / "summary.csv")
    cols = list(s.columns)
    assert cols[cols.index("ms_ssim_ci_high") + 1] == "n_ms_ssim" and s["n_ms_ssim"].tolist() == [4]
    assert "(n=4)" in Results.load(tmp_path / "b").table()
    from evalsuite.results import metric_columns

    assert metric_columns(s) == ["psnr", "ssim", "ms_ssim"]


def test_a_metric_without_weights_imposes_no_limit(photos_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """LPIPS cannot be built (no weights here): it computes nothing, so a 20-px image is scored by PSNR."""
    data = tmp_path / "data"
    data.mkdir()
    Image.open(next(photos_dir.glob("*.png"))).convert("RGB").resize((20, 20)).save(data / "tiny.png")
    Image.open(next(photos_dir.glob("*.png"))).convert("RGB").resize((64, 64)).save(data / "fine.png")
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.delenv(ALLOW_ENV, raising=False)

    def offline(url, dest, prefix):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr("evalsuite.metrics.weights._download", offline)
    res, _ = _run(data, tmp_path / "run", ("psnr", "lpips"))
    assert sorted(res.per_image["image_id"]) == ["fine", "tiny"] and res.per_image["psnr"].notna().all()
    assert res.per_image["lpips"].isna().all() and res.skipped.empty and res.errors.empty
    assert "lpips" in res.summary["notes"].iloc[0]
