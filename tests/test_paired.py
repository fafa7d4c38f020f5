"""Paired data (--lr): matching by id, BasicSR's HR crop, one-sided ids listed, the scale inferred; the flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite.cli import build_parser, spec_from_args
from evalsuite.datasets import infer_pair_scale, resolve_inputs, scan_pairs
from evalsuite.prepare import PreparedImages
from evalsuite.spec import BenchmarkSpec
from evalsuite.tasks import resolve_task


def _img(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _arr(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _pair(hr_dir: Path, lr_dir: Path, hr_name: str, lr_name: str, size: tuple[int, int], scale: int, seed: int):
    """An HR image and an LR made by PIL's bicubic (not our degradation) from its scale-multiple crop."""
    hr = _img(*size, seed)
    (hr_dir / hr_name).parent.mkdir(parents=True, exist_ok=True)
    (lr_dir / lr_name).parent.mkdir(parents=True, exist_ok=True)
    hr.save(hr_dir / hr_name)
    lw, lh = size[0] // scale, size[1] // scale
    lr = hr.crop((0, 0, lw * scale, lh * scale)).resize((lw, lh), Image.BICUBIC)
    lr.save(lr_dir / lr_name)
    return hr, lr


def test_div2k_layout_pairs_crop_and_one_sided_ids(tmp_path: Path) -> None:
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR_x2"
    hr_dir.mkdir()
    lr_dir.mkdir()
    # DIV2K names: 0801.png <- 0801x2.png; an odd-sized HR is cropped to 2 x LR from the top-left corner.
    hr1, lr1 = _pair(hr_dir, lr_dir, "0801.png", "0801x2.png", (41, 33), 2, 0)
    hr2, lr2 = _pair(hr_dir, lr_dir, "sub/0802.png", "sub/0802.jpg", (40, 32), 2, 1)  # extension-agnostic
    _img(40, 32, 2).save(hr_dir / "0803.png")  # HR only
    _img(20, 16, 3).save(lr_dir / "0900x2.png")  # LR only
    assert infer_pair_scale(hr_dir, lr_dir) == 2
    prep = PreparedImages(tmp_path / "run", resolve_task(None, 2), hr_dir, lr_dir)
    ids, errors, index = prep.prepare(None, 2, lambda *a: None)
    assert ids == ["0801", "sub__0802"] and prep.paired and index["paired"] is True
    reasons = {Path(e["path"]).name: e["reason"] for e in errors}
    assert set(reasons) == {"0803.png", "0900x2.png"}
    assert "no LR image" in reasons["0803.png"] and "no HR image" in reasons["0900x2.png"]
    # Methods see the given LR exactly; HR = the top-left 2 x LR crop (BasicSR).
    assert np.array_equal(_arr(prep.lr_dir / "0801.png"), np.asarray(lr1))
    assert np.array_equal(_arr(prep.hr_dir / "0801.png"), np.asarray(hr1)[:32, :40])
    with Image.open(tmp_path / "LR_x2" / "sub" / "0802.jpg") as im:
        assert np.array_equal(_arr(prep.lr_dir / "sub__0802.png"), np.asarray(im.convert("RGB")))
    assert index["images"]["0801"]["lr_path"].endswith("0801x2.png") and index["images"]["0801"]["size"] == [40, 32]
    # A rerun with the same files decodes nothing new; a changed LR remakes that image only.
    _img(20, 16, 9).save(lr_dir / "0801x2.png")
    ids2, _, _ = prep.prepare(None, 2, lambda *a: None)
    assert ids2 == ids and np.array_equal(_arr(prep.lr_dir / "0801.png"), np.asarray(_img(20, 16, 9)))


def test_bad_pairs_are_rows_not_failures(tmp_path: Path) -> None:
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    _pair(hr_dir, lr_dir, "good.png", "good.png", (48, 48), 4, 0)
    _img(48, 48, 1).save(hr_dir / "wrong_scale.png")
    _img(24, 24, 1).save(lr_dir / "wrong_scale.png")  # x2, in an x4 set
    _img(48, 48, 2).save(hr_dir / "bad_lr.png")
    (lr_dir / "bad_lr.png").write_text("not an image")
    _img(48, 48, 3).save(hr_dir / "twice.png")
    _img(12, 12, 3).save(lr_dir / "twice.png")
    _img(12, 12, 3).save(lr_dir / "twice.jpg")
    prep = PreparedImages(tmp_path / "run", resolve_task(None, 4), hr_dir, lr_dir)
    ids, errors, _ = prep.prepare(None, 1, lambda *a: None, min_hr_size=11)
    assert ids == ["good"]
    reasons = " | ".join(f"{Path(e['path']).name}: {e['reason']}" for e in errors)
    assert "wrong_scale.png: HR is 48x48 but LR wrong_scale.png is 24x24" in reasons
    assert "bad_lr.png: LR image" in reasons and "not an image" in reasons
    assert "two LR files share the name 'twice'" in reasons


