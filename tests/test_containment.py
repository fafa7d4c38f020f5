"""No single input can sink a run: a failure injected at any stage for one image of five costs that image
(or that one value) only; every other image is fully scored and every file of the run folder is written."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from evalsuite import cli

TESTS = Path(__file__).parent
FAIL_ID = "coffee"
OTHERS = ["astronaut", "chelsea", "extra", "rocket"]
PIXEL = ["psnr", "ssim", "consistency"]


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import plugins_testmethods  # noqa: F401  (registers the failing methods and metrics)


@pytest.fixture()
def five(photos_dir, tmp_path) -> Path:
    """Five real photos; the one that fails has a size of its own, so a size-keyed injection finds it."""
    d = tmp_path / "data"
    shutil.copytree(photos_dir, d)
    Image.open(photos_dir / "astronaut.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(d / "extra.png")
    Image.open(photos_dir / "coffee.png").resize((148, 100)).save(d / "coffee.png")
    return d


def _run(data: Path, out: Path, methods: str = "bicubic", metrics: list[str] = PIXEL) -> int:
    return cli.main(
        ["run", "benchmark", "--data", str(data), "--scale", "4", "--methods", methods, "--metrics", ",".join(metrics),
         "--out", str(out), "--batch-size", "2", "--no-report"]
    )


def _check_others_scored(out: Path, method: str, cols: list[str]) -> pd.DataFrame:
    """Every run file is there and the four other images have every value of `cols`."""
    for name in ("summary.csv", "per_image.csv", "errors.csv", "failures.csv", "manifest.json", "spec.yaml"):
        assert (out / name).exists(), name
    per = pd.read_csv(out / "per_image.csv", dtype={"image_id": str})
    mine = per[per["method"] == method].set_index("image_id")
    assert set(OTHERS) <= set(mine.index)
    for i in OTHERS:
        for c in cols:
            assert math.isfinite(mine.loc[i, c]), (i, c)
    return per


def test_decode_failure_costs_one_file(five, tmp_path):
    raw = (five / "coffee.png").read_bytes()
    (five / "coffee.png").write_bytes(raw[: len(raw) // 2])
    assert _run(five, tmp_path / "run") == 0
    per = _check_others_scored(tmp_path / "run", "bicubic", PIXEL)
    assert FAIL_ID not in set(per["image_id"])
    assert "coffee.png" in pd.read_csv(tmp_path / "run" / "errors.csv")["path"].iloc[0]


def test_prepare_failure_costs_one_file(five, tmp_path, monkeypatch):
    import evalsuite.prepare as P

    real = P.make_lr  # the LR of one image under the run's degradation

    def make_lr(hr, scale, degradation, image_id):
        if hr.shape[-1] == 148:
            raise RuntimeError("injected prepare failure")
        return real(hr, scale, degradation, image_id)

    monkeypatch.setattr(P, "make_lr", make_lr)
    assert _run(five, tmp_path / "run") == 0
    per = _check_others_scored(tmp_path / "run", "bicubic", PIXEL)
    assert FAIL_ID not in set(per["image_id"])
    errors = pd.read_csv(tmp_path / "run" / "errors.csv")
    assert len(errors) == 1 and "injected prepare failure" in errors["reason"].iloc[0]


def test_prepared_file_unreadable_costs_one_image(five, tmp_path):
    assert _run(five, tmp_path / "run") == 0
    (tmp_path / "run" / "lr" / "coffee.png").write_bytes(b"garbage")
    shutil.rmtree(tmp_path / "run" / "outputs")
    assert _run(five, tmp_path / "run") == 0
    per = _check_others_scored(tmp_path / "run", "bicubic", PIXEL)
    assert FAIL_ID not in set(per["image_id"])
    f = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert list(f["stage"]) == ["input"] and "coffee.png" in f["reason"].iloc[0]


def test_method_failure_costs_one_image(five, tmp_path):
    assert _run(five, tmp_path / "run", methods="failon,bicubic") == 0
    per = _check_others_scored(tmp_path / "run", "failon", PIXEL)
    assert FAIL_ID not in set(per[per["method"] == "failon"]["image_id"])
    assert FAIL_ID in set(per[per["method"] == "bicubic"]["image_id"])  # other methods unaffected
    f = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert list(zip(f["image_id"], f["stage"])) == [(FAIL_ID, "method")]
    assert "injected method failure" in f["reason"].iloc[0]
    s = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert s.loc["failon", "n_images"] == 4 and s.loc["bicubic", "n_images"] == 5


def test_per_image_metric_update_failure_costs_one_value(five, tmp_path):
    assert _run(five, tmp_path / "run", metrics=[*PIXEL, "boom"]) == 0
    per = _check_others_scored(tmp_path / "run", "bicubic", [*PIXEL, "boom"]).set_index("image_id")
    # The image keeps its other metrics; only the failing metric's value is empty.
    assert math.isfinite(per.loc[FAIL_ID, "psnr"]) and math.isnan(per.loc[FAIL_ID, "boom"])
    f = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert list(zip(f["image_id"], f["stage"])) == [(FAIL_ID, "metric:boom")]
    s = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert s.loc["bicubic", "n_images"] == 5
    assert s.loc["bicubic", "boom"] == pytest.approx(per.loc[OTHERS, "boom"].mean(), rel=1e-6)
    # A rerun tries the failed value again (it is not cached as done) and lists it again, once.
    assert _run(five, tmp_path / "run", metrics=[*PIXEL, "boom"]) == 0
    assert len(pd.read_csv(tmp_path / "run" / "failures.csv")) == 1


def test_dataset_metric_update_failure_leaves_the_image_out_of_its_statistics(five, tmp_path):
    assert _run(five, tmp_path / "run", metrics=[*PIXEL, "countboom"]) == 0
    _check_others_scored(tmp_path / "run", "bicubic", PIXEL)
    s = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    # The batch holding the failing image was retried image by image: the four others counted once each.
    assert s.loc["bicubic", "countboom"] == 4 and s.loc["bicubic", "n_images"] == 5
    f = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert list(zip(f["image_id"], f["stage"])) == [(FAIL_ID, "metric:countboom")]


def test_dataset_metric_compute_failure_leaves_its_column_empty(five, tmp_path):
    assert _run(five, tmp_path / "run", metrics=[*PIXEL, "computeboom"]) == 0
    per = _check_others_scored(tmp_path / "run", "bicubic", PIXEL)
    assert len(per) == 5
    s = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert math.isnan(s.loc["bicubic", "computeboom"])
    assert "computeboom: not computed" in s.loc["bicubic", "notes"]


def test_nothing_scored_exits_non_zero(five, tmp_path, capsys):
    assert _run(five, tmp_path / "run", methods="broken:nope.pt") == 1
    assert "no image was scored" in capsys.readouterr().err
    assert (tmp_path / "run" / "summary.csv").exists()
