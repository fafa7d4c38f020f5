"""The results index: runs register themselves; leaderboards over comparable runs only; moved folders reported."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

import evalsuite
from evalsuite.cli import main
from evalsuite.index import CHANGED, MISSING, OK, RunIndex, index_url
from evalsuite.spec import BenchmarkSpec


@pytest.fixture(scope="module")
def runs(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real runs (registered by the post-run hook in a fresh $EVALSUITE_HOME), and edited copies: one
    under --protocol basicsr's settings, one that scored fewer images."""
    base = tmp_path_factory.mktemp("index")
    home = base / "home"
    old = os.environ.get("EVALSUITE_HOME")
    os.environ["EVALSUITE_HOME"] = str(home)
    try:
        out = {}
        for name, methods in (("a", ("bilinear", "bicubic")), ("b", ("lanczos",))):
            spec = BenchmarkSpec(data=str(photos_dir), scale=2, methods=methods, metrics=("psnr", "consistency"),
                                 out=str(base / name), report=False, workers=1)
            evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
            out[name] = base / name
    finally:
        if old is None:
            os.environ.pop("EVALSUITE_HOME")
        else:
            os.environ["EVALSUITE_HOME"] = old
    out["home"] = home
    out["basicsr"] = base / "basicsr"
    shutil.copytree(out["a"], out["basicsr"])
    spec = yaml.safe_load((out["basicsr"] / "spec.yaml").read_text())
    spec.update(protocol="basicsr", y_channel=True, crop_border=2)
    (out["basicsr"] / "spec.yaml").write_text(yaml.safe_dump(spec))
    out["fewer"] = base / "fewer"
    shutil.copytree(out["b"], out["fewer"])
    m = json.loads((out["fewer"] / "manifest.json").read_text())
    m["inputs"].pop("rocket")
    (out["fewer"] / "manifest.json").write_text(json.dumps(m))
    return out


@pytest.fixture()
def index(db: str):
    """A fresh index: a SQLite file, then a PostgreSQL database (the study tests' server)."""
    ix = RunIndex(db)
    yield ix
    ix.close()


def test_finished_runs_register_themselves(runs):
    assert index_url().startswith("sqlite:///") and "evalsuite-home-" in index_url()  # tests never touch ~
    ix = RunIndex(f"sqlite:///{runs['home'] / 'index.sqlite'}")
    df = ix.runs()
    assert list(df["run_dir"]) == [str(runs["a"].resolve()), str(runs["b"].resolve())]
    assert list(df["status"]) == [OK, OK] and list(df["methods"]) == ["bilinear,bicubic", "lanczos"]
    res = ix.results(int(df["id"].iloc[0]))
    summary = evalsuite.Results.load(runs["a"]).summary.set_index("method")
    psnr = res[res["metric"] == "psnr"].set_index("method")["value"]
    assert psnr["bicubic"] == pytest.approx(summary.loc["bicubic", "psnr"])
    ix.close()


def test_leaderboard_ranks_comparable_runs_only(index, runs, photos_dir):
    for k in ("a", "b", "basicsr", "fewer"):
        index.register(runs[k])
    lb = index.leaderboard("psnr", data=str(photos_dir), scale=2, protocol="default")
    # The run on fewer images is not comparable: its own board, never ranked with the others.
    assert [set(b.rows["run_dir"]) for b in lb.boards] == [
        {str(runs["a"].resolve()), str(runs["b"].resolve())}, {str(runs["fewer"].resolve())}
    ]
    assert list(lb.boards[0].rows["method"]) == ["lanczos", "bicubic", "bilinear"]  # higher is better
    # Lower is better: the order turns round.
    lower = index.leaderboard("consistency", data=str(photos_dir), scale=2, protocol="default")
    assert list(lower.boards[0].rows["method"]) == ["lanczos", "bicubic", "bilinear"]
    values = list(lower.boards[0].rows["value"])
    assert values == sorted(values)
    # Without --protocol, the basicsr run is another board; other scales or sets match nothing.
    assert len(index.leaderboard("psnr", data=str(photos_dir)).boards) == 3
    assert index.leaderboard("psnr", scale=4).boards == []
    assert index.leaderboard("psnr", data="set5").boards == []


def test_leaderboard_cli_says_which_boards_are_not_comparable(index, runs, photos_dir, capsys):
    for k in ("a", "basicsr"):
        index.register(runs[k])
    assert main(["runs", "--index", index.url, "leaderboard", "--metric", "psnr", "--scale", "2"]) == 0
    out = capsys.readouterr().out
    assert "psnr (higher is better)" in out
    assert "NOT comparable with the board above (protocol: basicsr: psnr/ssim on the Y channel, crop border 2)" in out
    index.register(runs["fewer"])
    assert main(["runs", "--index", index.url, "leaderboard", "--metric", "psnr", "--protocol", "default"]) == 0
    assert "NOT comparable with the board above (another set of images (by content))" in capsys.readouterr().out


def test_moved_deleted_and_rerun_folders_are_reported(index, runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["b"], run)
    rid = index.register(run).id
    assert index.find(rid)["status"] == OK
    moved = tmp_path / "elsewhere"
    run.rename(moved)
    assert index.find(rid)["status"] == MISSING
    lb = index.leaderboard("psnr")
    assert rid in set(lb.stale["id"]) and all(rid not in set(b.rows["run_id"]) for b in lb.boards)
    assert main(["runs", "--index", index.url, "leaderboard", "--metric", "psnr"]) == 0
    assert f"run {rid} at {run.resolve()}: its folder is missing" in capsys.readouterr().err
    # Registering the moved folder takes over its old entry.
    reg = index.register(moved)
    assert (reg.id, reg.moved_from) == (rid, str(run.resolve()))
    assert index.find(rid)["status"] == OK and index.find(str(moved))["id"] == rid
    # A rerun (or replaced) folder no longer holds what was registered.
    m = json.loads((moved / "manifest.json").read_text())
    m["seconds"] = 1e6
    (moved / "manifest.json").write_text(json.dumps(m))
    assert index.find(rid)["status"] == CHANGED
    assert main(["runs", "--index", index.url, "list"]) == 0
    assert "changed" in capsys.readouterr().out
    assert main(["runs", "--index", index.url, "rm", "--missing"]) == 0
    assert index.runs().empty


def test_runs_show_and_rm_by_folder(index, runs, capsys):
    rid = index.register(runs["a"]).id
    assert main(["runs", "--index", index.url, "show", str(runs["a"])]) == 0
    out = capsys.readouterr().out
    assert f"id: {rid}" in out and "bicubic" in out and "psnr" in out
    assert main(["runs", "--index", index.url, "rm", str(runs["a"])]) == 0
    with pytest.raises(ValueError, match="no registered run"):
        index.find(rid)
