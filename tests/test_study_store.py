"""The study store: exactly-once judgments under concurrent threads and processes (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import func, select
from study_support import (
    make_run_folder,
    submit_all,
)

from studies.design import StudyConfig, rater_plan
from studies.service import create_study, invite_raters
from studies.stimuli import build_stimuli, png_chunks, run_images
from studies.store import Judgment, Screen, Store


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run_folder(tmp_path_factory.mktemp("run"), n_images=4, size=32)


def _jobs(db: str, tokens: list[str], seed: int) -> list[tuple[int, int, str]]:
    store = Store(db, create=False)
    rng = np.random.default_rng(seed)
    jobs = []
    for token in tokens:
        rater = store.rater_by_token(token)
        jobs += [
            (rater.id, t.assignment_id, str(rng.choice(["left", "right"]))) for t in store.trials(rater.id)
        ]
    store.dispose()
    return jobs


def _check_exactly_once(db: str, jobs, results) -> None:
    """Every trial has one judgment, written by exactly one call, holding that call's choice."""
    created = {}
    for assignment_id, choice, was_created in results:
        if was_created:
            assert assignment_id not in created, f"trial {assignment_id} written twice"
            created[assignment_id] = choice
    assert set(created) == {j[1] for j in jobs}
    store = Store(db, create=False)
    with store._session() as s:
        assert s.scalar(select(func.count(Judgment.id))) == len(jobs)
        stored = dict(s.execute(select(Judgment.assignment_id, Judgment.choice)).all())
    store.dispose()
    assert stored == created


def _make_study(db: str, run_dir: Path, n_raters: int) -> list[str]:
    create_study(run_dir, db, task=1, methods=("bicubic", "nearest"), per_rater=3, n_catch=2, n_practice=1)
    return [token for _, token in invite_raters(db, n_raters)]


