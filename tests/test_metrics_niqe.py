"""NIQE: our batched torch version equals BasicSR's (MATLAB-equal) calculate_niqe on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evalsuite.metrics.base import MetricContext, build_metric, metric_info
from evalsuite.metrics.weights import ALLOW_ENV, SPECS
from evalsuite.weights import MissingWeightsError, sha256_file

# scikit-image's bundled photos, cut to several sizes (none a multiple of the 96-px blocks).
PHOTOS = {"astronaut": (300, 410), "coffee": (400, 600), "chelsea": (300, 451), "camera": (512, 512)}


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    h, w = PHOTOS[name]
    return np.ascontiguousarray(img[:h, :w])


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float().div(255.0)[None]


@pytest.fixture()
def weights(monkeypatch, tmp_path):
    """An empty weights folder: NIQE copies the pristine parameters out of the installed basicsr wheel."""
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    return tmp_path


@pytest.mark.parametrize("crop_border", [0, 4])
def test_niqe_equals_basicsr_on_real_photos_of_several_sizes(weights, crop_border):
    pytest.importorskip("basicsr", reason="basicsr-fixed is the reference (make setup installs it)")
    from basicsr.metrics.niqe import calculate_niqe

    metric = build_metric("niqe", MetricContext(torch.device("cpu"), 4, crop_border=crop_border))
    params = weights / "niqe_pris_params.npz"
    assert sha256_file(params) == SPECS["niqe-pris-params"].sha256_prefix
    values = []
    for name in PHOTOS:
        img = _photo(name)
        ours = float(metric.update(_tensor(img), _tensor(img), _tensor(img), [name])["niqe"][0])
        # BasicSR reads BGR images in [0, 255].
        ref = calculate_niqe(img[..., ::-1].astype(np.float64), crop_border=crop_border)
        assert abs(ours - ref) < 1e-3, (name, ours, ref)
        values.append(ours)
    assert len(set(np.round(values, 3))) == len(values)  # the photos really differ


# Small crops (two to four 96-px blocks) where one AGGD grid step moves NIQE by 2e-3..1.6e-2: (photo, top, left,
# height, width, crop border). The first two needed BasicSR's float32 half-size resize bit for bit; the next two
# a moment ratio within float32 rounding of a grid cell's edge (the near-tie re-check); the last are larger.
CROPS = [
    ("rocket", 111, 159, 193, 257, 4),
    ("rocket", 0, 318, 250, 190, 0),
    ("astronaut", 148, 159, 193, 257, 4),
    ("astronaut", 0, 53, 250, 190, 4),
    ("coffee", 0, 0, 300, 400, 0),
    ("astronaut", 0, 0, 512, 384, 4),
]


def test_niqe_equals_basicsr_on_small_and_odd_sized_crops(weights):
    pytest.importorskip("basicsr", reason="basicsr-fixed is the reference (make setup installs it)")
    from basicsr.metrics.niqe import calculate_niqe
    from skimage import data

    metrics = {cb: build_metric("niqe", MetricContext(torch.device("cpu"), 4, crop_border=cb)) for cb in (0, 4)}
    for name, top, left, h, w, cb in CROPS:
        img = np.ascontiguousarray(getattr(data, name)()[top : top + h, left : left + w])
        assert img.shape[:2] == (h, w)
        ours = float(metrics[cb].score(_tensor(img))[0])
        ref = calculate_niqe(img[..., ::-1].astype(np.float64), crop_border=cb)
        assert abs(ours - ref) < 1e-3, (name, top, left, h, w, cb, ours, ref)


@pytest.mark.parametrize("shape", [(96, 192), (192, 288), (288, 480)])
def test_half_size_resize_is_basicsrs_bit_for_bit(shape):
    pytest.importorskip("basicsr", reason="basicsr-fixed is the reference (make setup installs it)")
    from basicsr.utils.matlab_functions import imresize

    from evalsuite.metrics.niqe import half_size

    rng = np.random.default_rng(sum(shape))
    y = [rng.integers(0, 256, shape).astype(np.float32) / np.float32(255.0) for _ in range(2)]
    ours = half_size(torch.from_numpy(np.stack(y)))
    for i in range(2):  # batched, each image equal to BasicSR's float32 imresize of it alone
        np.testing.assert_array_equal(ours[i].numpy(), imresize(y[i], scale=0.5, antialiasing=True))


def test_near_ties_take_the_reference_arithmetic(monkeypatch):
    from evalsuite.metrics import niqe

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 2304)).astype(np.float32))
    # Our ratios: each in its nearest grid cell, the margin no more than half the cell.
    ratio = torch.from_numpy(niqe._rnorm_numpy(x.numpy()))
    k, margin = niqe._nearest_on_grid(ratio)
    r = niqe._r_of_alpha(torch.device("cpu"))
    assert ((r[k] - ratio).abs() <= (r[k + 1] - ratio).abs()).all() and (margin >= 0).all()
    assert (margin <= (r[k + 1] - r[k - 1]) / 2).all()
    torch.testing.assert_close(niqe.aggd_fit(x)[0], niqe.ALPHA_GRID[k], rtol=0, atol=0)
    # Rows within NEAR_TIE of an edge (here: all) take the numpy ratio, the others keep ours.
    at_five = float(r[4800])  # the ratio of alpha = 5.0
    calls = []
    monkeypatch.setattr(niqe, "_rnorm_numpy", lambda rows: calls.append(len(rows)) or np.full(len(rows), at_five))
    monkeypatch.setattr(niqe, "NEAR_TIE", 1.0)
    assert (niqe.aggd_fit(x)[0] == 5.0).all() and calls == [64]
    monkeypatch.setattr(niqe, "NEAR_TIE", -1.0)
    assert (niqe.aggd_fit(x)[0] == niqe.ALPHA_GRID[k]).all() and calls == [64]


def test_niqe_batches_like_single_images_and_ranks_blur_worse(weights):
    from evalsuite.degrade import degrade, quantize, upsample

    metric = build_metric("niqe", MetricContext(torch.device("cpu"), 4))
    crops = torch.cat([_tensor(_photo("astronaut"))[..., :288, :384], _tensor(_photo("coffee"))[..., :288, :384]])
    batch = metric.update(crops, crops, crops, ["a", "b"])["niqe"]
    one = torch.cat([metric.update(c[None], c[None], c[None], ["x"])["niqe"] for c in crops])
    torch.testing.assert_close(batch, one, rtol=0, atol=1e-6)
    # A 4x bicubic round trip is less natural than the photo: higher NIQE.
    blurred = quantize(upsample(quantize(degrade(crops, 4)), 4))
    assert (metric.update(blurred, crops, crops, ["a", "b"])["niqe"] > batch + 1).all()


def test_niqe_too_small_images_fail_with_a_reason(weights):
    ctx = MetricContext(torch.device("cpu"), 4, crop_border=4)
    assert metric_info("niqe").min_size(ctx) == 96 + 8
    metric = build_metric("niqe", ctx)
    with pytest.raises(ValueError, match="NIQE needs at least two 96x96 blocks"):
        metric.update(torch.rand(1, 3, 90, 300), None, None, ["small"])
    # One block is not enough for the image's covariance either.
    with pytest.raises(ValueError, match=r"got an image of \(96, 96\)"):
        metric.update(torch.rand(1, 3, 104, 104), None, None, ["one block"])
    assert metric.update(torch.rand(1, 3, 104, 200), None, None, ["two blocks"])["niqe"].isfinite().all()


def test_niqe_refuses_other_parameters_under_the_standard_name(weights, monkeypatch):
    np.savez(weights / "niqe_pris_params.npz", mu_pris_param=np.zeros((1, 36)), cov_pris_param=np.eye(36),
             gaussian_window=np.ones((7, 7)) / 49)
    with pytest.raises(MissingWeightsError, match="not the official niqe_pris_params.npz"):
        build_metric("niqe", MetricContext(torch.device("cpu"), 4))
    # Without the file and without a basicsr wheel to copy it from, the error says what to install.
    (weights / "niqe_pris_params.npz").unlink()
    monkeypatch.setitem(
        __import__("evalsuite.metrics.weights", fromlist=["FROM_PACKAGES"]).FROM_PACKAGES,
        "niqe-pris-params",
        (("no-such-dist",), "basicsr/metrics/niqe_pris_params.npz"),
    )
    with pytest.raises(MissingWeightsError, match="basicsr-fixed") as err:
        build_metric("niqe", MetricContext(torch.device("cpu"), 4))
    assert "no-such-dist" in str(err.value)


def test_run_scores_outputs_and_the_hr_reference_row(weights, tmp_path):
    from PIL import Image

    import evalsuite
    from evalsuite.spec import BenchmarkSpec

    data = tmp_path / "data"
    data.mkdir()
    for name in ("coffee", "chelsea"):
        Image.fromarray(_photo(name)).save(data / f"{name}.png")
    spec = BenchmarkSpec(data=str(data), scale=4, methods=("bicubic",), metrics=("psnr", "niqe"),
                         out=str(tmp_path / "run"), device="cpu", workers=1, bootstrap=100, report=False)
    res = evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    rows = res.summary.set_index("method")
    # Bicubic outputs are less natural than the photos themselves.
    assert rows.loc["bicubic", "niqe"] > rows.loc["reference (HR)", "niqe"] + 1
    assert res.per_image["niqe"].notna().all()
    metric = build_metric("niqe", MetricContext(torch.device("cpu"), 4))
    hr = sorted((tmp_path / "run" / "hr").glob("*.png"))
    direct = [float(metric.score(_tensor(np.array(Image.open(p).convert("RGB"))))[0]) for p in hr]
    assert rows.loc["reference (HR)", "niqe"] == pytest.approx(np.mean(direct), abs=1e-9)


def test_report_shows_the_hr_row_as_a_reference_not_a_method(weights, tmp_path):
    from PIL import Image

    import evalsuite
    from evalsuite.spec import BenchmarkSpec

    data = tmp_path / "data"
    data.mkdir()
    for name in ("coffee", "chelsea"):
        Image.fromarray(_photo(name)).save(data / f"{name}.png")
    spec = BenchmarkSpec(data=str(data), scale=4, methods=("bicubic", "nearest"), metrics=("psnr", "niqe"),
                         out=str(tmp_path / "run"), device="cpu", workers=1, bootstrap=100)
    res = evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    assert "reference (HR)" in set(res.summary["method"]) and "NIQE of the 2 HR images" in res.summary["notes"].iloc[-1]
    html = (tmp_path / "run" / "report.html").read_text()
    # Two methods; the HR row only in the metric table (no outputs, timing, failures or worst images of its own),
    # never marked best even where its NIQE is the lowest, and quoted after the best method's headline.
    assert "2 methods: bicubic, nearest" in html
    assert html.count("reference (HR)") == 2  # the table row's attribute and its label
    assert html.count('<tr data-method="reference (HR)"><td><b>reference (HR)') == 1
    assert "failed on this image" not in html
    row = html[html.index('<tr data-method="reference (HR)">'):]
    assert " best" not in row[: row.index("</tr>")]
    assert "The HR images themselves:" in html
