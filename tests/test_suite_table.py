"""Suites (two sets x two scales, rerun from cache, a scale-limited method) and paper-ready tables."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from test_sr3_method import random_sr3
from test_train import make_photos

from evalsuite.cli import main
from evalsuite.spec import BenchmarkSpec
from evalsuite.suite import SuiteSpec, run_suite
from reports.table import TableOptions, build_table, latex_document, render

METRICS = ("psnr", "ssim", "consistency")


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    """A suite run through the CLI: sets A and B, scales 2 and 4, bicubic, nearest and a x2-only SR3 checkpoint."""
    tmp = tmp_path_factory.mktemp("suite")
    make_photos(tmp / "A", n=2, size=(32, 32))
    make_photos(tmp / "B", n=2, size=(40, 32))
    ckpt = random_sr3(tmp, scale=2)
    rc = main(["run", "suite", "--data", f"{tmp / 'A'},{tmp / 'B'}", "--scales", "2,4",
               "--methods", f"bicubic,nearest,sr3:{ckpt}", "--metrics", ",".join(METRICS), "--protocol", "basicsr",
               "--steps", "1", "--out", str(tmp / "S"), "--device", "cpu", "--no-sub-reports"])
    assert rc == 0
    return tmp / "S"


def test_suite_runs_every_set_and_scale_as_a_normal_run_and_combines_them(suite_dir):
    for name in ("A_x2", "A_x4", "B_x2", "B_x4"):
        assert (suite_dir / name / "summary.csv").exists() and (suite_dir / name / "manifest.json").exists()
        assert not (suite_dir / name / "report.html").exists()  # --no-sub-reports
    table = pd.read_csv(suite_dir / "suite.csv", dtype={"note": str})
    assert list(table.columns) == ["set", "scale", "method", "metric", "mean", "ci_low", "ci_high", "n", "note"]
    # Every value is the sub-run's own summary value (basicsr: Y channel, crop border = scale).
    for (s, scale), part in table.groupby(["set", "scale"]):
        summary = pd.read_csv(suite_dir / f"{s}_x{scale}" / "summary.csv").set_index("method")
        spec = (suite_dir / f"{s}_x{scale}" / "spec.yaml").read_text()
        assert "y_channel: true" in spec and f"crop_border: {scale}" in spec
        for r in part[part["mean"].notna()].itertuples():
            assert r.mean == pytest.approx(summary.loc[r.method, r.metric], rel=1e-5)
            assert r.n == 2
    # The x2-only checkpoint ran at x2 and is listed at x4 with the reason, no value.
    sr3 = table[table["method"] == "sr3-sr3"]
    assert sr3[sr3["scale"] == 2]["mean"].notna().all() and len(sr3[sr3["scale"] == 2]) == 2 * len(METRICS)
    x4 = sr3[sr3["scale"] == 4]
    assert len(x4) == 2 * len(METRICS) and x4["mean"].isna().all() and set(x4["note"]) == {"x2 only"}
    assert not (suite_dir / "A_x4" / "outputs" / "sr3-sr3").exists()
    meta = json.loads((suite_dir / "suite.json").read_text())
    assert meta["runs"][1]["left_out"] == {"sr3-sr3": "x2 only"}
    html = (suite_dir / "report.html").read_text()
    assert html.index('class="sr-table"') < html.index('id="runs"')  # the table on top
    assert "x2 only (sr3-sr3)" in html
    (suite_dir / "report.html").unlink()
    assert main(["report", str(suite_dir)]) == 0 and (suite_dir / "report.html").read_text().count("sr-table") >= 1


def test_suite_rerun_reuses_every_output_and_recomputes_nothing(suite_dir, monkeypatch):
    import evalsuite.score

    before = {p: p.stat().st_mtime_ns for p in suite_dir.glob("*/outputs/*/*.png")}
    assert len(before) == 2 * (2 * 2 * 2) + 2 * 2  # 2 images x (A, B) x (x2, x4) x (bicubic, nearest) + sr3 at x2
    old = pd.read_csv(suite_dir / "suite.csv")

    def no_build(*a, **k):
        raise AssertionError("a method was built on a rerun from cache")

    monkeypatch.setattr(evalsuite.score, "build_method", no_build)
    spec = SuiteSpec.from_spec(BenchmarkSpec.from_yaml(suite_dir / "suite.yaml"))  # the suite's own spec
    new = run_suite(spec, log=lambda s: None, progress=False)
    assert {p: p.stat().st_mtime_ns for p in suite_dir.glob("*/outputs/*/*.png")} == before
    assert len(new) == len(old)
    pd.testing.assert_frame_equal(pd.read_csv(suite_dir / "suite.csv"), old)
    for name in ("A_x2", "B_x4"):
        notes = pd.read_csv(suite_dir / name / "summary.csv", dtype={"notes": str})["notes"].fillna("")
        assert not notes.str.contains("not built").any()


def test_spec_file_with_a_suite_key_runs_a_suite(tmp_path, capsys):
    make_photos(tmp_path / "A", n=1, size=(24, 24))
    (tmp_path / "s.yaml").write_text(
        f"methods: [bicubic]\nmetrics: [psnr]\nout: {tmp_path / 'S'}\ndevice: cpu\n"
        f"suite:\n  data: [{tmp_path / 'A'}]\n  scales: [2, 3]\n  sub_reports: false\n"
    )
    assert main(["run", "benchmark", "--config", str(tmp_path / "s.yaml"), "--no-report"]) == 0
    table = pd.read_csv(tmp_path / "S" / "suite.csv")
    assert sorted(table["scale"]) == [2, 3] and set(table["method"]) == {"bicubic"}
    (tmp_path / "bad.yaml").write_text(f"methods: [bicubic]\nsuite:\n  data: [{tmp_path / 'A'}]\n  scale: [2]\n")
    assert main(["run", "suite", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown suite key 'scale' (did you mean 'scales'?)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- tables


def _cell(md: str, method: str, k: int) -> str:
    """The k-th value cell of a method's row in a Markdown table."""
    row = next(line for line in md.splitlines() if line.startswith(f"| {method} |"))
    return [c.strip() for c in row.strip("|").split("|")][1 + k]


