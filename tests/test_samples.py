"""--samples K: K outputs per image of stochastic methods (per-sample seeds from the image id), cached like
other outputs; diversity metrics over the K samples; deterministic methods score 0 without K runs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import evalsuite
from evalsuite.spec import BenchmarkSpec

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import plugins_testmethods  # noqa: F401


def _spec(data, out, **kw) -> BenchmarkSpec:
    base = dict(data=str(data), out=str(out), task=None, scale=4, methods=("noisybicubic", "bicubic"),
                metrics=("psnr", "diversity"), samples=3, batch_size=2, report=False, bootstrap=200)
    return BenchmarkSpec(**{**base, **kw})


def _arr(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255.0


def test_samples_give_diversity_and_means_and_are_cached(photos_dir, tmp_path):
    import plugins_testmethods as P

    res = evalsuite.run(_spec(photos_dir, tmp_path / "run"), progress=False)
    out = tmp_path / "run" / "outputs"
    per = res.per_image.set_index(["method", "image_id"])
    for i in ("astronaut", "coffee"):
        # Diversity = mean over pixels of the per-pixel std across the K saved samples.
        stack = np.stack([_arr(out / "noisybicubic" / f"{i}.png")]
                         + [_arr(out / "noisybicubic" / "samples" / f"s{k}" / f"{i}.png") for k in (1, 2)])
        assert per.loc[("noisybicubic", i), "diversity"] == pytest.approx(stack.std(axis=0).mean(), rel=1e-4)
        assert per.loc[("noisybicubic", i), "diversity"] > 0.01
        # The deterministic method: 0, and never run K times.
        assert per.loc[("bicubic", i), "diversity"] == 0
        assert per.loc[("bicubic", i), "psnr_samples_mean"] == per.loc[("bicubic", i), "psnr"]
    assert not (out / "bicubic" / "samples").exists()
    assert "psnr_samples_mean" in res.summary.columns
    # The samples differ from each other (seeds per sample), and the mean PSNR is over all three.
    a, b = (_arr(out / "noisybicubic" / "samples" / f"s{k}" / "rocket.png") for k in (1, 2))
    assert np.abs(a - b).mean() > 0.01
    # A rerun draws nothing again.
    calls = P.NoisyBicubic.calls
    again = evalsuite.run(_spec(photos_dir, tmp_path / "run"), progress=False)
    assert P.NoisyBicubic.calls == calls
    pd.testing.assert_frame_equal(again.summary, res.summary)


def test_sample_zero_is_the_ordinary_output(photos_dir, tmp_path):
    evalsuite.run(_spec(photos_dir, tmp_path / "one", samples=1, metrics=("psnr",)), progress=False)
    evalsuite.run(_spec(photos_dir, tmp_path / "three"), progress=False)
    for i in ("chelsea", "rocket"):
        one = _arr(tmp_path / "one" / "outputs" / "noisybicubic" / f"{i}.png")
        three = _arr(tmp_path / "three" / "outputs" / "noisybicubic" / f"{i}.png")
        assert np.array_equal(one, three)


def test_diversity_without_samples_is_empty_with_a_note(photos_dir, tmp_path):
    res = evalsuite.run(_spec(photos_dir, tmp_path / "run", samples=1), progress=False)
    assert res.summary["diversity"].isna().all()
    assert "needs --samples" in res.summary["notes"].iloc[0]


def test_sr3_samples_through_the_cli(photos_dir, tmp_path):
    from test_sr3_method import random_sr3

    from evalsuite import cli

    ckpt = random_sr3(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    for p in itertools.islice(sorted(photos_dir.glob("*.png")), 2):
        Image.open(p).resize((24, 20)).save(small / p.name)
    rc = cli.main(["run", "benchmark", "--data", str(small), "--scale", "2", "--methods", f"bicubic,sr3:{ckpt}",
                   "--metrics", "psnr,diversity", "--samples", "4", "--steps", "2", "--sampler", "ddim",
                   "--out", str(tmp_path / "run"), "--no-report", "--device", "cpu"])
    assert rc == 0
    s = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("method")
    assert s.loc["bicubic", "diversity"] == 0 and s.loc["sr3-sr3", "diversity"] > 0
    assert len(list((tmp_path / "run" / "outputs" / "sr3-sr3" / "samples").rglob("*.png"))) == 2 * 3


def test_report_shows_samples_side_by_side_with_a_std_heat_map(photos_dir, tmp_path):
    import re

    evalsuite.run(_spec(photos_dir, tmp_path / "run", report=True), progress=False)
    html = (tmp_path / "run" / "report.html").read_text()
    section = html[html.index('<section id="samples">') : html.index('<section id="worst">')]
    assert "mode dropping" in section and "noisybicubic" in section
    assert "<h3>bicubic " not in section and "<h3>noisybicubic " in section  # deterministic: nothing to show
    rows = re.findall(r'<figure class="samples".*?</figure>', section, flags=re.S)
    assert len(rows) == 3  # most, median and least diverse of four images
    for r in rows:
        assert len(re.findall(r"alt=\"noisybicubic sample \d of", r)) == 3
        assert "standard deviation across samples" in r
    assert "most diverse" in rows[0] and "least diverse" in rows[-1]
