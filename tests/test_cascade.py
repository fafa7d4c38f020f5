"""Cascaded generation end to end on CPU: a tiny 16 px base and a tiny 16->64 SR3 stage trained on face crops
(tests/data/faces64: public-domain dlib examples, see its MANIFEST.csv), the cascade run through the CLI, its
levels, caching and resume, consistency, FID/KID with random Inception weights, and the report in Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from baselines.cascade import CascadeSpec, run_cascade
from baselines.ddpm import load_ddpm
from baselines.sr3.method import build_sr3
from baselines.train import load_recipe, train
from baselines.train_config import TrainConfig
from evalsuite import cli
from evalsuite.degrade import degrade, to_tensor
from evalsuite.methods import MethodContext
from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights

FACES = Path(__file__).parent / "data" / "faces64"
CHROMIUM = Path("/usr/bin/chromium")


def _train(kind: str, out: Path, crop: int, scale: int, steps: int, batch: int, **options) -> Path:
    cfg = TrainConfig(
        data=str(FACES), out=str(out), scale=scale, crop=crop, batch_size=batch, steps=steps, warmup=10, lr=2e-3,
        save_every=10**6, log_every=10, workers=0, progress=False, ema_decay=0.99,
    )
    return train(load_recipe(kind, cfg, {"preset": "tiny", **options}), cfg, log=lambda s: None).checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """A 16 px base (whole 64 px faces downscaled x4) and a 16->64 SR3 stage (32 px crops), a few dozen steps."""
    tmp = tmp_path_factory.mktemp("cascade-models")
    base = _train("ddpm", tmp / "base", crop=64, scale=4, steps=30, batch=8)
    sr = _train("sr3", tmp / "sr", crop=32, scale=4, steps=30, batch=4, parameterization="x0")
    return base, sr


@pytest.fixture()
def random_inception(tmp_path, monkeypatch) -> None:
    """FID/KID with a small randomly initialized clean-fid network, allowed by the non-standard flag."""
    folder = tmp_path / "weights"
    folder.mkdir()
    write_random_weights("inception-fid", folder / SPECS["inception-fid"].entry.filename, small=True)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(folder))
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(ALLOW_ENV, "1")


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_cascade_end_to_end_levels_resume_consistency_and_fid(models, random_inception, tmp_path, capsys):
    base_ckpt, sr_ckpt = models
    run = tmp_path / "run"
    argv = [
        "run", "cascade", "--base", f"ddpm:{base_ckpt}", "--stages", f"sr3:{sr_ckpt}", "--n", "4", "--steps", "4",
        "--fid-ref", str(FACES), "--batch-size", "4", "--out", str(run),
    ]
    assert cli.main(argv) == 0
    # Every level kept, at its resolution; the base images are the base's own samples (per-sample seeds).
    base_pngs = sorted((run / "levels" / "base").glob("*.png"))
    sr_pngs = sorted((run / "levels" / "stage1").glob("*.png"))
    assert [p.stem for p in base_pngs] == [f"{k:06d}" for k in range(4)] == [p.stem for p in sr_pngs]
    assert Image.open(base_pngs[0]).size == (16, 16) and Image.open(sr_pngs[0]).size == (64, 64)
    base = load_ddpm(base_ckpt, steps=4)
    again = (base.sample(["000003"])[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(again - _png(base_pngs[3])).max() <= 1
    # The summary: one row per level, FID/KID against the reference at each level's size, IS noted not faked.
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["level"]) == ["base", "stage1"] and list(summary["resolution"]) == ["16x16", "64x64"]
    assert summary["fid"].notna().all() and (summary["fid"] > 0).all() and summary["kid"].notna().all()
    assert summary["is"].isna().all() and "is: not computed" in summary["notes"].iloc[0]
    assert {p.name for p in (run / "reference").iterdir()} == {"16x16", "64x64"}
    assert "non-standard" in summary["notes"].iloc[1].lower() or "random" in summary["notes"].iloc[1].lower()
    # Consistency of the stage with its own input, recomputed here from the files.
    per_image = pd.read_csv(run / "per_image.csv", dtype={"image_id": str})
    out = to_tensor(Image.open(sr_pngs[2]).convert("RGB"))[None]
    inp = to_tensor(Image.open(base_pngs[2]).convert("RGB"))[None]
    expected = float((degrade(out, 4) - inp).pow(2).mean()) * 1e5
    assert per_image.loc[2, "consistency_stage1"] == pytest.approx(expected, rel=1e-4)
    assert summary.loc[1, "consistency"] == pytest.approx(per_image["consistency_stage1"].mean(), rel=1e-6)
    # ... and near the stage's own consistency on downsampled real faces (same sampler settings).
    # (30 training steps: the base's samples are still noisy, which the stage cannot reproduce, hence the wide
    # band; the slow test below trains longer and asks for a factor 2.)
    faces = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sorted(FACES.glob("*.png"))[:4]])
    x_lr = degrade(faces, 4)
    sr = build_sr3(str(sr_ckpt), MethodContext(4, options={"steps": 4}))(x_lr, [str(k) for k in range(4)])
    own = float((degrade(sr, 4) - x_lr).pow(2).mean()) * 1e5
    assert own / 20 < summary.loc[1, "consistency"] < own * 20, (own, summary.loc[1, "consistency"])
    # Resume: a rerun reuses every image; a lost image is remade alone, identical; a new stage setting remakes it.
    mtimes = {p: p.stat().st_mtime_ns for p in base_pngs + sr_pngs}
    before, first = _png(sr_pngs[3]), _png(sr_pngs[0])
    sr_pngs[3].unlink()
    capsys.readouterr()
    assert cli.main(argv) == 0
    log = capsys.readouterr().out
    assert "base: all 4 image(s) reused" in log and "stage1: made 1 image(s), reused 3" in log
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p != sr_pngs[3])
    assert np.abs(_png(sr_pngs[3]) - before).max() <= 1
    (run / "report.html").unlink()
    assert cli.main([*argv[:-2], "--seed", "1", "--out", str(run), "--no-report"]) == 0
    assert "remade" in capsys.readouterr().out
    assert np.abs(_png(sr_pngs[0]) - first).max() > 10 and not (run / "report.html").exists()
    # `evalsuite report RUN` writes a cascade run's own report.
    assert cli.main(["report", str(run)]) == 0 and 'id="cascade-grid"' in (run / "report.html").read_text()


def test_on_downsampled_faces_the_cascade_consistency_is_the_stage_own(models, tmp_path):
    # A folder base of downsampled real faces: the cascade's stage output and consistency are exactly what
    # the stage gives on those inputs (up to the 8-bit PNG of the output).
    _, sr_ckpt = models
    folder = tmp_path / "lr"
    folder.mkdir()
    faces = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sorted(FACES.glob("*.png"))[:3]])
    for k, x in enumerate(degrade(faces, 4)):
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"f{k}.png")
    summary = run_cascade(CascadeSpec(base=f"folder:{folder}", stages=(f"sr3:{sr_ckpt}",), out=str(tmp_path / "run"),
                                      n=3, steps=4, metrics=(), report=False), log=lambda s: None)
    x_lr = torch.stack([to_tensor(Image.open(folder / f"f{k}.png").convert("RGB")) for k in range(3)])
    sr = build_sr3(str(sr_ckpt), MethodContext(4, options={"steps": 4}))(x_lr, [f"{k:06d}@s1" for k in range(3)])
    saved = torch.stack([to_tensor(Image.open(tmp_path / "run" / "levels" / "stage1" / f"{k:06d}.png"))
                         for k in range(3)])
    assert (saved - sr).abs().max() <= 1 / 255 + 1e-6
    own = float((degrade(sr, 4) - x_lr).pow(2).mean(dim=(1, 2, 3)).mean()) * 1e5
    assert summary.loc[1, "consistency"] == pytest.approx(own, rel=0.02, abs=0.5)


def test_folder_base_and_clear_errors(models, tmp_path):
    _, sr_ckpt = models
    folder = tmp_path / "samples"
    folder.mkdir()
    for k, p in enumerate(sorted(FACES.glob("*.png"))[:3]):
        Image.open(p).convert("RGB").resize((16, 16), Image.BICUBIC).save(folder / f"s{k}.png")
    summary = run_cascade(
        CascadeSpec(base=f"folder:{folder}", stages=(f"sr3:{sr_ckpt}", "bicubic@2"), out=str(tmp_path / "run"),
                    n=10, steps=4, metrics=("fid",), report=False),
        log=lambda s: None,
    )
    assert list(summary["resolution"]) == ["16x16", "64x64", "128x128"] and list(summary["n_images"]) == [3, 3, 3]
    assert summary["fid"].isna().all()  # no --fid-ref: left empty
    with pytest.raises(ValueError, match="ddpm:CKPT"):
        CascadeSpec(base="sr3:x", stages=(), out="o")
    with pytest.raises(ValueError, match="bicubic@S"):
        run_cascade(CascadeSpec(base=f"folder:{folder}", stages=("bicubic",), out=str(tmp_path / "r2")),
                    log=lambda s: None)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (bash scripts/setup-system.sh)")
def test_cascade_report_renders_in_headless_chromium(models, tmp_path):
    from playwright.sync_api import sync_playwright

    base_ckpt, sr_ckpt = models
    run = tmp_path / "run"
    run_cascade(CascadeSpec(base=f"ddpm:{base_ckpt}", stages=(f"sr3:{sr_ckpt}",), out=str(run), n=3, steps=4,
                            metrics=()), log=lambda s: None)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(r.url))
            page.goto((run / "report.html").resolve().as_uri())
            page.wait_for_load_state("load")
            loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            assert loaded == [True] * 6  # 3 samples x (base | stage1)
            assert page.locator("#cascade-metrics tbody tr").count() == 2
            widths = page.evaluate("Array.from(document.images).map(i => i.getBoundingClientRect().width)")
            assert set(widths) == {160}
            artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "cascade-report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []


@pytest.mark.slow
def test_longer_cascade_consistency_tracks_the_stage(tmp_path):
    # A few hundred steps each (about 2 minutes on one CPU core): the stage's consistency on generated inputs
    # stays within a factor 10 of its consistency on downsampled real faces (measured: 317 vs 66; the tiny
    # base's samples are still off the faces' distribution, which is what conditioning augmentation is for).
    base = _train("ddpm", tmp_path / "base", crop=64, scale=4, steps=300, batch=8)
    sr = _train("sr3", tmp_path / "sr", crop=32, scale=4, steps=300, batch=4, parameterization="x0")
    summary = run_cascade(CascadeSpec(base=f"ddpm:{base}", stages=(f"sr3:{sr}",), out=str(tmp_path / "run"), n=8,
                                      steps=20, metrics=(), report=False), log=lambda s: None)
    faces = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sorted(FACES.glob("*.png"))[:8]])
    x_lr = degrade(faces, 4)
    out = build_sr3(str(sr), MethodContext(4, options={"steps": 20}))(x_lr, [str(k) for k in range(8)])
    own = float((degrade(out, 4) - x_lr).pow(2).mean()) * 1e5
    assert own / 10 < summary.loc[1, "consistency"] < own * 10
    assert os.path.exists(tmp_path / "run" / "per_image.csv")


def test_benchmark_on_generated_lr_has_no_hr(models, tmp_path, capsys):
    base_ckpt, sr_ckpt = models
    run = tmp_path / "bench"
    argv = ["run", "benchmark", "--lr-source", f"cascade:ddpm:{base_ckpt}", "--scale", "4", "--limit", "3",
            "--methods", f"bicubic,sr3:{sr_ckpt}", "--steps", "4", "--out", str(run)]
    # A metric that needs HR is refused up front, naming the ones that apply.
    assert cli.main([*argv, "--metrics", "psnr,consistency"]) == 2
    assert "psnr cannot be computed" in capsys.readouterr().err
    assert cli.main([*argv, "--metrics", "consistency"]) == 0
    # The LR every method saw is the base's sample for that id (the same as a cascade's base level).
    lr = sorted((run / "lr").glob("*.png"))
    assert [p.stem for p in lr] == ["000000", "000001", "000002"]
    sample = (load_ddpm(base_ckpt, steps=4).sample(["000001"])[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(sample - _png(lr[1])).max() <= 1
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["method"]) == ["bicubic", "sr3-model"]  # no HR reference row
    assert summary["notes"].str.contains("no HR exists").all()
    per = pd.read_csv(run / "per_image.csv")
    out = to_tensor(Image.open(run / "outputs" / "bicubic" / "000001.png").convert("RGB"))[None]
    expected = float((degrade(out, 4) - to_tensor(Image.open(lr[1]).convert("RGB"))[None]).pow(2).mean()) * 1e5
    got = per[(per["method"] == "bicubic") & (per["image_id"].astype(str).str.zfill(6) == "000001")]["consistency"]
    assert float(got.iloc[0]) == pytest.approx(expected, rel=1e-3)
    html = (run / "report.html").read_text()
    assert "no HR exists" in html and '"HR reference"' not in html and ">HR reference<" not in html