def test_table_marks_best_and_second_by_direction_in_every_format(suite_dir):
    t = build_table([suite_dir], TableOptions(metrics=("psnr", "consistency")))
    assert [(g.set, g.scale) for g in t.groups] == [("A", 2), ("A", 4), ("B", 2), ("B", 4)]
    md = render(t, "markdown")
    long = pd.read_csv(suite_dir / "suite.csv")
    for k, (g, metric) in enumerate(t.columns):
        d = long[(long["set"] == g.set) & (long["scale"] == g.scale) & (long["metric"] == metric)].dropna(
            subset=["mean"]).sort_values("mean", ascending=metric == "consistency")  # consistency: lower is better
        best, second = d.iloc[0], d.iloc[1]
        assert _cell(md, best["method"], k).startswith("**"), (g, metric)
        if len(d) >= 3:
            assert _cell(md, second["method"], k).startswith("<u>"), (g, metric)
        assert not _cell(md, d.iloc[-1]["method"], k).startswith(("**", "<u>"))
    assert _cell(md, "sr3-sr3", 2) == "\u2013<sup>a</sup>" and "<sup>a</sup> x2 only (sr3-sr3)" in md
    assert md.splitlines()[1] == "|:--" + "|--:" * 8 + "|"  # a GitHub pipe table
    csv = pd.read_csv(pd.io.common.StringIO(render(t, "csv")))
    assert "A/x2/psnr" in csv and set(csv["kind"]) == {"method"}
    html = render(t, "html")
    assert html.count('colspan="2"') == 4 and "<b>" in html and "<u>" in html


def _write_run(folder: Path, rows: list[dict], task: dict | None = None) -> Path:
    """A finished run folder as the runner writes it: summary.csv (and a manifest with the task)."""
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    if task:
        (folder / "manifest.json").write_text(json.dumps({"task": task}))
    return folder


def test_lower_is_better_metrics_rank_the_smallest_first_and_ties_share_the_mark(tmp_path):
    run = _write_run(tmp_path / "run", [
        {"method": "a", "n_images": 3, "psnr": 30.0, "lpips": 0.31, "niqe": 6.1},
        {"method": "b", "n_images": 3, "psnr": 29.0, "lpips": 0.12, "niqe": 4.2},
        {"method": "c", "n_images": 3, "psnr": 28.0, "lpips": 0.2, "niqe": 4.2},
        {"method": "d", "n_images": 3, "psnr": 30.001, "lpips": 0.5, "niqe": 7.0},
        {"method": "reference (HR)", "n_images": 3, "niqe": 3.0},
    ], task={"name": "x4", "scale": 4})
    md = render(build_table([run]), "markdown")
    # PSNR (higher better): a and d print as 30.00 and share the best mark; lpips, niqe: lower is better.
    assert [_cell(md, m, 0) for m in "abcd"] == ["**30.00**", "<u>29.00</u>", "28.00", "**30.00**"]
    assert [_cell(md, m, 1) for m in "abcd"] == ["0.3100", "**0.1200**", "<u>0.2000</u>", "0.5000"]
    assert [_cell(md, m, 2) for m in "abcd"] == ["<u>6.10</u>", "**4.20**", "**4.20**", "7.00"]
    assert _cell(md, "*reference (HR)*", 2) == "3.00"  # the HR row is shown, never marked best
    assert "Method (run \u00d74)" in md  # a single run: its metrics as the columns
    three = render(build_table([run], TableOptions(precision=3)), "markdown")
    assert _cell(three, "d", 0) == "**30.001**" and _cell(three, "a", 0) == "<u>30.000</u>"


