"""`evalsuite study create|invite|analyze` through the real command line parser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from study_support import make_run_folder

from evalsuite.cli import main
from studies.store import Store


def test_create_invite_answer_analyze(tmp_path, capsys):
    run = make_run_folder(tmp_path / "run", n_images=4, size=16)
    db = str(tmp_path / "study.db")
    assert (
        main(
            [
                "study",
                "create",
                "--run",
                str(run),
                "--task",
                "2",
                "--methods",
                "bicubic,nearest",
                "--images",
                "4",
                "--per-rater",
                "2",
                "--catch",
                "1",
                "--practice",
                "0",
                "--db",
                db,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "task 2, 4 images" in out and "multiple of 2 raters" in out and "?admin=" in out
    assert main(["study", "invite", "-n", "2", "--db", db, "--base-url", "http://example.org:9000"]) == 0
    links = capsys.readouterr().out.split()
    assert len(links) == 2 and all(link.startswith("http://example.org:9000/?token=") for link in links)
    tokens = [parse_qs(urlparse(link).query)["token"][0] for link in links]
    assert len(set(tokens)) == 2
    assert main(["study", "analyze", "--db", db]) == 0
    assert "no judgments yet" in capsys.readouterr().out
    # Every rater picks the output (fooled) on real trials and the ground truth on catch trials.
    store = Store(db, create=False)
    plan = store.assignments_frame().set_index(["rater_id", "position"])
    for token in tokens:
        rater = store.rater_by_token(token)
        for t in store.trials(rater.id):
            row = plan.loc[(rater.public_id, t.position)]
            fake = "left" if row["real_side"] == "right" else "right"
            store.submit(rater.id, t.assignment_id, row["real_side"] if row["kind"] == "catch" else fake)
    store.dispose()
    assert main(["study", "analyze", "--db", db, "--out", str(tmp_path / "a"), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "1.000" in out
    assert (tmp_path / "a" / "fool_rates.csv").read_text().count("\n") == 3


def test_bad_input_exits_2_with_the_fix(tmp_path, capsys):
    run = make_run_folder(tmp_path / "run", n_images=2, size=16)
    db = str(tmp_path / "s.db")
    assert main(["study", "create", "--run", str(run), "--methods", "sr3", "--db", db]) == 2
    assert "no outputs for method 'sr3'" in capsys.readouterr().err
    assert main(["study", "invite", "-n", "1", "--db", str(tmp_path / "none.db")]) == 2
    assert "study create" in capsys.readouterr().err
