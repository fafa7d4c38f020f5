"""`evalsuite compare`: content-matched pairs, paired CIs (coverage by simulation), sign-flip p-values, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import evalsuite
from evalsuite.cli import main
from evalsuite.comparable import NotComparableError
from evalsuite.compare import bootstrap_t_ci, compare_runs, holm, sign_flip_pvalue
from evalsuite.spec import BenchmarkSpec


def _run(data: Path, out: Path, methods: tuple[str, ...], **kw) -> Path:
    spec = BenchmarkSpec(data=str(data), scale=2, methods=methods, metrics=("psnr", "ssim", "consistency"),
                         out=str(out), report=False, workers=1, **kw)
    evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A: bilinear and bicubic on the photos. B: bicubic and lanczos on the same photos, two of them under
    each other's file names (chelsea's pixels in coffee.png and back), one left out, one extra image."""
    base = tmp_path_factory.mktemp("compare")
    renamed = base / "renamed"
    renamed.mkdir()
    shutil.copy(photos_dir / "astronaut.png", renamed / "astronaut.png")
    shutil.copy(photos_dir / "chelsea.png", renamed / "coffee.png")
    shutil.copy(photos_dir / "coffee.png", renamed / "chelsea.png")
    from PIL import Image
    from skimage import data

    extra = Image.fromarray(data.camera()).convert("RGB")
    extra.thumbnail((128, 128))
    extra.save(renamed / "camera.png")
    return {
        "a": _run(photos_dir, base / "a", ("bilinear", "bicubic")),
        "b": _run(renamed, base / "b", ("bicubic", "lanczos")),
        "base": base,
    }


def test_images_are_matched_by_content_not_by_name(runs):
    (comp,) = compare_runs(runs["a"], runs["b"], method="bicubic")
    pairs = set(zip(comp.per_image["image_id_a"], comp.per_image["image_id_b"]))
    # chelsea's pixels are coffee.png in B: paired across names; rocket (only A) and camera (only B) left out.
    assert pairs == {("astronaut", "astronaut"), ("chelsea", "coffee"), ("coffee", "chelsea")}
    assert (comp.only_a, comp.only_b) == (1, 1)
    # The same method on the same pixels gives the same numbers: every paired difference is exactly 0
    # (pairing by name would compare chelsea with coffee and differ).
    for m in comp.metrics:
        assert m.n == 3 and m.diff == 0 and m.ci_low == m.ci_high == 0 and m.p == 1.0
        assert m.verdict == "no clear change"


def test_paired_differences_against_the_per_image_tables(runs):
    (comp,) = compare_runs(runs["a"], runs["a"], method="bilinear,bicubic")
    a = pd.read_csv(runs["a"] / "per_image.csv")
    lin = a[a["method"] == "bilinear"].set_index("image_id")
    cub = a[a["method"] == "bicubic"].set_index("image_id")
    by = {m.metric: m for m in comp.metrics}
    assert set(by) == {"psnr", "ssim", "consistency"}
    for col in by:
        d = (cub[col] - lin[col]).to_numpy()
        assert by[col].diff == pytest.approx(d.mean())
        assert by[col].ci_low < d.mean() < by[col].ci_high
        assert by[col].p == pytest.approx(sign_flip_pvalue(d))
    # Bicubic beats bilinear on all four photos: PSNR up, consistency (lower is better) down.
    assert by["psnr"].diff > 0 and by["psnr"].verdict == "B better"
    assert by["consistency"].diff < 0 and by["consistency"].verdict == "B better"
    # 4 pairs, all one sign: the exact sign-flip p is 2/16; Holm over 3 metrics multiplies the smallest by 3.
    assert by["psnr"].p == pytest.approx(2 / 16)
    assert by["psnr"].p_holm == pytest.approx(min(1.0, 3 * 2 / 16))