def test_with_paper_adds_the_papers_rows_marked_and_never_ranked(tmp_path):
    run = _write_run(tmp_path / "faces", [
        {"method": "bicubic", "n_images": 2, "psnr": 22.0, "psnr_ci_low": 21.0, "psnr_ci_high": 23.0, "ssim": 0.6},
        {"method": "mine", "n_images": 2, "psnr": 21.0, "psnr_ci_low": 20.5, "psnr_ci_high": 21.5, "ssim": 0.5},
    ], task={"name": "faces-16-128", "scale": 8})
    t = build_table([run], TableOptions(with_paper=True, ci=True))
    md = render(t, "markdown")
    assert _cell(md, "*SR3\u2020*", 0) == "23.04" and _cell(md, "*Regression\u2020*", 1) == "0.6900"
    assert _cell(md, "bicubic", 0) == "**22.00** [21.00, 23.00]"  # best among the runs' methods only
    assert "SR3 paper" in md and "CelebA-HQ" in md
    latex = render(t, "latex")
    assert "SR3\\textsuperscript{\\dag}" in latex and latex.count("\\midrule") == 2
    plain = _write_run(tmp_path / "plain", [{"method": "bicubic", "n_images": 1, "psnr": 20.0}],
                       task={"name": "x2", "scale": 2})
    with pytest.raises(ValueError, match="no numbers for these runs' tasks \\(x2\\)"):
        build_table([plain], TableOptions(with_paper=True))


def test_latex_is_booktabs_and_compiles(suite_dir, tmp_path):
    latex = render(build_table([suite_dir], TableOptions(ci=True, caption="Two sets & two scales")), "latex")
    assert latex.count("\\toprule") == 1 and latex.count("\\bottomrule") == 1
    assert latex.count("\\multicolumn{3}{c}") == 4 and latex.count("\\cmidrule(lr)") == 4
    body = latex.split("\\midrule\n", 1)[1].split("\\bottomrule")[0]
    assert all(line.count("&") == 12 for line in body.strip().splitlines())  # 1 + 4 groups x 3 metrics columns
    assert "\\textbf{" in body and "\\underline{" in body and "Two sets \\& two scales" in latex
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended); structure checked")
    (tmp_path / "t.tex").write_text(latex_document(latex))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
    assert not re.search(r"^! ", proc.stdout, re.M)


def test_table_cli_writes_a_file_and_rejects_a_folder_that_is_not_a_run(suite_dir, tmp_path, capsys):
    out = tmp_path / "t.md"
    assert main(["table", str(suite_dir), "--format", "markdown", "--metrics", "psnr", "-o", str(out)]) == 0
    assert out.read_text().count("|") > 10 and "SSIM" not in out.read_text()
    assert main(["table", str(tmp_path), "--format", "latex"]) == 2
    assert "neither a suite folder" in capsys.readouterr().err
    assert main(["table", str(suite_dir), "--metrics", "fid"]) == 2
    assert "not in these runs" in capsys.readouterr().err


def test_scale_limits_come_from_the_registry_without_loading_weights():
    from evalsuite.suite import scale_limits, set_names

    keep, left_out = scale_limits(["bicubic", "realesrgan-x4plus", "esrgan-thick-x2", "esrgan-thick-x4"], 4)
    assert keep == ["bicubic", "realesrgan-x4plus", "esrgan-thick-x4"]
    assert left_out == {"esrgan-thick-x2": "x2 only"}
    assert scale_limits(["realesrgan-x4plus"], 2) == ([], {"realesrgan-x4plus": "x4 only"})
    assert set_names(["set5", "/data/a/HR/", "/data/b/HR"]) == ["set5", "HR", "HR-2"]


def test_two_runs_side_by_side_name_a_shared_method_by_its_run(tmp_path):
    for name, psnr in (("monday", 25.0), ("tuesday", 26.0)):
        _write_run(tmp_path / name, [{"method": "bicubic", "n_images": 2, "psnr": 24.0},
                                     {"method": "sr3-ckpt", "n_images": 2, "psnr": psnr}],
                   task={"name": "x4", "scale": 4})
        (tmp_path / name / "spec.yaml").write_text("data: set5\n")
    md = render(build_table([tmp_path / "monday", tmp_path / "tuesday"]), "markdown")
    assert _cell(md, "sr3-ckpt [tuesday]", 0) == "**26.00**" and _cell(md, "sr3-ckpt [monday]", 0) == "<u>25.00</u>"
    assert "Method (set5 \u00d74)" in md
