"""benchmarks/gpu_check.sh: steps under their own time limits, results recorded, a failing step does not stop the run.

The default suite runs a subset of `--tiny` (machine facts, the eager SR3 speed step, the CUDA-marked tests)
and the timeout/error/total/install paths; the full `--tiny` run (every step; 6 min at load 14 on 2 cores,
94 s of CPU time) is marked slow.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_check(out: Path, *args: str, timeout: int = 600, **env_extra: str) -> tuple[int, dict, str]:
    """Run gpu_check.sh with this interpreter; -> exit code, the combined JSON, the printed output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(out), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    combined = out / "gpu_check.json"
    data = json.loads(combined.read_text()) if combined.exists() else {}
    return proc.returncode, data, proc.stdout + proc.stderr


def test_tiny_subset_records_the_machine_the_sr3_figures_and_the_gpu_tests(tmp_path):
    rc, data, out = run_check(tmp_path, "--tiny", "--only", "machine,sr3_eager,gpu_tests")
    assert rc == 0, out
    assert data["order"] == ["machine", "sr3_eager", "gpu_tests"]
    assert data["tiny"] == 1
    machine = data["machine"]
    assert machine["cpu"]["model"] != "unknown CPU" and isinstance(machine["cpu"]["isa_flags"], list)
    assert "torch" in machine and "cuda_available" in machine
    sr3 = data["steps"]["sr3_eager"]
    assert sr3["status"] == "ok", sr3
    r = sr3["result"]
    assert set(r["forward"]) == {"1", "2"} and all(f["ms"] > 0 for f in r["forward"].values())
    assert r["sample"]["steps"] == 3 and r["sample"]["ms_per_image"] > 0
    assert r["train"]["img_per_s"] > 0
    # A CPU figure is never divided by the H200 anchor, and the GPU targets are not judged on it.
    assert r["ratios_printed"] is False and r["train"]["target_met"] is None
    printed = out.split("== sr3_eager")[1].split("== sr3_eager:")[0]
    assert "not an H200, so no ratios" in printed
    assert "ratio anchor/this" not in printed and "ratio this/anchor" not in printed
    tests = data["steps"]["gpu_tests"]
    assert tests["status"] == "ok", tests
    counts = tests["result"]["counts"]
    assert counts["tests"] == 4 and counts["failures"] == counts["errors"] == 0  # tests/test_gpu_paths.py
    import torch

    if not torch.cuda.is_available():
        assert counts["skipped"] == 4 and all("CUDA" in s for s in tests["result"]["skipped_tests"])
    table = (tmp_path / "gpu_check.txt").read_text()
    assert "sr3_eager" in table and "fwd b1" in table
    assert "== sr3_eager" in (tmp_path / "gpu_check.log").read_text()


def test_a_step_that_times_out_or_fails_is_recorded_and_the_next_steps_still_run(tmp_path):
    # sr3_eager gets 1 s (killed by timeout); the diffusers step fails (a plugin module that does not exist
    # breaks the method registry's import); machine, first, is unaffected.
    rc, data, out = run_check(tmp_path, "--tiny", "--only", "diffusers,sr3_eager,machine", "--budget", "sr3_eager=1",
                              EVALSUITE_PLUGINS="gpu_check_no_such_plugin")
    assert rc == 1, out  # a failed step makes the exit code 1
    assert data["order"] == ["machine", "sr3_eager", "diffusers"]
    steps = data["steps"]
    assert [steps[k]["status"] for k in data["order"]] == ["ok", "timeout", "error"]
    assert "budget of 1 s" in steps["sr3_eager"]["reason"]
    assert steps["sr3_eager"]["budget_s"] == 1 and steps["sr3_eager"]["seconds"] <= 12
    assert "gpu_check_no_such_plugin" in steps["diffusers"]["log_tail"]
    assert steps["diffusers"]["rc"] == 1 and "exit code 1" in steps["diffusers"]["reason"]
    assert "diffusers" in (tmp_path / "gpu_check.txt").read_text()


def test_no_step_starts_after_the_total(tmp_path):
    rc, data, out = run_check(tmp_path, "--tiny", "--only", "machine", "--total", "1")
    assert rc == 0, out
    assert data["steps"]["machine"]["status"] == "skipped"
    assert "no time left" in data["steps"]["machine"]["reason"]


def _wheel(folder: Path, name: str) -> Path:
    """A minimal pure-Python wheel of module `name` (version 0.1) that pip can install offline."""
    path = folder / f"{name}-0.1-py3-none-any.whl"
    info = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 31\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
        z.writestr(f"{info}/RECORD", "".join(f"{arc},,\n" for arc in files) + f"{info}/RECORD,,\n")
    return path


def test_install_takes_only_missing_packages_from_the_wheel_folder(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_steps

    wheels = tmp_path / "whl"
    wheels.mkdir()
    _wheel(wheels, "gpucheck_tinypkg")
    _wheel(wheels, "json")  # present already: must not be installed over the standard library's
    monkeypatch.setattr(gpu_steps, "NEEDED", [("json", "json"), ("gpucheck_tinypkg", "gpucheck-tinypkg"),
                                              ("gpucheck_absent", "gpucheck-absent")])
    site = tmp_path / "site"
    result = gpu_steps.step_install(argparse.Namespace(wheels=str(wheels), site=str(site)))
    assert result["present"] == ["json"]
    assert result["installed"] == ["gpucheck_tinypkg-0.1-py3-none-any.whl"]
    assert "gpucheck-absent" in result["missing"] and "--prepare" in result["missing"]["gpucheck-absent"]
    assert (site / "gpucheck_tinypkg" / "__init__.py").read_text() == "VALUE = 31\n"
    assert not (site / "json").exists()


@pytest.mark.slow
def test_full_tiny_run_passes_every_step(tmp_path):
    rc, data, out = run_check(tmp_path, "--tiny", timeout=900)
    assert rc == 0, out
    expected = ["machine", "install", "sr3_eager", "sr3_compiled", "metrics", "realesrgan", "diffusers", "gpu_tests",
                "quality"]
    assert data["order"] == expected
    for name in expected:
        assert data["steps"][name]["status"] in ("ok", "skipped"), (name, data["steps"][name])
    assert data["steps"]["sr3_compiled"]["result"]["compiled"] is True
    metrics = data["steps"]["metrics"]["result"]["img_per_s"]
    assert metrics["psnr+ssim+consistency"] > 0 and metrics["lpips_alex"] > 0 and metrics["inception_features"] > 0
    assert data["steps"]["realesrgan"]["result"]["img_per_s"] > 0
    diffusers = data["steps"]["diffusers"]
    from evalsuite.methods import registered_methods

    if "diffusers" in registered_methods() and importlib.util.find_spec("diffusers"):
        assert diffusers["status"] == "ok" and diffusers["result"]["img_per_s_whole_run"] > 0
    else:
        assert diffusers["status"] == "skipped" and "not available" in diffusers["reason"]
    quality = data["steps"]["quality"]["result"]
    assert quality["steps_each"] >= 20 and any(v.startswith("consistency:") for v in quality["verdicts"])