def test_incomparable_runs_are_refused_naming_what_differs(runs, tmp_path, capsys):
    basicsr = tmp_path / "basicsr"  # the spec of a --protocol basicsr run (tests/test_index.py runs one)
    shutil.copytree(runs["a"], basicsr)
    spec = yaml.safe_load((basicsr / "spec.yaml").read_text())
    spec.update(protocol="basicsr", y_channel=True, crop_border=2)
    (basicsr / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(NotComparableError, match="protocol: .* RGB, crop border 0; .* Y channel, crop border 2"):
        compare_runs(runs["a"], basicsr)
    # Different weights behind the same metric (by content) are refused too, naming the file.
    copies = {}
    for name, digest in (("a", "sha256:abcd"), ("weird", "sha256:0123")):
        copies[name] = tmp_path / name
        shutil.copytree(runs["a"], copies[name])
        m = json.loads((copies[name] / "manifest.json").read_text())
        m["metric_weights"] = {"lpips-alex": digest}
        (copies[name] / "manifest.json").write_text(json.dumps(m))
    a_copy, weird = copies["a"], copies["weird"]
    assert main(["compare", str(a_copy), str(weird)]) == 3
    err = capsys.readouterr().err
    assert "not comparable" in err and "metric weights lpips-alex" in err and "sha256:0123" in err
    # Another version of a wrapped metric library, and given LR images in place of our degradation.
    for key, value, says in (
        ("metric_versions", {"pyiqa:niqe": "0.1.15"}, "metric version pyiqa:niqe: .* used 0.1.16, .* used 0.1.15"),
        ("paired", True, "degradation: .* has bicubic; .* has given LR images"),
    ):
        other = tmp_path / key
        shutil.copytree(runs["a"], other)
        m = json.loads((other / "manifest.json").read_text())
        m[key] = value
        (other / "manifest.json").write_text(json.dumps(m))
        if key == "metric_versions":
            m = json.loads((a_copy / "manifest.json").read_text())
            m[key] = {"pyiqa:niqe": "0.1.16"}
            (a_copy / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(NotComparableError, match=says):
            compare_runs(a_copy, other)
    # Another degradation of the same HR images (--degradation realesrgan) is refused too.
    other = tmp_path / "realesrgan"
    shutil.copytree(runs["a"], other)
    spec = yaml.safe_load((other / "spec.yaml").read_text())
    spec["degradation"] = "realesrgan"
    (other / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(NotComparableError, match="degradation: .* has bicubic; .* has realesrgan"):
        compare_runs(a_copy, other)
    # Another scale is another task.
    m = json.loads((weird / "manifest.json").read_text())
    m["task"]["scale"], m["task"]["name"] = 4, "x4"
    (weird / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(NotComparableError, match="task: .* has x2; .* has x4"):
        compare_runs(runs["a"], weird)


def test_cli_writes_tables_and_a_gallery(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--method", "bilinear,lanczos", "--out", str(out),
                 "--gallery", "2"]) == 0
    text = capsys.readouterr().out
    assert "lanczos" in text and "B - A [95% CI]" in text
    table = pd.read_csv(out / "compare.csv")
    assert list(table["metric"]) == ["psnr", "ssim", "consistency"]
    assert (table["p_holm"] >= table["p"] - 1e-12).all()
    per = pd.read_csv(out / "compare_images.csv")
    assert len(per) == 3 and {"psnr_a", "psnr_b", "psnr_diff"} <= set(per.columns)
    html = (out / "compare.html").read_text()
    # The 2 image pairs whose PSNR changed most, each as HR, A and B.
    top = per.reindex(per["psnr_diff"].abs().sort_values(ascending=False).index)["image_id_a"][:2]
    assert html.count("<img ") == 6
    assert all(f"<b>{i}" in html for i in top)


def test_method_names_that_do_not_exist_are_named(runs):
    with pytest.raises(ValueError, match="has no method 'nearest'; it has bilinear, bicubic"):
        compare_runs(runs["a"], runs["b"], method="nearest,bicubic")


def test_bootstrap_interval_covers_95_percent():
    """Simulated paired differences (heavy-tailed, known mean): the 95% interval covers ~95% of the time,
    with Set5's 5 images and with 30."""
    rng = np.random.default_rng(7)
    for n, reps in ((5, 600), (30, 600)):
        hits = 0
        for r in range(reps):
            d = 0.3 + 0.5 * rng.standard_t(5, size=n)
            lo, hi = bootstrap_t_ci(d, 1000, seed=r)
            hits += lo <= 0.3 <= hi
        # Binomial SE at 600 replicates is 0.9 points: 91.5-98.5% is "about 95%" (1,500 replicates measured
        # 94-95% at n=5, 93% at n=30 for these heavy tails); the percentile bootstrap
        # (results.bootstrap_ci) covers ~84% at n=5 and fails this.
        assert 0.915 <= hits / reps <= 0.985, (n, hits / reps)


def test_sign_flip_pvalue_is_calibrated_and_has_power():
    rng = np.random.default_rng(3)
    null = np.array([sign_flip_pvalue(rng.standard_normal(10), seed=r) for r in range(200)])  # exact: 1024 flips
    mc = np.array([sign_flip_pvalue(rng.standard_normal(24), seed=r, n_resamples=499) for r in range(200)])
    for p in (null, mc):
        # Under the null, P(p <= a) ~ a (binomial SE at 200: 1.5 points at 0.05, 2.8 at 0.2).
        assert 0.01 <= (p <= 0.05).mean() <= 0.10
        assert 0.13 <= (p <= 0.2).mean() <= 0.28
    shifted = np.array([sign_flip_pvalue(1.0 + rng.standard_normal(10), seed=r) for r in range(50)])
    assert (shifted <= 0.05).mean() > 0.7


def test_holm_matches_the_textbook_steps():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.02, float("nan")])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1])


def test_metric_weights_are_recorded_by_content(tmp_path, monkeypatch):
    """What manifest.json's metric_weights holds: each checked weights file by content, reset per run."""
    from evalsuite.metrics.weights import ALLOW_ENV, SPECS, checked_weight, reset_used_weights, used_weights

    name = SPECS["lpips-alex"].entry.filename
    monkeypatch.setenv(ALLOW_ENV, "1")
    digests = []
    for i, payload in enumerate((b"one set of weights", b"another set")):
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / name).write_bytes(payload)
        monkeypatch.setenv("EVALSUITE_WEIGHTS", str(folder))
        reset_used_weights()
        assert not checked_weight("lpips-alex", "LPIPS").standard
        digests.append(used_weights()["lpips-alex"])
    assert digests[0] != digests[1] and all(d.startswith("sha256:") for d in digests)
    reset_used_weights()
    assert used_weights() == {}
