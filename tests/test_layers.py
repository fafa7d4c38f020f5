"""The layers and the plugins: import-linter's contracts, no upward names in the engine, a pip-installed plugin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("baselines", "studies", "reports")
# A dotted or "module:attr" name of an upper package (not a docs/ file), or an import of one.
_NAMES = "|".join(UPPER)
UPWARD = re.compile(rf"(?<!docs/)\b({_NAMES})(\.[A-Za-z_]|:[A-Za-z_])|\b(import|from)\s+({_NAMES})\b")


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *map(str, paths)])
    return env


def test_import_linter_contracts_are_kept():
    # The layers contract and the no-cycles contract of pyproject.toml, checked by import-linter itself.
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is part of the test extra: pip install -e '.[test]'"
    out = subprocess.run([lint], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def test_the_engine_neither_imports_nor_names_a_package_above_it():
    # Imports, "module:function" strings and dotted names in comments alike: the engine discovers, never names.
    pattern = UPWARD
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "evalsuite").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_the_pattern_catches_an_upward_name(tmp_path):
    # The check above is only worth something if it fires on the forms it is meant to catch.
    pattern = UPWARD
    for line in ('X = "baselines.sr3.method:build_sr3"', "from reports import html", "import studies", "reports:x"):
        assert pattern.search(line), line
    assert not pattern.search("the report shows the studies' numbers (docs/reports.md)")


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "evalsuite-toyplugin"
version = "0.1.0"

[project.entry-points."evalsuite.methods"]
toyplugin = "evalsuite_toyplugin:register_methods"

[project.entry-points."evalsuite.metrics"]
toyplugin = "evalsuite_toyplugin.metrics"

[tool.setuptools]
packages = ["evalsuite_toyplugin"]
"""

PLUGIN_INIT = '''
"""A third-party plugin: one method (nearest-neighbour upscaling) and, in .metrics, one metric."""
import torch


class Nearest:
    def __init__(self, scale):
        self.name, self.scale = "toy-nearest", scale

    def __call__(self, x_lr, ids=None):
        return torch.nn.functional.interpolate(x_lr, scale_factor=self.scale, mode="nearest")


def build(name, ctx):
    return Nearest(ctx.scale)


def register_methods():
    from evalsuite.methods import register

    register("toy-nearest", "evalsuite_toyplugin:build", "nearest-neighbour upscaling (a plugin)")
'''

PLUGIN_METRICS = '''
"""The plugin's metric: the mean absolute error on [0,1], declared through the engine's public API."""
from evalsuite.metrics import Column, MetricInfo, register


class MeanAbs:
    def __init__(self, ctx):
        self.ctx = ctx

    def update(self, sr, hr, lr, ids):
        return {"toy_mae": (sr - hr).abs().mean(dim=(1, 2, 3))}

    def compute(self):
        return {}


register(MetricInfo(name="toy_mae", factory=MeanAbs, help="mean absolute error (a plugin)", source="toyplugin",
                    columns=(Column("toy_mae", "MAE", "MAE", "mean absolute error", False),)))
'''


def _build_and_install_plugin(tmp_path: Path) -> Path:
    """Build the plugin's wheel with pip and install it into a fresh folder put on sys.path; -> that folder."""
    src = tmp_path / "src"
    (src / "evalsuite_toyplugin").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (src / "evalsuite_toyplugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_INIT))
    (src / "evalsuite_toyplugin" / "metrics.py").write_text(textwrap.dedent(PLUGIN_METRICS))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, timeout=300)
    (wheel,) = wheels.glob("evalsuite_toyplugin-0.1.0-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    assert (site / "evalsuite_toyplugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return site


def test_a_pip_installed_package_adds_a_method_and_a_metric(tmp_path):
    site = _build_and_install_plugin(tmp_path)
    data = tmp_path / "hr"
    data.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(data / f"im{k}.png")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "evalsuite.cli", "run", "benchmark", "--data", str(data), "--scale", "2",
           "--methods", "bicubic,toy-nearest", "--metrics", "psnr,toy_mae", "--out", str(run), "--device", "cpu",
           "--no-report"]
    out = subprocess.run(cmd, env=_env(site), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    per = pd.read_csv(run / "per_image.csv")
    assert set(per["method"]) == {"bicubic", "toy-nearest"}
    # The plugin's metric is the mean absolute error of the saved outputs: recompute it from the files.
    for r in per.itertuples():
        sr = np.asarray(Image.open(run / "outputs" / r.method / f"{r.image_id}.png"), dtype=np.float64) / 255
        hr = np.asarray(Image.open(run / "hr" / f"{r.image_id}.png"), dtype=np.float64) / 255
        assert r.toy_mae == pytest.approx(np.abs(sr - hr).mean(), rel=1e-4)
    # The plugin's method is nearest-neighbour: each LR pixel repeated 2x2.
    lr = np.asarray(Image.open(run / "lr" / "im0.png"))
    sr = np.asarray(Image.open(run / "outputs" / "toy-nearest" / "im0.png"))
    assert np.array_equal(sr, lr.repeat(2, axis=0).repeat(2, axis=1))
    # Without the plugin on the path, the same names are unknown (nothing in this repository declares them).
    out = subprocess.run(cmd[:-1] + ["--no-report", "--out", str(tmp_path / "run2")], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0 and "toy-nearest" in out.stderr + out.stdout


def test_the_projects_own_packages_register_through_entry_points():
    # The same groups a third-party package uses; nothing registers them by import from the engine.
    from evalsuite import plugins

    own = {(ep.group, ep.name) for ep in plugins._own_entry_points() or ()}
    for group, name in [("evalsuite.methods", "baselines"), ("evalsuite.metrics", "evalsuite"),
                        ("evalsuite.recipes", "sr3"), ("evalsuite.hooks", "report"),
                        ("evalsuite.commands", "studies"), ("evalsuite.lr_sources", "cascade")]:
        assert (group, name) in own
        assert any(ep.name == name for ep in plugins.entry_points(group))
    from baselines.train import load_recipe  # a recipe is found by its kind through the group

    with pytest.raises(ValueError, match="trainable kinds: ddpm, gan, regression, sr3"):
        load_recipe("nope", None, {})


def test_a_broken_plugin_names_itself(monkeypatch):
    from importlib.metadata import EntryPoint

    from evalsuite import plugins

    broken = EntryPoint(name="broken", value="no_such_module_xyz:register", group="evalsuite.hooks")
    monkeypatch.setattr(plugins, "entry_points", lambda group: (broken,) if group == "evalsuite.hooks" else ())
    with pytest.raises(plugins.PluginError, match="plugin 'broken'.*no_such_module_xyz"):
        plugins.get("evalsuite.hooks", "broken", "hook")
    with pytest.raises(plugins.PluginError, match="unknown hook 'other'; known: broken"):
        plugins.get("evalsuite.hooks", "other", "hook")