def test_scale_inference_and_paper_tasks(tmp_path: Path) -> None:
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    _pair(hr_dir, lr_dir, "a.png", "a.png", (128, 128), 8, 0)
    _pair(hr_dir, lr_dir, "b.png", "b.png", (130, 129), 8, 1)
    data_dir, lr, task = resolve_inputs(hr_dir, lr_dir, None, None, "imagenet-64-256")
    assert task.scale == 8 and not task.fixed_size and lr == lr_dir
    # A paper task fixes the LR size: 16x16 for faces-16-128.
    prep = PreparedImages(tmp_path / "run", resolve_task("faces-16-128"), hr_dir, lr_dir)
    ids, errors, _ = prep.prepare(None, 1, lambda *a: None)
    assert ids == ["a", "b"] and errors == []
    assert _arr(prep.hr_dir / "b.png").shape == (128, 128, 3)
    _img(20, 20, 2).save(lr_dir / "c.png")
    _img(160, 160, 2).save(hr_dir / "c.png")
    ids, errors, _ = prep.prepare(None, 1, lambda *a: None)
    assert ids == ["a", "b"] and "takes LR images of 16x16" in errors[0]["reason"]
    # Mixed scales: one clear error naming both.
    _pair(hr_dir, lr_dir, "d.png", "d.png", (60, 60), 3, 3)
    with pytest.raises(ValueError, match=r"one integer scale.*x3 \(e\.g\. d\).*x8 \(e\.g\. a\)"):
        infer_pair_scale(hr_dir, lr_dir)
    with pytest.raises(ValueError, match="no LR image under"):
        infer_pair_scale(hr_dir, tmp_path)


def test_pairs_match_subfolders_and_scale_tags(tmp_path: Path) -> None:
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    for name in ("x/a.png", "x/b.png", "img_001.png"):
        (hr_dir / name).parent.mkdir(parents=True, exist_ok=True)
        _img(8, 8, 0).save(hr_dir / name)
    for name in ("x/a_x2.png", "y/b.png", "img_001_SRF_2_LR.png"):
        (lr_dir / name).parent.mkdir(parents=True, exist_ok=True)
        _img(4, 4, 0).save(lr_dir / name)
    scan = scan_pairs(hr_dir, lr_dir)
    assert [(r.image_id, p.relative_to(lr_dir).as_posix()) for r, p in scan.pairs] == [
        ("img_001", "img_001_SRF_2_LR.png"),
        ("x__a", "x/a_x2.png"),
    ]
    assert {p.relative_to(tmp_path).as_posix() for p, _ in scan.problems} == {"hr/x/b.png", "lr/y/b.png"}


def test_lr_and_protocol_flags_reach_the_spec(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["run", "benchmark", "--data", "set5", "--lr", "set5", "--scale", "4", "--protocol", "basicsr"]
    )
    spec = spec_from_args(args)
    assert (spec.data, spec.lr, spec.protocol, spec.scale) == ("set5", "set5", "basicsr", 4)
    assert spec.with_protocol(4).y_channel is True and spec.with_protocol(4).crop_border == 4
    assert BenchmarkSpec().with_protocol(4) == BenchmarkSpec()  # no protocol: nothing changes
    with pytest.raises(ValueError, match="sets --crop-border 4"):
        spec.replace(crop_border=2).with_protocol(4)
    with pytest.raises(ValueError, match="--protocol must be one of basicsr"):
        BenchmarkSpec(protocol="matlab")
    cfg = tmp_path / "spec.yaml"
    cfg.write_text("lr: /some/lr\nprotocol: basicsr\n")
    assert BenchmarkSpec.from_yaml(cfg).lr == "/some/lr"
    assert BenchmarkSpec.from_yaml(cfg).to_dict()["protocol"] == "basicsr"


def test_a_paired_run_end_to_end_says_what_consistency_means(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from evalsuite import cli

    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    for k in range(3):
        _pair(hr_dir, lr_dir, f"{k:04d}.png", f"{k:04d}x2.png", (49, 37), 2, 10 + k)
    _img(40, 32, 99).save(hr_dir / "lonely.png")  # no LR: listed, not fatal
    out = tmp_path / "run"
    argv = ["run", "benchmark", "--data", str(hr_dir), "--lr", str(lr_dir), "--methods", "bicubic",
            "--metrics", "psnr,ssim,consistency", "--protocol", "basicsr", "--out", str(out), "--no-report"]
    assert cli.main(argv) == 0
    # The scale came from the sizes; methods saw the given LR; HR was cropped top-left to 2 x LR.
    lr_seen = _arr(out / "lr" / "0000.png")
    assert np.array_equal(lr_seen, _arr(lr_dir / "0000x2.png")) and lr_seen.shape[:2] == (18, 24)
    assert _arr(out / "hr" / "0000.png").shape[:2] == (36, 48)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["n_images"].tolist() == [3]
    assert "not made by our degradation" in summary["notes"].iloc[0]
    assert np.isfinite(summary["consistency"].iloc[0]) and summary["consistency"].iloc[0] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["paired"] and manifest["task"]["scale"] == 2
    spec = BenchmarkSpec.from_yaml(out / "spec.yaml")
    assert spec.y_channel and spec.crop_border == 2  # --protocol basicsr at the inferred scale
    assert "lonely" in pd.read_csv(out / "errors.csv")["path"].iloc[0]


def test_uniform_non_integer_ratio_is_named_as_such(tmp_path: Path) -> None:
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    hr_dir.mkdir()
    lr_dir.mkdir()
    # Every pair at 3.5x (HR 70/63 px, LR 20/18 px): rounding would call them x4 and x3.
    for i, (hw, lw) in enumerate([(70, 20), (63, 18), (56, 16)]):
        _img(hw, hw, i).save(hr_dir / f"p{i}.png")
        _img(lw, lw, 10 + i).save(lr_dir / f"p{i}.png")
    with pytest.raises(ValueError, match=r"ratio of 3\.50 \(e\.g\. p0\): not an integer scale") as err:
        infer_pair_scale(hr_dir, lr_dir)
    assert "x3" not in str(err.value) and "x4" not in str(err.value)
    # One integer pair among them: both kinds are named.
    _img(40, 40, 5).save(hr_dir / "q.png")
    _img(10, 10, 6).save(lr_dir / "q.png")
    with pytest.raises(ValueError, match=r"found: x4 \(e\.g\. q\), a non-integer ratio 3\.50 \(e\.g\. p0\)"):
        infer_pair_scale(hr_dir, lr_dir)
