"""`evalsuite study create|invite|analyze` through the real command line parser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from study_support import answer_through_displays, make_large_run, make_run_folder

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
    assert main(["study", "invite", "--labels", "ann,ben", "--db", db, "--base-url", "http://example.org:9000"]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [label for label, _ in lines] == ["ann", "ben"]
    links = [link for _, link in lines]
    assert all(link.startswith("http://example.org:9000/?token=") for link in links)
    tokens = [parse_qs(urlparse(link).query)["token"][0] for link in links]
    assert len(set(tokens)) == 2
    assert main(["study", "analyze", "--db", db]) == 0
    assert "no judgments yet" in capsys.readouterr().out
    # Every rater picks the output (fooled) on real trials and on catch trials too: all fail the catch rule.
    store = Store(db, create=False)
    plan = store.assignments_frame().set_index(["rater_id", "position"])
    for token in tokens:
        rater = store.rater_by_token(token)

        def fooled(t, rater=rater):
            return "left" if plan.loc[(rater.public_id, t.position), "real_side"] == "right" else "right"

        answer_through_displays(store, rater.id, fooled)
    store.dispose()
    assert main(["study", "analyze", "--db", db, "--out", str(tmp_path / "a"), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "every rater (2) fails the exclusion rules" in out and "WITHOUT exclusion" in out
    assert "bicubic" in out and "1.000" in out and "no judgments yet" not in out
    fool = pd.read_csv(tmp_path / "a" / "fool_rates.csv")
    assert len(fool) == 2 and fool["exclusion"].str.startswith("none: every rater failed").all()
    assert main(["study", "analyze", "--db", db, "--no-exclusion", "--resamples", "100"]) == 0
    assert "WARNING" not in capsys.readouterr().out
    # The raw export: one row per planned trial, with labels, timings, displays and refusals.
    assert main(["study", "export", "--db", db, "--out", str(tmp_path / "t.parquet"),
                 "--refused", str(tmp_path / "r.csv")]) == 0
    capsys.readouterr()
    trials = pd.read_parquet(tmp_path / "t.parquet")
    assert len(trials) == 2 * (2 * 2 + 1) and trials["answered"].all()
    assert set(trials["rater_label"]) == {"ann", "ben"} and (trials["n_displays"] == 1).all()
    assert (trials["answered_at"] >= trials["shown_at"]).all() and trials["latency_s"].ge(0).all()
    assert {"block", "kind", "method", "image_id", "real_side", "choice", "n_refused"} <= set(trials.columns)
    assert len(pd.read_csv(tmp_path / "r.csv")) == 0
    assert main(["study", "export", "--db", db, "--out", str(tmp_path / "t.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err


def test_bad_input_exits_2_with_the_fix(tmp_path, capsys):
    run = make_run_folder(tmp_path / "run", n_images=2, size=16)
    db = str(tmp_path / "s.db")
    assert main(["study", "create", "--run", str(run), "--methods", "sr3", "--db", db]) == 2
    assert "no outputs for method 'sr3'" in capsys.readouterr().err
    assert main(["study", "invite", "-n", "1", "--db", str(tmp_path / "none.db")]) == 2
    assert "study create" in capsys.readouterr().err


def _create(run, db, *flags: str) -> tuple[dict, set[str], int, str]:
    """`study create` on a run into a fresh database: (config, image ids with stimuli, stimuli, printed text)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["study", "create", "--run", str(run), "--methods", "bicubic,nearest", "--db", db, *flags]) == 0
    with Store(db, create=False) as store:
        (study,) = store.studies()
        stimuli = store.stimulus_ids(study["id"])
    return study, {image for image, _role, _method in stimuli}, len(stimuli), out.getvalue()


def test_a_large_run_gets_the_papers_study_by_default_and_flags_change_it(tmp_path):
    """Issue 30 item 6: more than 100 images -> a seeded subset of 100, 50 per rater and method, said so with the
    flags that change it, and stimuli stored for the study's images only; --images/--per-rater/--seed override."""
    from studies.design import study_size

    run = make_large_run(tmp_path / "run", 110, size=8)
    study, stored, n_stimuli, out = _create(run, str(tmp_path / "a.db"))
    assert (study["n_images"], study["per_rater"]) == (100, 50)
    assert stored == set(study["image_ids"]) and n_stimuli == 100 * 5  # hr, catch, lr and two outputs each
    assert "a seeded random subset of 100 of the run's 110 images (seed 0) (the paper's protocol" in out
    assert "50 of them per rater and method" in out and "--images N (or all), --per-rater N (or all)" in out
    assert "104 main trials per rater" in out  # 50 per method x 2 + 4 catch
    small, stored, n_stimuli, out = _create(run, str(tmp_path / "d.db"), "--images", "30", "--per-rater", "10",
                                            "--seed", "1")
    assert (small["n_images"], small["per_rater"], len(stored), n_stimuli) == (30, 10, 30, 150)
    assert "subset of 30 of the run's 110 images (seed 1)" in out and "(default" not in out
    every, stored, _, out = _create(run, str(tmp_path / "e.db"), "--images", "all", "--per-rater", "all")
    assert (every["n_images"], every["per_rater"], len(stored)) == (110, 110, 110) and "all 110 images" in out
    # A run of at most 100 images keeps all of them; per rater at most 50 by default; counts are cut to what is.
    assert study_size(60, None, None) == (60, 50) and study_size(4, None, None) == (4, 4)
    assert study_size(100, None, None) == (100, 50) and study_size(101, None, None) == (100, 50)
    assert study_size(110, 500, "all") == (110, 110) and study_size(110, "all", 70) == (110, 70)
    with pytest.raises(ValueError, match="--per-rater must be a positive number"):
        study_size(110, None, 0)
    with pytest.raises(SystemExit):
        main(["study", "create", "--run", str(run), "--methods", "bicubic", "--db", str(tmp_path / "g.db"),
              "--images", "0"])
