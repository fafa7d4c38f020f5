"""The study store: exactly-once judgments under concurrent threads and processes (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import func, select

from studies.design import StudyConfig, rater_plan
from studies.service import create_study, invite_raters
from studies.stimuli import build_stimuli, png_chunks, run_images
from studies.store import Judgment, Store
from study_support import (
    fresh_postgres_database,
    make_run_folder,
    postgres_bin,
    postgres_server,
    submit_all,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run_folder(tmp_path_factory.mktemp("run"), n_images=4, size=32)


@pytest.fixture(scope="module")
def pg_server():
    if postgres_bin() is None:
        pytest.skip(
            "PostgreSQL server binaries not found (Debian package postgresql; scripts/setup-system.sh)"
        )
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "study.db")
    server = request.getfixturevalue("pg_server")
    return fresh_postgres_database(server, f"t_{uuid.uuid4().hex[:12]}")


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


def test_resume_after_restart_and_tokens_bind_raters(db, run_dir):
    tokens = _make_study(db, run_dir, 2)
    store = Store(db, create=False)
    a, b = store.rater_by_token(tokens[0]), store.rater_by_token(tokens[1])
    trials = store.trials(a.id)
    for t in trials[:3]:
        first = store.mark_shown(t.assignment_id)
        # A second show (a reload) keeps and returns the first time.
        assert first is not None and store.mark_shown(t.assignment_id) == first
        assert store.submit(a.id, t.assignment_id, "left").created
    # A repeat (double click, reload) keeps the first answer.
    assert store.submit(a.id, trials[0].assignment_id, "right") == store.submit(
        a.id, trials[0].assignment_id, "left"
    )
    assert store.submit(a.id, trials[0].assignment_id, "right").choice == "left"
    # A link cannot answer someone else's trial, and a wrong token finds nobody.
    with pytest.raises(PermissionError):
        store.submit(b.id, trials[3].assignment_id, "left")
    assert store.rater_by_token("not-a-token") is None and store.rater_by_token("") is None
    store.dispose()
    # "Server restart": a new Store sees the same progress; the rater resumes at the first open trial.
    again = Store(db, create=False)
    resumed = again.trials(a.id)
    assert [t.answered for t in resumed] == [True] * 3 + [False] * (len(resumed) - 3)
    assert [t.shown_at for t in resumed[:3]] == [again.mark_shown(t.assignment_id) for t in trials[:3]]
    frame = again.judgments_frame()
    assert len(frame) == 3 and (frame["latency_s"] >= 0).all() and set(frame["choice"]) == {"left"}
    again.dispose()


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
