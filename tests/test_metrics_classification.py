"""SR3 Table 3 protocol: crops and resizes, labels, and the full ResNet-50 path with a random network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.classification import Classification, hr_view, load_labels, lr_input
from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights


def test_crops_take_the_central_56_of_64_region():
    # HR 256x256: ones everywhere except the central 224x224 (= 56/64 of the side), which is zero.
    hr = torch.ones(1, 3, 256, 256)
    hr[..., 16:240, 16:240] = 0.0
    x_lr = lr_input(hr)
    assert x_lr.shape == (1, 3, 64, 64)
    assert x_lr.abs().max() == 0  # the border band is cropped away exactly
    view = hr_view(hr)
    assert view.shape == (1, 3, 224, 224) and view.abs().max() == 0
    # One pixel more of border leaks in: the crop is exactly that size.
    hr2 = torch.ones(1, 3, 256, 256)
    hr2[..., 20:236, 20:236] = 0.0
    assert lr_input(hr2).max() > 0.1


def test_lr_input_is_area_then_crop_then_bicubic_to_64():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 300, 256, generator=g)  # not square: the central square is used
    sq = hr[..., 22:278, :]
    base = F.avg_pool2d(sq, 4)  # area resize 256 -> 64
    crop = base[..., 4:60, 4:60]
    expected = F.interpolate(crop, size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    expected = torch.round(expected * 255) / 255
    torch.testing.assert_close(lr_input(hr), expected, atol=1 / 255 + 1e-6, rtol=0)
    # A 64x64 HR image is used as it is.
    small = torch.rand(1, 3, 64, 64, generator=g)
    ref = F.interpolate(small[..., 4:60, 4:60], size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(lr_input(small), torch.round(ref * 255) / 255)


def test_labels_from_csv_and_folders(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,label\na,3\nb,999\n")
    assert load_labels(str(csv), ["a", "b"])[0] == {"a": 3, "b": 999}
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,label\na,cat\n")
    with pytest.raises(ValueError, match="line 2"):
        load_labels(str(bad), ["a"])
    with pytest.raises(ValueError, match="image_id,label"):
        (tmp_path / "nohead.csv").write_text("a,1\n")
        load_labels(str(tmp_path / "nohead.csv"), ["a"])
    assert load_labels("folders", ["7__x", "12__y"])[0] == {"7__x": 7, "12__y": 12}
    with pytest.raises(ValueError, match="all 1000 ImageNet classes"):
        load_labels("folders", ["n01440764__a", "n01443537__b"])
    with pytest.raises(ValueError, match="not inside a class folder"):
        load_labels("folders", ["loose"])


class _Bicubic4x:
    """A 4x method for the protocol."""

    scale = 4

    def __call__(self, x_lr: torch.Tensor, ids=None) -> torch.Tensor:
        return F.interpolate(x_lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def resnet_folder(tmp_path_factory) -> Path:
    """A randomly initialized torchvision ResNet-50 saved under its official file name."""
    folder = tmp_path_factory.mktemp("weights")
    write_random_weights("resnet50", folder / SPECS["resnet50"].entry.filename)
    return folder


@pytest.fixture()
def resnet(resnet_folder, monkeypatch) -> Path:
    folder = resnet_folder
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(folder))
    monkeypatch.setenv(ALLOW_ENV, "1")
    return folder


def _hr_folder(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"img{k}" for k in range(n)]
    for i in ids:
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return ids


def test_full_path_errors_follow_the_predictions(resnet, tmp_path):
    ids = _hr_folder(tmp_path / "hr", 3)
    metric = Classification(MetricContext(torch.device("cpu"), 4, options={"labels": str(tmp_path / "l.csv")}))
    metric.evaluate(_Bicubic4x(), ids, tmp_path / "hr")
    top5 = metric.top5
    assert sorted(top5) == ids and all(len(p) == 5 for p in top5.values())
    # Labels: right at top-1, right only within top-5, wrong.
    wrong = next(c for c in range(1000) if c not in top5["img2"])
    (tmp_path / "l.csv").write_text(f"image_id,label\nimg0,{top5['img0'][0]}\nimg1,{top5['img1'][4]}\nimg2,{wrong}\n")
    out = metric.compute()
    assert out["top1_error"].value == pytest.approx(2 / 3)
    assert out["top5_error"].value == pytest.approx(1 / 3)
    assert "3 labelled images" in out["top1_error"].note and "NON-STANDARD" in out["top1_error"].note
    # The predictions are those of the protocol's pipeline on the method's output.
    with Image.open(tmp_path / "hr" / "img0.png") as im:
        hr = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255
    sr = torch.round(_Bicubic4x()(lr_input(hr)) * 255) / 255
    assert metric.classify(sr)[0].tolist() == top5["img0"]
    ref = metric.reference(ids, tmp_path / "hr")
    assert 0.0 <= ref["top1_error"].value <= 1.0
    # The reference row scores the HR images' own 56/64 view against the same labels.
    labels = {"img0": top5["img0"][0], "img1": top5["img1"][4], "img2": wrong}
    hr_top5 = {}
    for i in ids:
        with Image.open(tmp_path / "hr" / f"{i}.png") as im:
            x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255
        hr_top5[i] = metric.classify(hr_view(x))[0].tolist()
    assert ref["top1_error"].value == pytest.approx(np.mean([hr_top5[i][0] != labels[i] for i in ids]))
    assert ref["top5_error"].value == pytest.approx(np.mean([labels[i] not in hr_top5[i] for i in ids]))


def test_no_labels_and_wrong_scale_are_notes_not_numbers(resnet, tmp_path):
    ids = _hr_folder(tmp_path / "hr", 1)
    metric = Classification(MetricContext(torch.device("cpu"), 4))
    metric.evaluate(_Bicubic4x(), ids, tmp_path / "hr")
    out = metric.compute()
    assert out["top1_error"].value is None and "no labels" in out["top1_error"].note

    class _Two(_Bicubic4x):
        scale = 2

    other = Classification(MetricContext(torch.device("cpu"), 2, options={"labels": "folders"}))
    other.evaluate(_Two(), ids, tmp_path / "hr")
    assert "needs a 4x method" in other.compute()["top1_error"].note
    # A method that does not say its scale is refused the same way (not an AttributeError).
    unscaled = Classification(MetricContext(torch.device("cpu"), 4, options={"labels": "folders"}))
    unscaled.evaluate(lambda x_lr, ids=None: x_lr, ids, tmp_path / "hr")
    assert "needs a 4x method" in unscaled.compute()["top1_error"].note


def test_runner_fills_classification_and_the_reference_row(resnet, tmp_path):
    import evalsuite.runner as runner
    from evalsuite.spec import BenchmarkSpec

    data = tmp_path / "data"
    ids = _hr_folder(data, 2)
    (tmp_path / "l.csv").write_text("image_id,label\n" + "".join(f"{i},{k}\n" for k, i in enumerate(ids)))
    spec = BenchmarkSpec(data=str(data), methods=["bicubic"], metrics=["psnr", "classification"],
                         out=str(tmp_path / "run"), metric_options={"labels": str(tmp_path / "l.csv")},
                         report=False)
    res = runner.run(spec, log=lambda *a, **k: None, progress=False)
    rows = res.summary.set_index("method")
    assert list(rows.index) == ["bicubic", "reference (HR)"]
    for m in rows.index:
        assert rows.loc[m, "top1_error"] in (0.0, 0.5, 1.0)
        assert 0.0 <= rows.loc[m, "top5_error"] <= 1.0