def test_concurrent_threads_write_each_judgment_exactly_once(db, run_dir):
    tokens = _make_study(db, run_dir, 3)
    # Every thread answers every trial (with conflicting choices), twice each, in its own order.
    workers = 8
    all_jobs = [_jobs(db, tokens, seed) for seed in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        results = sum(pool.map(submit_all, [db] * workers, all_jobs, range(workers)), [])
    assert len(results) == 2 * workers * len(all_jobs[0])
    _check_exactly_once(db, all_jobs[0], results)


def test_concurrent_processes_write_each_judgment_exactly_once(db, run_dir):
    tokens = _make_study(db, run_dir, 2)
    workers = 2  # process start-up dominates on a 2-core machine; two writers already race
    all_jobs = [_jobs(db, tokens, seed) for seed in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pending = pool.starmap_async(submit_all, [(db, all_jobs[k], k) for k in range(workers)])
        results = sum(pending.get(timeout=300), [])
    _check_exactly_once(db, all_jobs[0], results)


def test_only_a_shown_current_display_is_answered_once_and_refusals_are_logged(db, run_dir):
    tokens = _make_study(db, run_dir, 2)
    store = Store(db, create=False)
    a, b = store.rater_by_token(tokens[0]), store.rater_by_token(tokens[1])
    first, second = store.trials(a.id)[:2]
    d1 = store.issue_display(a.id, first.assignment_id)
    # Issuing a display marks nothing shown; an answer before the page reports the draw is refused.
    assert store.trials(a.id)[0].shown_at is None
    assert store.answer(a.id, d1, "left", 0.0).reason == "display never reported shown"
    assert store.display_shown(a.id, d1, Screen(1280, 800, 2.0))
    assert not store.display_shown(a.id, d1)  # reported once
    shown = store.trials(a.id)[0].shown_at
    assert shown is not None
    # Before the exposure ran out: refused. Another rater's token, an unknown id, a bad side: refused.
    assert store.answer(a.id, d1, "left", 60.0).reason == "answered before the exposure ended"
    assert store.answer(b.id, d1, "left", 0.0).reason == "unknown display"
    assert store.answer(a.id, "nope", "left", 0.0).reason == "unknown display"
    assert store.answer(a.id, d1, "up", 0.0).reason == "not a side"
    # A second display (reload, second tab) replaces the first: the old one can no longer be answered.
    d2 = store.issue_display(a.id, first.assignment_id)
    assert store.answer(a.id, d1, "left", 0.0).reason.startswith("replaced display")
    assert not store.display_shown(a.id, d1)
    assert store.display_shown(a.id, d2)
    res = store.answer(a.id, d2, "right", 0.0, exposed_s=0.8, client_latency_s=1.3)
    assert res.accepted and res.assignment_id == first.assignment_id
    # The page resending the same answer gets the judgment already stored (not a second one, not a refusal);
    # another choice for the answered display is refused, and the trial cannot be displayed again.
    again = store.answer(a.id, d2, "right", 0.0, exposed_s=0.8, client_latency_s=9.9)
    assert again.repeat and not again.accepted and not again.reason and again.assignment_id == first.assignment_id
    assert not res.repeat
    assert store.answer(a.id, d2, "left", 0.0).reason == "already answered"
    with pytest.raises(ValueError, match="already answered"):
        store.issue_display(a.id, first.assignment_id)
    with pytest.raises(PermissionError):
        store.issue_display(b.id, second.assignment_id)
    frame = store.judgments_frame()
    assert frame["choice"].tolist() == ["right"] and frame["latency_s"].iloc[0] >= 0
    assert frame["client_latency_s"].tolist() == [1.3]  # the first delivery's, not the resend's
    assert store.trials(a.id)[0].shown_at == shown  # the first time the trial was on screen
    refused = store.refusals_frame()
    assert len(refused) == 7 and refused["reason"].str.startswith("replaced").sum() == 1
    assert set(refused["rater_label"]) == {"R01", "R02"}
    raters = store.raters_frame().set_index("label")
    assert raters.loc["R01", ["window_w", "window_h", "dpr"]].tolist() == [1280, 800, 2.0]
    store.dispose()
    # "Server restart": a new Store sees the same progress; the rater resumes at the first open trial.
    again = Store(db, create=False)
    assert [t.answered for t in again.trials(a.id)][:2] == [True, False]
    assert again.rater_by_token("not-a-token") is None and again.rater_by_token("") is None
    again.dispose()


def test_concurrent_answers_of_one_display_count_once(db, run_dir):
    tokens = _make_study(db, run_dir, 1)
    store = Store(db, create=False)
    rater = store.rater_by_token(tokens[0])
    displays = []
    for t in store.trials(rater.id):
        d = store.issue_display(rater.id, t.assignment_id)
        store.display_shown(rater.id, d)
        displays.append(d)
    # 8 threads answer every display (resends, forged requests racing), 4 with each choice.
    def race(k: int) -> list[tuple[bool, bool]]:
        results = [store.answer(rater.id, d, ("left", "right")[k % 2], 0.0) for d in displays]
        return [(r.accepted, r.repeat) for r in results]

    with ThreadPoolExecutor(8) as pool:
        outcome = np.array(list(pool.map(race, range(8))))  # (thread, display, [accepted, repeat])
    assert (outcome[..., 0].sum(0) == 1).all()
    # The 3 other threads with the stored choice get a repeat; the 4 with the other choice are refused.
    assert (outcome[..., 1].sum(0) == 3).all()
    assert len(store.judgments_frame()) == len(displays)
    assert len(store.refusals_frame()) == 4 * len(displays)
    store.dispose()


def test_invites_continue_the_rater_indices_with_their_own_plans(tmp_path, run_dir):
    db = str(tmp_path / "s.db")
    _make_study(db, run_dir, 2)
    invite_raters(db, 1)
    store = Store(db, create=False)
    config = StudyConfig.from_dict(store.study(1))
    plan = store.assignments_frame(1)
    store.dispose()
    assert sorted(plan["rater_index"].unique()) == [0, 1, 2]
    for index, trials in plan.groupby("rater_index"):
        expected = [
            (t.position, t.block, t.kind, t.method, t.image_id, t.real_side) for t in rater_plan(config, int(index))
        ]
        got = trials[["position", "block", "kind", "method", "image_id", "real_side"]].astype(object)
        assert [tuple(None if pd.isna(v) else v for v in row) for row in got.itertuples(index=False)] == expected


def test_sqlite_runs_in_wal_mode(tmp_path, run_dir):
    db = tmp_path / "s.db"
    _make_study(str(db), run_dir, 1)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stimuli_are_reencoded_identically_without_metadata(tmp_path, run_dir):
    # Give the output files metadata the ground truth lacks: re-encoding must drop it.
    src = tmp_path / "run"
    make_run_folder(src, n_images=2, size=32, methods=("bicubic",))
    im = Image.open(src / "outputs/bicubic/img000.png")
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "bicubic upscaler")
    im.save(src / "outputs/bicubic/img000.png", pnginfo=info)
    stim = build_stimuli(src, ("img000", "img001"), ("bicubic",), show_lr=True)
    assert {(s.image_id, s.role) for s in stim} >= {("img000", "hr"), ("img000", "output"), ("img000", "lr")}
    for s in stim:
        chunks = png_chunks(s.png)
        assert chunks[0] == "IHDR" and chunks[-1] == "IEND" and set(chunks) == {"IHDR", "IDAT", "IEND"}
        assert b"bicubic" not in s.png and b"img000" not in s.png
        decoded = np.asarray(Image.open(__import__("io").BytesIO(s.png)))
        path = {"hr": "hr", "lr": "lr", "output": "outputs/bicubic"}.get(s.role)
        if path:
            assert np.array_equal(
                decoded, np.asarray(Image.open(src / path / f"{s.image_id}.png").convert("RGB"))
            )
        else:
            assert s.role == "catch" and decoded.shape == (32, 32, 3)


def test_run_folder_errors_name_the_folder_and_the_fix(tmp_path, run_dir):
    with pytest.raises(FileNotFoundError, match=r"no outputs for method 'sr3'.*bicubic, nearest"):
        run_images(run_dir, ["sr3"])
    with pytest.raises(FileNotFoundError, match="evalsuite run benchmark"):
        run_images(tmp_path, ["bicubic"])
    with pytest.raises(FileNotFoundError, match="study create"):
        Store(tmp_path / "empty.db", create=False)


def test_a_database_made_before_the_store_split_opens_and_continues(tmp_path):
    # tests/data/study-store-v1: written by the single-module store (before studies/store/ was split by
    # concern) by its make_fixture.py: two raters, one done, one with a refusal. No migration is needed.
    import io
    import shutil

    from study_support import answer_through_displays

    src = Path(__file__).parent / "data" / "study-store-v1"
    shutil.copy(src / "study.sqlite", tmp_path / "study.sqlite")
    store = Store(str(tmp_path / "study.sqlite"), create=False)
    for name in ("judgments", "refusals", "raters", "assignments"):
        now = pd.read_csv(io.StringIO(getattr(store, f"{name}_frame")().to_csv(index=False)))
        pd.testing.assert_frame_equal(now, pd.read_csv(src / f"{name}.csv"), check_dtype=False)
    tokens = (src / "tokens.txt").read_text().split()
    b = store.rater_by_token(tokens[1])
    before = len(store.judgments_frame())
    answered = answer_through_displays(store, b.id, lambda t: "right")
    assert answered and len(store.judgments_frame()) == before + len(answered)
    assert all(t.answered for t in store.trials(b.id))
    store.dispose()
