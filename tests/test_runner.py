"""The evaluation engine end to end: run folder, broken inputs, caching, kill and resume, failures, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import evalsuite
from evalsuite import cli
from evalsuite.runner import NoUsableImagesError
from evalsuite.spec import BenchmarkSpec

TESTS = Path(__file__).parent
PIXEL = ["psnr", "ssim", "consistency"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["EVALSUITE_PLUGINS"] = "plugins_testmethods"
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import plugins_testmethods  # noqa: F401  (registers the test methods)


@pytest.fixture()
def mixed_dir(photos_dir, tmp_path) -> Path:
    """Real photos plus broken files next to them."""
    d = tmp_path / "data"
    shutil.copytree(photos_dir, d)
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("not an image")
    raw = (photos_dir / "astronaut.png").read_bytes()
    (d / "cut.png").write_bytes(raw[: len(raw) // 3])
    Image.new("RGB", (2, 2)).save(d / "tiny.png")
    return d


def _spec(data, out, **kw) -> BenchmarkSpec:
    base = dict(
        data=str(data),
        out=str(out),
        task=None,
        scale=4,
        methods=("nearest", "bicubic"),
        metrics=PIXEL,
        batch_size=2,
        report=False,
        bootstrap=500,
    )
    base.update(kw)
    return BenchmarkSpec(**base)


def test_run_folder_contents_and_broken_files(mixed_dir, tmp_path):
    res = evalsuite.run(_spec(mixed_dir, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    for f in ("spec.yaml", "manifest.json", "summary.csv", "per_image.csv", "errors.csv"):
        assert (run / f).exists(), f
    ids = ["astronaut", "chelsea", "coffee", "rocket"]
    assert sorted(p.stem for p in (run / "hr").glob("*.png")) == ids
    assert sorted(p.stem for p in (run / "outputs" / "bicubic").glob("*.png")) == ids
    # Broken files are listed with reasons a person understands; good ones are all scored.
    errors = pd.read_csv(run / "errors.csv")
    reasons = {Path(p).name: r for p, r in zip(errors["path"], errors["reason"])}
    assert set(reasons) == {"empty.png", "notes.jpg", "cut.png", "tiny.png"}
    assert "empty" in reasons["empty.png"] and "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["cut.png"] and "too small" in reasons["tiny.png"]
    s = pd.read_csv(run / "summary.csv")
    expected = ["method", "n_images"] + [f"{m}{x}" for m in PIXEL for x in ("", "_ci_low", "_ci_high")] + ["notes"]
    assert list(s.columns) == expected
    assert list(s["n_images"]) == [4, 4]
    per = pd.read_csv(run / "per_image.csv")
    assert list(per.columns) == ["method", "image_id", *PIXEL] and len(per) == 8
    # Summary means are the per-image means, inside their CIs; bicubic beats nearest on real photos.
    for _, row in s.iterrows():
        vals = per[per["method"] == row["method"]]
        for m in PIXEL:
            assert row[m] == pytest.approx(vals[m].mean(), rel=1e-5)
            assert row[f"{m}_ci_low"] <= row[m] <= row[f"{m}_ci_high"]
    by = s.set_index("method")
    assert by.loc["bicubic", "psnr"] > by.loc["nearest", "psnr"]
    assert res.summary.shape == s.shape and len(res.per_image) == 8
    # HR kept its size (cropped to a multiple of 4); LR is HR/4; outputs are HR-sized.
    hr = Image.open(run / "hr" / "chelsea.png")
    lr = Image.open(run / "lr" / "chelsea.png")
    sr = Image.open(run / "outputs" / "nearest" / "chelsea.png")
    assert hr.size[0] % 4 == 0 and hr.size[1] % 4 == 0
    assert lr.size == (hr.size[0] // 4, hr.size[1] // 4) and sr.size == hr.size
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["inputs"]) == set(ids) and len(manifest["inputs"]["coffee"]) == 64
    assert manifest["n_skipped"] == 4 and "torch" in manifest["versions"]


def test_rerun_reuses_outputs_and_metrics(photos_dir, tmp_path, monkeypatch):
    spec = _spec(photos_dir, tmp_path / "run")
    first = evalsuite.run(spec, progress=False)
    out = tmp_path / "run" / "outputs" / "bicubic" / "coffee.png"
    mtime = out.stat().st_mtime_ns

    # A rerun must neither build methods nor rewrite outputs.
    def no_build(*a, **k):
        raise AssertionError("method rebuilt on a cached rerun")

    monkeypatch.setattr("evalsuite.score.build_method", no_build)
    second = evalsuite.run(spec, progress=False)
    assert out.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(first.summary, second.summary)
    pd.testing.assert_frame_equal(first.per_image, second.per_image)
    # The method's speed, measured on the first run, is still reported by the cached rerun.
    methods = json.loads((tmp_path / "run" / "manifest.json").read_text())["methods"]
    assert methods["bicubic"]["seconds_per_image"] > 0


def test_removed_source_file_leaves_the_run(photos_dir, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(photos_dir, d)
    evalsuite.run(_spec(d, tmp_path / "run", methods=("bicubic",)), progress=False)
    (d / "rocket.png").unlink()
    res = evalsuite.run(_spec(d, tmp_path / "run", methods=("bicubic",)), progress=False)
    assert sorted(res.per_image["image_id"]) == ["astronaut", "chelsea", "coffee"]
    index = json.loads((tmp_path / "run" / ".cache" / "sources.json").read_text())
    assert sorted(index["images"]) == ["astronaut", "chelsea", "coffee"]


def test_metric_cache_files_match_their_label_only(tmp_path):
    from evalsuite.cache import metric_cache_files as _metric_cache_files

    for name in ("sr3-m.r0.jsonl", "sr3-m.r1.jsonl", "sr3-m.run2.r0.jsonl", "sr3-m_.r0.jsonl", "sr3-m.r0.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in _metric_cache_files(tmp_path, "sr3-m")] == ["sr3-m.r0.jsonl", "sr3-m.r1.jsonl"]
    assert [p.name for p in _metric_cache_files(tmp_path, "sr3-m.run2")] == ["sr3-m.run2.r0.jsonl"]


def test_changed_spec_remakes_only_what_changed(photos_dir, tmp_path):
    evalsuite.run(_spec(photos_dir, tmp_path / "run", methods=("bicubic",)), progress=False)
    hr = tmp_path / "run" / "hr" / "coffee.png"
    mtime = hr.stat().st_mtime_ns
    # Another task in the same folder: images are remade, not mixed with the old ones.
    res = evalsuite.run(_spec(photos_dir, tmp_path / "run", methods=("bicubic",), scale=2), progress=False)
    assert hr.stat().st_mtime_ns != mtime
    lr = Image.open(tmp_path / "run" / "lr" / "coffee.png")
    assert lr.size[0] * 2 == Image.open(hr).size[0]
    assert res.summary["n_images"].tolist() == [4]


def test_killed_run_resumes_with_identical_numbers(photos_dir, tmp_path):
    args = [
        "-m",
        "evalsuite.cli",
        "run",
        "benchmark",
        "--data",
        str(photos_dir),
        "--scale",
        "4",
        "--methods",
        "slowbicubic",
        "--metrics",
        ",".join(PIXEL),
        "--batch-size",
        "1",
        "--no-report",
    ]
    env = _env()
    # Uninterrupted reference run (no sleeping).
    ref_env = {**env, "EVALSUITE_TEST_SLEEP": "0"}
    subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "ref")], env=ref_env, check=True, capture_output=True
    )
    # Killed run: SIGKILL once two outputs exist.
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, *args, "--out", str(out)],
        env={**env, "EVALSUITE_TEST_SLEEP": "1.0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "outputs" / "slowbicubic").glob("*.png"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((out / "outputs" / "slowbicubic").glob("*.png"))
    assert 2 <= len(done) < 4, "the run must be killed mid-way"
    assert not (out / "summary.csv").exists()
    # Every PNG that survived the kill is complete.
    for p in done:
        Image.open(p).load()
    subprocess.run([sys.executable, *args, "--out", str(out)], env=ref_env, check=True, capture_output=True)
    a = pd.read_csv(tmp_path / "ref" / "summary.csv")
    b = pd.read_csv(out / "summary.csv")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ref" / "per_image.csv"), pd.read_csv(out / "per_image.csv"))


def test_nan_and_wrong_shape_are_reported_not_scored(photos_dir, tmp_path):
    res = evalsuite.run(
        _spec(photos_dir, tmp_path / "run", methods=("nanmethod", "badshape", "broken:nope.pt")),
        progress=False,
    )
    s = res.summary.set_index("method")
    assert s.loc["nanmethod", "n_images"] == 3
    assert s.loc["badshape", "n_images"] == 0 and np.isnan(s.loc["badshape", "psnr"])
    assert "failed" in s.loc["nanmethod", "notes"]
    assert "not built" in s.loc["broken-nope", "notes"]
    f = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert set(f[f["method"] == "nanmethod"]["image_id"]) == {"coffee"}
    assert "NaN" in f[f["method"] == "nanmethod"]["reason"].iloc[0]
    assert "shape" in f[f["method"] == "badshape"]["reason"].iloc[0]
    assert not (tmp_path / "run" / "outputs" / "nanmethod" / "coffee.png").exists()
    assert "coffee" not in set(res.per_image[res.per_image["method"] == "nanmethod"]["image_id"])


def test_folder_method_reads_outputs_and_fails_per_image(photos_dir, tmp_path):
    evalsuite.run(_spec(photos_dir, tmp_path / "a", methods=("bicubic",)), progress=False)
    ext = tmp_path / "ext"
    shutil.copytree(tmp_path / "a" / "outputs" / "bicubic", ext)
    (ext / "rocket.png").unlink()
    Image.new("RGB", (10, 10)).save(ext / "chelsea.png")
    res = evalsuite.run(_spec(photos_dir, tmp_path / "b", methods=("bicubic", f"folder:{ext}")), progress=False)
    s = res.summary.set_index("method")
    assert s.loc["folder-ext", "n_images"] == 2
    per = res.per_image.set_index(["method", "image_id"])
    assert per.loc[("folder-ext", "coffee"), "psnr"] == pytest.approx(per.loc[("bicubic", "coffee"), "psnr"])
    f = pd.read_csv(tmp_path / "b" / "failures.csv")
    reasons = dict(zip(f["image_id"], f["reason"]))
    assert "no output" in reasons["rocket"] and "expected" in reasons["chelsea"]


def test_limit_and_fixed_task(photos_dir, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for p in sorted(photos_dir.glob("*.png")):
        Image.open(p).resize((200, 150)).save(d / p.name)
    Image.open(photos_dir / "coffee.png").resize((120, 100)).save(d / "a_small.png")
    res = evalsuite.run(
        _spec(d, tmp_path / "run", task="faces-16-128", scale=None, limit=2, methods=("bicubic",)),
        progress=False,
    )
    assert res.summary["n_images"].tolist() == [2]
    # The too-small file is skipped and listed; --limit counts usable images only.
    assert sorted(res.per_image["image_id"]) == ["astronaut", "chelsea"]
    assert "too small" in pd.read_csv(tmp_path / "run" / "errors.csv")["reason"].iloc[0]
    assert Image.open(tmp_path / "run" / "hr" / "astronaut.png").size == (128, 128)
    assert Image.open(tmp_path / "run" / "lr" / "astronaut.png").size == (16, 16)


def test_no_usable_image_is_an_error_with_errors_csv(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.png").write_bytes(b"")
    with pytest.raises(NoUsableImagesError, match="errors.csv"):
        evalsuite.run(_spec(d, tmp_path / "run"), progress=False)
    assert len(pd.read_csv(tmp_path / "run" / "errors.csv")) == 1
    assert (
        cli.main(
            [
                "run",
                "benchmark",
                "--data",
                str(d),
                "--scale",
                "4",
                "--methods",
                "bicubic",
                "--out",
                str(tmp_path / "run2"),
                "--no-report",
            ]
        )
        == 2
    )


def test_cli_and_config_file(photos_dir, tmp_path, capsys):
    cfg = tmp_path / "spec.yaml"
    cfg.write_text(f"data: {photos_dir}\ntask: null\nscale: 4\nmethods: [bicubic]\nmetrics: psnr,ssim\n")
    rc = cli.main(
        [
            "run",
            "benchmark",
            "--config",
            str(cfg),
            "--methods",
            "bicubic,nearest",
            "--out",
            str(tmp_path / "run"),
            "--y-channel",
            "--crop-border",
            "4",
            "--no-report",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "bicubic" in printed and "run folder:" in printed
    spec = BenchmarkSpec.from_yaml(tmp_path / "run" / "spec.yaml")
    assert spec.methods == ("bicubic", "nearest") and spec.y_channel and spec.crop_border == 4
    assert spec.metrics == ("psnr", "ssim")
    assert cli.main(["run", "benchmark", "--methods", "nosuch", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_two_process_run_equals_one_process(photos_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [
        "-m",
        "evalsuite.cli",
        "run",
        "benchmark",
        "--data",
        str(photos_dir),
        "--scale",
        "4",
        "--methods",
        "nanmethod,bicubic,nearest",
        "--metrics",
        ",".join(PIXEL),
        "--batch-size",
        "1",
        "--no-report",
        "--device",
        "cpu",
    ]
    subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], check=True, capture_output=True, env=_env())
    r = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one" / "summary.csv"), pd.read_csv(tmp_path / "two" / "summary.csv")
    )
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["world_size"] == 2
    # Failed images are listed once, not once per rank or per later method.
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one" / "failures.csv"), pd.read_csv(tmp_path / "two" / "failures.csv")
    )
    assert len(pd.read_csv(tmp_path / "two" / "failures.csv")) == 1
