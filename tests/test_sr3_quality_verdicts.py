"""benchmarks/sr3_quality.py judges each check per image: the share of held-out images that pass, and the
worst decile by margin (a mean can hide a failure on a third of the images)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import torch

from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.pixel import DetailFidelity

spec = importlib.util.spec_from_file_location(
    "sr3_quality", Path(__file__).parents[1] / "benchmarks" / "sr3_quality.py"
)
Q = importlib.util.module_from_spec(spec)
spec.loader.exec_module(Q)


def _tables(n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"img{k}" for k in range(n)]
    sr3 = pd.DataFrame(
        {"consistency": 2.0, "colour_shift": 0.5, "detail": -1.0, "detail_fidelity": 0.3}, index=ids
    )
    reg = pd.DataFrame({"consistency": 1.0, "colour_shift": 0.2, "detail": -9.0, "detail_fidelity": 0.2}, index=ids)
    return sr3, reg


def _line(lines: list[str], name: str) -> tuple[str, str]:
    k = next(i for i, x in enumerate(lines) if x.startswith(name + ":"))
    return lines[k], lines[k + 1]


def test_every_check_passes_on_good_images():
    lines = Q.verdicts(*_tables())
    for name in ("consistency", "colour", "detail", "fidelity"):
        assert _line(lines, name)[0].endswith("100% of 10 images pass (bar 90%): PASS")
    assert any("LPIPS: not computed" in x for x in lines)


def test_a_failure_on_a_fifth_of_the_images_fails_although_the_mean_passes():
    sr3, reg = _tables()
    sr3.loc[["img3", "img7"], "detail"] = 9.0  # grain: far above the truth's detail on two images
    sr3.loc["img7", "detail_fidelity"] = 0.0
    assert sr3["detail"].mean() - reg["detail"].mean() >= 3 and sr3["detail"].mean() <= 3  # the mean would pass
    verdict, worst = _line(Q.verdicts(sr3, reg), "detail")
    assert "80% of 10 images pass" in verdict and verdict.endswith("FAIL")
    assert "img3" in worst or "img7" in worst
    verdict, worst = _line(Q.verdicts(sr3, reg), "fidelity")
    assert "90% of 10 images pass" in verdict and verdict.endswith("PASS") and "img7 (-0.06)" in worst


def test_one_bad_image_in_ten_still_passes_and_is_named():
    sr3, reg = _tables()
    sr3.loc["img5", "consistency"] = 5.0
    verdict, worst = _line(Q.verdicts(sr3, reg), "consistency")
    assert "90% of 10 images pass" in verdict and verdict.endswith("PASS") and "img5 (-2.00)" in worst


def test_the_ideal_sampler_bound_is_what_an_exact_posterior_sample_scores():
    # Synthetic HR bands H = m + r: regression outputs m, an exact posterior sample m + r' (r' a new draw).
    g = torch.Generator().manual_seed(0)
    metric = DetailFidelity(MetricContext(device=torch.device("cpu"), scale=4))
    lr = torch.zeros(1, 3, 32, 32)
    for a in (0.4, 1.0):
        f_reg, f_sample = [], []
        for _ in range(8):
            m, r, r2 = (0.05 * torch.randn(1, 1, 128, 128, generator=g).expand(1, 3, 128, 128) for _ in range(3))
            hr = 0.5 + a * m + r
            f_reg.append(metric.update(0.5 + a * m, hr, lr, ["x"])["detail_fidelity"].item())
            f_sample.append(metric.update(0.5 + a * m + r2, hr, lr, ["x"])["detail_fidelity"].item())
        predicted = Q.ideal_sampler_fidelity(pd.Series(f_reg)).mean()
        assert abs(sum(f_sample) / 8 - predicted) < 0.02
        assert predicted < sum(f_reg) / 8 - 0.1  # a perfect sampler scores well below a perfect regression


def test_given_checkpoints_are_judged_without_training(photos_dir, tmp_path, monkeypatch, capsys):
    """--sr3/--regression judge existing checkpoints (the shipped demo models) with the chosen sampler."""
    import sys

    demo = Path(__file__).parents[1] / "baselines" / "demo"
    train_dir = tmp_path / "unused"
    train_dir.mkdir()
    argv = ["sr3_quality.py", "--train-data", str(train_dir), "--eval-data", str(photos_dir),
            "--out", str(tmp_path / "q"), "--sr3", str(demo / "sr3-demo.safetensors"),
            "--regression", str(demo / "regression-demo.safetensors"), "--sampler", "ddim", "--sample-steps", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    Q.main()
    out = capsys.readouterr().out
    assert not (tmp_path / "q" / "sr3").exists() and not (tmp_path / "q" / "regression").exists()  # no training
    manifest = (tmp_path / "q" / "bench" / "manifest.json").read_text()
    assert '"ddim"' in manifest and '"steps": 2' in manifest
    for check in ("consistency", "colour", "detail", "fidelity"):
        assert any(line.startswith(f"{check}: ") and "of 4 images pass" in line for line in out.splitlines()), out


def test_fidelity_must_also_beat_bicubic_and_prefers_the_mean_over_samples():
    sr3, reg = _tables()
    bic = pd.DataFrame({"detail_fidelity": 0.05}, index=sr3.index)
    sr3.loc[["img2", "img4"], "detail_fidelity"] = 0.06  # above half the ideal (0.056) on its own ...
    bic.loc[["img2", "img4"], "detail_fidelity"] = 0.08  # ... but below what bicubic scores there
    assert _line(Q.verdicts(sr3, reg), "fidelity")[0].endswith("100% of 10 images pass (bar 90%): PASS")
    verdict, worst = _line(Q.verdicts(sr3, reg, bic), "fidelity")
    assert "80% of 10 images pass" in verdict and verdict.endswith("FAIL") and "img2 (-0.02)" in worst
    # With --samples K the mean over the samples is judged, not sample 0.
    sr3["detail_fidelity_samples_mean"] = sr3["detail_fidelity"]
    sr3.loc[["img2", "img4"], "detail_fidelity_samples_mean"] = 0.2
    assert _line(Q.verdicts(sr3, reg, bic), "fidelity")[0].endswith("100% of 10 images pass (bar 90%): PASS")


def test_unequal_training_budgets_are_named(tmp_path):
    from dataclasses import dataclass

    from baselines.checkpoint import save_checkpoint

    @dataclass(frozen=True)
    class Cfg:
        scale: int = 4

    def ckpt(name: str, step: int, batch: int, accum: int = 1) -> Path:
        extra = {"step": step, "train": {"batch_size": batch, "accum": accum}}
        return save_checkpoint(tmp_path / name, {"w": torch.zeros(1)}, "regression", Cfg(), extra=extra)

    sr3, reg = Q.training_budget(ckpt("a.safetensors", 12800, 16)), Q.training_budget(ckpt("b.safetensors", 6400, 16))
    assert (sr3, reg) == ((12800, 16), (6400, 16))
    note = Q.budget_note(sr3, reg)
    assert note.startswith("warning: unequal training budgets") and "12,800" in note and "6,400" in note
    # The budget is steps x the global batch (which accumulation splits, not multiplies): equal images, equal budget.
    assert Q.budget_note(sr3, Q.training_budget(ckpt("c.safetensors", 6400, 32, accum=2))) is None
    assert Q.budget_note(sr3, Q.training_budget(ckpt("e.safetensors", 12800, 16, accum=4))) is None
    assert Q.budget_note(sr3, Q.training_budget(ckpt("f.safetensors", 6400, 16, accum=2))) is not None
    # A file that does not say (no step recorded, or not a checkpoint of this project) gives no verdict on it.
    assert Q.training_budget(save_checkpoint(tmp_path / "d.safetensors", {"w": torch.zeros(1)}, "sr3", Cfg())) is None
    (tmp_path / "gen.pth").write_bytes(b"not safetensors")
    assert Q.training_budget(tmp_path / "gen.pth") is None
    assert Q.budget_note(sr3, None) is None


def test_the_recipe_passes_the_residual_and_its_base_to_sr3_only(tmp_path, monkeypatch):
    """SR3 gets --set residual=12 (and backproject=N; a later --set wins), regression neither; both get --width."""
    import argparse

    calls = []
    monkeypatch.setattr(Q, "evalsuite_main", lambda argv: calls.append(argv) or 0)
    base = dict(preset="tiny", crop=32, task=None, scale=4, steps=1, batch_size=2, warmup=0, ema=0.9, workers=0,
                device="cpu", residual=Q.RESIDUAL, backproject=Q.BACKPROJECT, set=None, width=0)

    def sets(kind: str, **changes) -> list[str]:
        Q.train(kind, argparse.Namespace(**{**base, **changes}), tmp_path, tmp_path / kind, 1e-3)
        argv = calls.pop()
        return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]

    assert sets("sr3") == ["residual=12"]  # the shipped recipe: the bicubic base
    assert sets("sr3", backproject=10) == ["residual=12", "backproject=10"]
    assert sets("sr3", backproject=10, set=["backproject=0"])[-1] == "backproject=0"
    assert sets("sr3", residual=0.0, backproject=10) == ["residual=0"]  # the image target has no residual base
    assert sets("regression", backproject=10) == []
    # --width N: the same widened U-Net for both models (an SR3 --set still comes after it and wins).
    assert sets("regression", width=32) == ["width=32"]
    assert sets("sr3", width=32, set=["width=16"]) == ["width=32", "residual=12", "width=16"]


def test_consistency_bar_never_asks_for_more_than_the_truth_s_own(tmp_path):
    """Where regression undercuts the HR image's own consistency (the LR's 8-bit rounding), HR's is the bar."""
    from PIL import Image

    from evalsuite.degrade import degrade, quantize, to_image

    sr3, reg = _tables()
    reg.loc["img2", "consistency"] = 0.05
    sr3.loc["img2", "consistency"] = 0.3  # 6x regression's, 2.3x the truth's
    sr3.loc["img4", "consistency"] = 0.3
    reg.loc["img4", "consistency"] = 0.05  # two such images: without the floor the check fails
    assert _line(Q.verdicts(sr3, reg), "consistency")[0].endswith("FAIL")
    floor = pd.Series(0.13, index=sr3.index)
    verdict, worst = _line(Q.verdicts(sr3, reg, hr_floor=floor), "consistency")
    assert verdict.endswith("100% of 10 images pass (bar 90%): PASS"), verdict
    assert "img2 (+0.69)" in worst or "img4 (+0.69)" in worst
    # The floor of a run: HR's own consistency against its stored (8-bit) LR, per image, x1e5.
    g = torch.Generator().manual_seed(0)
    for name in ("hr", "lr"):
        (tmp_path / name).mkdir()
    for k in range(2):
        hr = quantize(torch.rand(1, 3, 32, 32, generator=g))
        to_image(hr[0]).save(tmp_path / "hr" / f"im{k}.png")
        to_image(quantize(degrade(hr, 4))[0]).save(tmp_path / "lr" / f"im{k}.png")
    floors = Q.hr_consistency(tmp_path)
    assert list(floors.index) == ["im0", "im1"]
    # 8-bit rounding of the LR: about (1/255)^2 / 12 = 0.128 x1e-5 on average.
    assert 0.05 < floors.min() and floors.max() < 0.25
    Image.open(tmp_path / "lr" / "im1.png").save(tmp_path / "lr" / "im0.png")
    assert Q.hr_consistency(tmp_path)["im0"] > 100  # another image's LR is far above the rounding floor


