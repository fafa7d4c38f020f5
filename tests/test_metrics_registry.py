"""One declaration per metric: the registry, typed options, and a new metric module picked up everywhere."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap

import pytest
import torch

import evalsuite
from evalsuite.metrics import base
from evalsuite.metrics.base import HIGHER_IS_BETTER, MetricContext, column_info, metric_info, registered_metrics
from evalsuite.options import OptionError
from evalsuite.spec import BenchmarkSpec

BUILTIN = ("psnr", "ssim", "ms_ssim", "consistency", "detail", "lpips", "dists", "niqe", "fid", "kid", "is",
           "classification")


def test_every_builtin_metric_declares_its_facts_once():
    metrics = registered_metrics()
    assert set(BUILTIN) <= set(metrics)
    columns = [c.name for info in metrics.values() for c in info.columns]
    assert len(columns) == len(set(columns)), "a column is declared by two metrics"
    ctx = MetricContext(torch.device("cpu"), 4, crop_border=2)
    for name, info in metrics.items():
        assert info.name == name and info.help and info.source and info.columns
        assert dataclasses.is_dataclass(info.options) and info.options.__dataclass_params__.frozen
        assert isinstance(info.min_size(ctx), int) and info.min_size(ctx) >= 1
        for c in info.columns:
            assert c.title and c.short and c.help and HIGHER_IS_BETTER[c.name] is c.higher_is_better
    assert metric_info("top1").name == "classification" and metric_info("PSNR").name == "psnr"
    assert metrics["fid"].needs_reference_set and not metrics["fid"].per_image
    assert metrics["classification"].drives_method and metrics["classification"].hr_row
    assert not metrics["niqe"].full_reference and metrics["niqe"].per_image
    assert column_info("detail").higher_is_better is None and column_info("psnr").title == "PSNR (dB)"
    typo = "unknown metric 'psnrr' \\(did you mean 'psnr'\\?\\); known metrics: .*ms_ssim, niqe, psnr"
    with pytest.raises(ValueError, match=typo):
        metric_info("psnrr")


def test_metric_option_typos_and_bad_values_fail_when_the_spec_is_loaded(tmp_path):
    with pytest.raises(OptionError, match="unknown metric option 'lpips_nt'.*did you mean 'lpips_net'?"):
        BenchmarkSpec(metrics=("lpips",), metric_options={"lpips_nt": "vgg"})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("metrics: [fid]\nmetric_options: {fid_rfe: refs/}\n")
    listed = "allow_nonstandard_weights, fid_ref, labels, lpips_net"
    with pytest.raises(OptionError, match=f"'fid_rfe'.*'fid_ref'.*{listed}"):
        BenchmarkSpec.from_yaml(spec_file)
    with pytest.raises(ValueError, match="lpips_net must be one of alex, vgg"):
        BenchmarkSpec(metrics=("lpips",), metric_options={"lpips_net": "squeeze"})
    with pytest.raises(OptionError, match="fid_ref=3: expected"):
        BenchmarkSpec(metrics=("fid",), metric_options={"fid_ref": 3})
    with pytest.raises(OptionError, match="spec's own `seed`"):
        BenchmarkSpec(metric_options={"seed": 3})
    ok = BenchmarkSpec(metrics=("lpips", "fid"), metric_options={"lpips_net": "vgg", "fid_ref": "refs"})
    assert MetricContext(torch.device("cpu"), 4, options=ok.metric_options).options_of(
        metric_info("lpips").options
    ).lpips_net == "vgg"


def test_metrics_help_of_the_cli_lists_every_declaration(monkeypatch):
    from evalsuite.cli import build_parser

    # A wide terminal: argparse wraps help at hyphens ("per-pixel" -> "per- pixel") at narrower widths, and the
    # width comes from $COLUMNS, which other libraries in the same process may set.
    monkeypatch.setenv("COLUMNS", "10000")

    parser = build_parser()
    bench = parser._subparsers._group_actions[0].choices["run"]._subparsers._group_actions[0].choices["benchmark"]
    text = " ".join(bench.format_help().split())
    for name, info in registered_metrics().items():
        assert f"{name}: {' '.join(info.help.split())}" in text
    assert "pyiqa:NAME" in text


TOY = '''
"""A toy metric, declared in its own module only."""
from evalsuite.metrics.base import Column, MetricInfo, register


class MeanAbs:
    def __init__(self, ctx):
        self.ctx = ctx

    def update(self, sr, hr, lr, ids):
        return {"mean_abs": (sr - hr).abs().mean(dim=(1, 2, 3))}

    def compute(self):
        return {}


register(MetricInfo(name="toyabs", factory=MeanAbs, help="toy mean absolute error (lower)", source="a test",
                    columns=(Column("mean_abs", "Toy MAE (x1)", "Toy MAE", "toy mean absolute error", False),)))
'''


def test_a_new_metric_is_one_module_read_by_runner_summary_report_and_help(photos_dir, tmp_path, monkeypatch):
    import evalsuite.metrics as pkg
    from evalsuite import plugins

    # One new file in a folder of the metrics package: nothing else is edited.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "toy.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(extra)])
    monkeypatch.setattr(plugins, "_loaded", set())  # the metric plugins are loaded again
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.delitem(sys.modules, "evalsuite.metrics.toy", raising=False)
    assert "toyabs: toy mean absolute error (lower)" in base.metrics_help()
    assert HIGHER_IS_BETTER["mean_abs"] is False
    spec = BenchmarkSpec(data=str(photos_dir), scale=4, methods=("bicubic", "nearest"), metrics=("psnr", "toyabs"),
                         out=str(tmp_path / "run"), device="cpu", workers=1, bootstrap=100)
    res = evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    assert list(res.summary.columns[2:8]) == ["psnr", "psnr_ci_low", "psnr_ci_high", "mean_abs", "mean_abs_ci_low",
                                              "mean_abs_ci_high"]
    assert (res.summary["mean_abs"] > 0).all() and res.per_image["mean_abs"].notna().all()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["metrics"]["toyabs"] == "toy mean absolute error (lower)"
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Toy MAE (x1)" in html and "toy mean absolute error" in html
    sys.modules.pop("evalsuite.metrics.toy", None)


def test_docs_list_every_metric_with_its_direction():
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    rows = [line for line in docs.splitlines() if line.startswith("| `")]
    for name, info in registered_metrics().items():
        if not info.factory.__module__.startswith("evalsuite.metrics."):
            continue  # a plugin's metric (tests register some), not one of ours
        row = next((r for r in rows if r.startswith(f"| `{name}`")), None)
        assert row is not None, f"docs/metrics.md has no table row for {name}"
        want = {True: "higher", False: "lower", None: "none"}[info.columns[0].higher_is_better]
        assert f"| {want}" in row, (name, row)
    assert any(r.startswith("| `pyiqa:NAME`") for r in rows)
