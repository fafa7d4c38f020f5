"""Method sweeps: `sr3:CKPT@steps=1,2`, checkpoint globs, typed settings, and the report's sweep plots."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from test_sr3_method import random_sr3
from test_train import make_photos

from evalsuite.methods import method_label, method_options, method_scales
from evalsuite.options import OptionError
from evalsuite.sweep import expand_method, split_methods, split_variant


def test_split_methods_keeps_value_lists_with_their_method():
    text = "bicubic,sr3:m.safetensors@steps=10,25,50@sampler=ddim,ancestral,nearest,folder:out"
    assert split_methods(text) == (
        "bicubic",
        "sr3:m.safetensors@steps=10,25,50@sampler=ddim,ancestral",
        "nearest",
        "folder:out",
    )
    # An `@` that is not `@KEY=` (a Hub revision) is part of the name, not a setting.
    assert split_variant("sr3:hf:org/repo/m.safetensors@main@steps=3") == ("sr3:hf:org/repo/m.safetensors@main",
                                                                            {"steps": "3"})
    assert split_methods("sr3:hf:org/repo@main,bicubic") == ("sr3:hf:org/repo@main", "bicubic")


def test_sweep_values_are_typed_and_checked_against_the_methods_options_dataclass():
    variants = expand_method("sr3:m.safetensors@steps=10,25@sampler=ddim,ancestral")
    assert [v.name for v in variants] == [
        "sr3:m.safetensors@steps=10@sampler=ddim",
        "sr3:m.safetensors@steps=10@sampler=ancestral",
        "sr3:m.safetensors@steps=25@sampler=ddim",
        "sr3:m.safetensors@steps=25@sampler=ancestral",
    ]
    assert {v.key for v in variants} == {"steps,sampler"}
    one = expand_method("sr3:m.safetensors@steps=10,25@sampler=ddim")
    assert [(v.key, v.value) for v in one] == [("steps", 10), ("steps", 25)]  # typed: int, not "10"
    opts = method_options("sr3:m.safetensors@steps=25@sampler=ddim", {"*": {"steps": 5, "tile": 32}})
    assert (opts.steps, opts.sampler, opts.tile) == (25, "ddim", 32)  # the sweep's value wins over --steps
    assert method_label("sr3:runs/x/m.safetensors@steps=25") == "sr3-m@steps=25"
    with pytest.raises(OptionError, match="'stpes' \\(did you mean 'steps'\\?\\)"):
        expand_method("sr3:m.safetensors@stpes=1,2")
    with pytest.raises(OptionError, match="steps: 'ten' is not a valid int"):
        expand_method("sr3:m.safetensors@steps=10,ten")
    with pytest.raises(OptionError, match="takes no options"):
        expand_method("bicubic@steps=1,2")
    with pytest.raises(OptionError, match="KEY=VALUE"):
        split_variant("sr3:m@steps=")


def test_checkpoint_glob_expands_in_training_step_order_and_scales_come_from_the_checkpoint(tmp_path):
    ckpt = random_sr3(tmp_path, scale=2)
    for step in (1000, 200, 30):
        shutil.copy(ckpt, tmp_path / f"ckpt-{step:06d}.safetensors")
    (tmp_path / "ckpt-000030.state.pt").write_bytes(b"")  # training state beside them is not a checkpoint
    variants = expand_method(f"sr3:{tmp_path}/ckpt-*.safetensors")
    assert [v.value for v in variants] == [30, 200, 1000]
    assert [method_label(v.name) for v in variants] == ["sr3-ckpt-000030", "sr3-ckpt-000200", "sr3-ckpt-001000"]
    assert {v.key for v in variants} == {"checkpoint"}
    assert method_scales(variants[0].name) == (2,)
    assert method_scales("esrgan-thick-x3") == (3,) and method_scales("bicubic") is None
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_method(f"sr3:{tmp_path}/nothing-*.safetensors")


def test_steps_sweep_runs_as_labelled_methods_and_the_report_plots_quality_against_steps(tmp_path):
    from evalsuite.runner import run
    from evalsuite.spec import BenchmarkSpec

    data = make_photos(tmp_path / "photos", n=2, size=(16, 16))
    ckpt = random_sr3(tmp_path, scale=2)
    spec = BenchmarkSpec.from_dict({
        "data": str(data), "task": None, "scale": 2, "metrics": ["psnr", "consistency"], "out": str(tmp_path / "run"),
        "device": "cpu", "methods": f"bicubic,sr3:{ckpt}@steps=1,2@sampler=ddim",  # a string, as from a flag
        "method_options": {"steps": 7},  # --steps: the sweep's values win
    })
    results = run(spec, progress=False)
    summary = results.summary.set_index("method")
    assert list(summary.index) == ["bicubic", "sr3-sr3@steps=1@sampler=ddim", "sr3-sr3@steps=2@sampler=ddim"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [manifest["methods"][m]["steps"] for m in summary.index[1:]] == [1, 2]
    assert {manifest["methods"][m]["sampler"] for m in summary.index[1:]} == {"ddim"}
    sweeps = json.loads((tmp_path / "run" / "sweeps.json").read_text())
    assert {k: (v["key"], v["value"]) for k, v in sweeps.items()} == {
        "sr3-sr3@steps=1@sampler=ddim": ("steps", 1), "sr3-sr3@steps=2@sampler=ddim": ("steps", 2)}
    per = results.per_image.set_index(["method", "image_id"])
    assert (per.loc["sr3-sr3@steps=1@sampler=ddim", "psnr"] != per.loc["sr3-sr3@steps=2@sampler=ddim", "psnr"]).all()
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="sweep-1"' in html and "<svg" in html.split('id="sweep-1"')[1][:200]
    sweep_fig = html.split('id="sweep-1"')[1].split("</figure>")[0]
    assert ">steps<" in sweep_fig and "PSNR" in sweep_fig  # quality against steps, one panel per metric


def test_perception_distortion_plane_pairs_a_distortion_metric_with_a_perceptual_one():
    from reports.sweeps import pd_columns, perception_distortion

    summary = pd.DataFrame({
        "method": ["a", "b", "c", "reference (HR)"],
        "n_images": [4, 4, 4, 4],
        "psnr": [30.0, 28.0, 26.0, None], "psnr_ci_low": [29.0, 27.0, 25.0, None],
        "psnr_ci_high": [31.0, 29.0, 27.0, None],
        "lpips": [0.30, 0.20, 0.10, None], "lpips_ci_low": [0.25, 0.15, 0.05, None],
        "lpips_ci_high": [0.35, 0.25, 0.15, None],
        "niqe": [6.0, 5.0, 4.0, 3.0],
    })
    assert pd_columns(["psnr", "lpips", "niqe"], summary) == ("psnr", "lpips")
    assert pd_columns(["psnr", "niqe"], summary.drop(columns=["lpips"])) == ("psnr", "niqe")
    assert pd_columns(["psnr"], summary[["method", "n_images", "psnr"]]) is None
    svg = perception_distortion(summary, ["psnr", "lpips"], [])
    assert "LPIPS" in svg and "PSNR" in svg and ">a<" in svg and ">c<" in svg
    assert "reference (HR)" not in svg


def test_sampler_sweep_is_plotted_on_a_categorical_axis_and_glob_sweeps_by_training_step(tmp_path):
    from evalsuite.sweep import Variant, write_sweeps
    from reports.sweeps import sweep_groups, sweep_plot

    summary = pd.DataFrame({
        "method": ["m@sampler=ddim", "m@sampler=ancestral", "ck-000200", "ck-000030", "bicubic"],
        "n_images": [2] * 5, "psnr": [25.0, 24.0, 23.0, 21.0, 22.0], "ssim": [None] * 5,
    })
    write_sweeps(tmp_path, [
        (Variant("sr3:m@sampler=ddim", "sr3:m@sampler=ddim,ancestral", "sampler", "ddim"), "m@sampler=ddim"),
        (Variant("sr3:m@sampler=ancestral", "sr3:m@sampler=ddim,ancestral", "sampler", "ancestral"),
         "m@sampler=ancestral"),
        (Variant("sr3:ck-000200.safetensors", "sr3:ck-*.safetensors", "checkpoint", 200), "ck-000200"),
        (Variant("sr3:ck-000030.safetensors", "sr3:ck-*.safetensors", "checkpoint", 30), "ck-000030"),
        (Variant("bicubic"), "bicubic"),
    ])
    groups = sweep_groups(tmp_path, summary)
    assert [(g["key"], [v for v, _ in g["points"]]) for g in groups] == [
        ("sampler", ["ddim", "ancestral"]), ("checkpoint", [200, 30])]
    svg = sweep_plot(groups[0], summary, ["psnr", "ssim"])
    assert ">ddim<" in svg and ">ancestral<" in svg and "SSIM" not in svg  # no values: no panel
    svg = sweep_plot(groups[1], summary, ["psnr"])
    assert "training step (checkpoint)" in svg
    write_sweeps(tmp_path, [(Variant("bicubic"), "bicubic")])  # a rerun without sweeps drops the old file
    assert not (tmp_path / "sweeps.json").exists()