def test_grey_images_must_stay_grey(tmp_path):
    from PIL import Image

    run = tmp_path / "bench"
    for d in ("hr", "outputs/m"):
        (run / d).mkdir(parents=True)
    rng = torch.Generator().manual_seed(0)
    grey = (torch.rand(16, 16, generator=rng) * 255).to(torch.uint8).numpy()
    Image.fromarray(grey).convert("RGB").save(run / "hr" / "g.png")
    colour = (torch.rand(16, 16, 3, generator=rng) * 255).to(torch.uint8).numpy()
    Image.fromarray(colour).save(run / "hr" / "c.png")
    tinted = grey[..., None].repeat(3, axis=2).astype(int)
    tinted[:, :, 0] = (tinted[:, :, 0] + 12).clip(0, 255)  # a red cast of 12 levels
    Image.fromarray(tinted.astype("uint8")).save(run / "outputs" / "m" / "g.png")
    Image.fromarray(colour).save(run / "outputs" / "m" / "c.png")
    spread = Q.grey_spreads(run, "m")
    assert pd.isna(spread["c"]) and spread["g"] == 12.0  # only grey HR images are judged
    sr3, reg = _tables(2)
    sr3.index = reg.index = ["c", "g"]
    sr3["grey_spread"] = spread
    verdict, worst = _line(Q.verdicts(sr3, reg), "grey")
    assert verdict.endswith("0% of 1 images pass (bar 90%): FAIL") and "g (-7.00)" in worst
    sr3["grey_spread"] = [float("nan"), 0.0]
    assert _line(Q.verdicts(sr3, reg), "grey")[0].endswith("100% of 1 images pass (bar 90%): PASS")


def test_a_share_just_under_the_bar_never_prints_as_the_bar():
    sr3, reg = _tables(96)
    sr3.iloc[:10, sr3.columns.get_loc("detail")] = 9.0  # 86 of 96 pass: 89.6%
    assert _line(Q.verdicts(sr3, reg), "detail")[0].endswith("89% of 96 images pass (bar 90%): FAIL")
