"""Crowd studies: one rater per participant under concurrent arrivals (SQLite and PostgreSQL), slots handed out
in order and reassigned when abandoned, revocation, consent, attention checks, duels in the judgments frame
(-> studies.ranking pairs), the crowd pages (AppTest) and the create/revoke command line."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest
from study_support import (
    answer_through_displays,
    make_run_folder,
)

from evalsuite.cli import main
from studies.design import CrowdConfig, StudyConfig, rater_plan
from studies.payload import decode_rgb
from studies.ranking import pairs_from_judgments
from studies.service import DB_ENV, create_study
from studies.store import Rater, Stimulus, Store

METHODS = ("bicubic", "nearest", "m3", "m4")
APP = str(Path(__file__).resolve().parents[1] / "studies" / "app.py")
HOUR = 3600.0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run_folder(tmp_path_factory.mktemp("run"), n_images=4, size=16, methods=METHODS)


def _crowd_study(run_dir: Path, db: str, **crowd) -> tuple[int, StudyConfig]:
    made = create_study(
        run_dir, db, task=1, methods=METHODS, per_rater=1, n_catch=1, n_practice=1, exposure_s=0.5,
        design="both", per_pair=1, n_attention=1, crowd=CrowdConfig(enabled=True, **crowd),
    )
    return made.study_id, made.config


def _join(store: Store, study_id: int, config: StudyConfig, pid: str, timeout_s: float = HOUR):
    return store.join(study_id, pid, functools.partial(rater_plan, config), timeout_s, {"platform": "prolific"})


def _plan_key(store: Store, rater_index: int, public_id: str) -> list[tuple]:
    frame = store.assignments_frame()
    rows = frame[frame["rater_id"] == public_id].sort_values("position")
    assert (rows["rater_index"] == rater_index).all()
    cols = rows[["kind", "method", "method_b", "image_id", "real_side"]].astype(object)
    return [tuple(r) for r in cols.where(cols.notna(), None).itertuples(index=False)]


def _expected(config: StudyConfig, slot: int) -> list[tuple]:
    return [(t.kind, t.method, t.method_b, t.image_id, t.real_side) for t in rater_plan(config, slot)]


def test_concurrent_arrivals_make_one_rater_per_participant_and_distinct_slots(db, run_dir):
    study_id, config = _crowd_study(run_dir, db)
    store = Store(db, create=False)
    n = 8
    barrier = threading.Barrier(n)

    def arrive(pid: str):
        barrier.wait()  # all threads arrive at once
        return _join(store, study_id, config, pid)

    try:
        # One participant, eight simultaneous arrivals (reloads, second tabs): one rater.
        with ThreadPoolExecutor(n) as pool:
            same = list(pool.map(arrive, ["P-same"] * n))
        assert len({r.id for r in same}) == 1 and sum(r.created for r in same) == 1
        # Eight participants at once: eight raters on eight distinct slots, each with its slot's plan.
        with ThreadPoolExecutor(n) as pool:
            many = list(pool.map(arrive, [f"P{k}" for k in range(n)]))
        assert all(r.created for r in many)
        assert sorted(r.index for r in many) == list(range(1, n + 1))
        with store._session() as s:
            rows = s.execute(select(Rater.participant_id, Rater.index, Rater.status)).all()
        assert len(rows) == n + 1 and {r.status for r in rows} == {"active"}
        for r in [same[0], *many]:
            assert _plan_key(store, r.index, r.public_id) == _expected(config, r.index)
    finally:
        store.dispose()


def _age(store: Store, rater_id: int, hours: float = 2.0) -> None:
    """Pretend the rater was last seen `hours` ago."""
    old = datetime.now(timezone.utc) - timedelta(hours=hours)
    with store.engine.begin() as conn:
        conn.execute(update(Rater).where(Rater.id == rater_id).values(last_seen=old))


def test_abandoned_slots_go_to_the_next_arrival_finished_ones_do_not_and_revoked_are_refused(db, run_dir):
    study_id, config = _crowd_study(run_dir, db)
    store = Store(db, create=False)
    try:
        a = _join(store, study_id, config, "A")
        trials = store.trials(a.id)
        for t in trials[:2]:  # A answers two trials, then leaves
            d = store.issue_display(a.id, t.assignment_id)
            store.display_shown(a.id, d)
            assert store.answer(a.id, d, "left", 0.0).accepted
        b = _join(store, study_id, config, "B")
        assert (a.index, b.index) == (0, 1)
        # Within the timeout nobody takes A's slot.
        assert _join(store, study_id, config, "C").index == 2
        # A inactive for longer than the timeout: the next arrival gets slot 0 with slot 0's full plan.
        _age(store, a.id)
        d = _join(store, study_id, config, "D")
        assert d.index == 0 and d.created
        assert _plan_key(store, 0, d.public_id) == _expected(config, 0)
        # A comes back: the same rater, told the slot expired; their answers are kept; nothing more counts.
        back = _join(store, study_id, config, "A")
        assert back.id == a.id and back.status == "expired" and not back.created
        judged = store.judgments_frame(study_id)
        assert (judged["rater_label"] == "A").sum() == 2 and set(judged["rater_status"]) == {"expired"}
        pending = store.trials(a.id)[2]
        with pytest.raises(PermissionError, match="expired"):
            store.issue_display(a.id, pending.assignment_id)
        # B finishes; even long inactive, a finished slot is never handed out again.
        answer_through_displays(store, b.id, lambda t: "right")
        _age(store, b.id)
        assert _join(store, study_id, config, "E").index == 3
        # Revoking D (by participant id): refused from now on, and the unfinished slot 0 is free again.
        t = store.trials(d.id)[0]
        disp = store.issue_display(d.id, t.assignment_id)
        store.display_shown(d.id, disp)
        assert store.revoke(study_id, participant_id="D") == ["D"]
        assert store.answer(d.id, disp, "left", 0.0).reason == "rater revoked"
        assert store.refusals_frame(study_id)["reason"].tolist() == ["rater revoked"]
        assert _join(store, study_id, config, "D").status == "revoked"
        assert _join(store, study_id, config, "F").index == 0
        with pytest.raises(ValueError, match="no rater 'nobody'"):
            store.revoke(study_id, label="nobody")
        # Consent: the first acceptance time is kept.
        store.record_consent(b.id)
        first = store.rater(b.id).consented_at
        store.record_consent(b.id)
        assert first is not None and store.rater(b.id).consented_at == first
    finally:
        store.dispose()


def test_duels_and_attention_reach_the_pairs_format_with_the_chosen_side_as_winner(tmp_path, run_dir):
    db = str(tmp_path / "s.db")
    study_id, config = _crowd_study(run_dir, db)
    store = Store(db, create=False)
    raters = [_join(store, study_id, config, f"P{k}") for k in range(3)]
    rng = np.random.default_rng(0)
    for r in raters:
        answer_through_displays(store, r.id, lambda t: str(rng.choice(["left", "right"])))
    # Which image each stored stimulus is, from the stimulus table (independent of the judgments frame).
    with store._session() as s:
        stimuli = {row.id: row for row in s.scalars(select(Stimulus).where(Stimulus.study_id == study_id))}
    frame = store.judgments_frame(study_id)
    trials = store.trials_frame(study_id).set_index(["rater_id", "position"])
    expected = []
    with store._session() as s:
        from studies.store import Assignment

        assignment = {(a.rater_id, a.position): a for a in s.scalars(select(Assignment))}
    ids = {r.public_id: r.id for r in raters}
    for row in frame.itertuples():
        a = assignment[(ids[row.rater_id], row.position)]
        chosen = stimuli[a.left_id if row.choice == "left" else a.right_id]
        if row.kind == "attention":
            # The attention image is flat blocks of grey: plainly broken, same size as the real one.
            other = stimuli[a.right_id if a.real_side == "left" else a.left_id]
            pix = np.frombuffer(decode_rgb(other.png).rgb, np.uint8).reshape(16, 16, 3)
            assert other.role == "attention" and (pix[..., 0] == pix[..., 2]).all()
            assert decode_rgb(other.png).width == decode_rgb(stimuli[a.left_id].png).width
        if row.block != "main" or row.kind not in ("real", "duel"):
            continue
        winner = "real" if chosen.role == "hr" else chosen.method
        expected.append((row.rater_id, row.image_id, row.method, row.method_b if row.kind == "duel" else "real",
                         winner))
    pairs = pairs_from_judgments(frame)
    got = list(pairs[["rater", "image_id", "option_a", "option_b", "winner"]].itertuples(index=False, name=None))
    assert sorted(got) == sorted(expected)
    # Per rater: 4 method-vs-real trials and all 6 method pairs once.
    assert len(pairs) == 3 * (4 + 6)
    duels = pairs[pairs["option_b"] != "real"]
    assert duels.groupby("rater").size().tolist() == [6, 6, 6]
    assert set(map(tuple, duels[["option_a", "option_b"]].to_numpy())) == {p for p in config.pairs}
    assert frame.loc[frame["kind"] == "attention", "option_a"].isna().all()
    assert len(trials) == 3 * (1 + config.trials_per_rater)
    # The rater record counts the attention check with the catch trial (1 + 1 per rater).
    from studies.analysis import analyze_frame

    record = analyze_frame(frame, store.studies(), None, n_resamples=50).raters
    assert record["n_catch"].tolist() == [2, 2, 2]
    checks = frame[frame["kind"].isin(["catch", "attention"]) & (frame["block"] == "main")]
    assert record.set_index("rater_id")["catch_accuracy"].to_dict() == checks.groupby("rater_id")[
        "chose_real"].mean().to_dict()
    store.dispose()


# --------------------------------------------------------------------------- the pages (AppTest)
def _app(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_crowd_pages_consent_links_expiry_revocation_and_completion_code(tmp_path, run_dir, monkeypatch):
    db = str(tmp_path / "s.db")
    study_id, config = _crowd_study(run_dir, db, completion_code="C0DE42", consent="I agree to **take part**.")
    monkeypatch.setenv(DB_ENV, db)
    with Store(db, create=False) as store:
        slug = store.public_slug(study_id)
    link = dict(study=slug, PROLIFIC_PID="p1", STUDY_ID="s1", SESSION_ID="x1")
    at = _app(**link)
    assert not at.exception and at.title[0].value == "Consent" and "take part" in at.markdown[0].value
    # A second session (reload, second tab) finds the same rater; nothing is shown before consent.
    _app(**link)
    with Store(db, create=False) as store:
        raters = store.raters_frame(study_id)
        assert raters["participant_id"].tolist() == ["p1"] and raters["consented_at"].isna().all()
    at.button(key="consent").click().run()
    assert at.title[0].value == "Image comparison" and at.button(key="start").disabled
    with Store(db, create=False) as store:
        rater = store.rater_by_participant(study_id, "p1")
        assert rater.consented_at is not None
        answer_through_displays(store, rater.id, lambda t: "left")
    at = _app(**link)
    assert at.title[0].value == "Thank you!" and at.code[0].value == "C0DE42"
    # Links without a participant, with Prolific's unfilled placeholder, an MTurk preview, a wrong slug.
    assert "participant id" in _app(study=slug).warning[0].value
    assert "not valid" in _app(study=slug, PROLIFIC_PID="{{%PROLIFIC_PID%}}").warning[0].value
    assert "Accept the HIT" in _app(study=slug, workerId="W1", assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE").warning[
        0].value
    assert "not valid" in _app(study="nope", PROLIFIC_PID="p2").error[0].value
    # An MTurk worker gets a rater too; revoked, the page refuses; an expired slot is explained.
    assert _app(study=slug, workerId="W1", assignmentId="A1", hitId="H1").title[0].value == "Consent"
    assert main(["study", "revoke", "--db", db, "--participant", "W1"]) == 0
    assert "withdrawn" in _app(study=slug, workerId="W1", assignmentId="A1").error[0].value
    with Store(db, create=False) as store:
        late = store.rater_by_participant(study_id, "W1")
        assert late.status == "revoked" and late.index == 1
        p3 = _join(store, study_id, config, "p3")
        assert p3.index == 1  # the revoked, unfinished slot went to the next arrival
        _age(store, p3.id)
        _join(store, study_id, config, "p4")
    assert "expired" in _app(study=slug, PROLIFIC_PID="p3").warning[0].value


def test_create_prints_the_crowd_urls_and_revoke_by_label(tmp_path, run_dir, capsys):
    db = str(tmp_path / "c.db")
    consent = tmp_path / "consent.md"
    consent.write_text("You agree.\n")
    args = ["study", "create", "--run", str(run_dir), "--methods", ",".join(METHODS), "--db", db,
            "--per-rater", "1", "--design", "both", "--per-pair", "2", "--attention", "1",
            "--completion-url", "https://app.prolific.com/submissions/complete?cc=XYZ", "--consent-file",
            str(consent), "--slot-timeout", "20", "--base-url", "https://study.example.org"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "duels: 6 method pairs x 2 images per rater" in out
    assert "https://study.example.org/?study=" in out and "&PROLIFIC_PID={{%PROLIFIC_PID%}}" in out
    assert "after 20 min" in out and "invite" not in out
    with Store(db, create=False) as store:
        cfg = StudyConfig.from_dict(store.studies()[0])
    assert cfg.crowd.consent == "You agree." and cfg.crowd.enabled and cfg.n_attention == 1
    assert cfg.trials_per_rater == 4 + 12 + 4 + 1
    # Invited raters still work next to the crowd URL, and a label can be revoked.
    assert main(["study", "invite", "--labels", "ann", "--db", db]) == 0
    assert "?token=" in capsys.readouterr().out
    assert main(["study", "revoke", "--db", db, "--rater", "ann"]) == 0
    assert "revoked ann" in capsys.readouterr().out
    assert main(["study", "revoke", "--db", db, "--rater", "bob"]) == 2
    assert "no rater 'bob'" in capsys.readouterr().err
    assert main(args[:-4] + ["--completion-url", "ftp://x"]) == 2
    assert "https://" in capsys.readouterr().err


def test_duel_and_attention_payloads_are_as_blind_as_every_pair(tmp_path, run_dir):
    """No side channel in the new trial kinds: both images of a duel or an attention check arrive as raw rows
    of one length, under the standard header (nothing names a method or a kind)."""
    import secrets

    from studies.payload import display_payload, parse_payload, study_need

    db = str(tmp_path / "s.db")
    study_id, config = _crowd_study(run_dir, db)
    store = Store(db, create=False)
    rater = _join(store, study_id, config, "P1")
    need = study_need(store.stimulus_sizes(study_id))
    kinds = dict(zip(store.assignments_frame(study_id)["position"], store.assignments_frame(study_id)["kind"],
                     strict=True))
    seen = set()
    for t in store.trials(rater.id):
        data = display_payload(t, secrets.token_hex(16), 0.5, need, lambda sid: decode_rgb(store.stimulus_png(sid)))
        header, blocks = parse_payload(data)
        assert len(blocks) == 3 and len(blocks[0]) == len(blocks[1]) == 16 * 16 * 3
        assert set(header) == {"v", "mode", "display", "exposure_ms", "w", "h", "lr", "need", "shown_url"}
        head = data[4 : 4 + int.from_bytes(data[:4], "big")]
        assert not [w for w in (*METHODS, "duel", "attention", "real") if w.encode() in head]
        seen.add(kinds[t.position])
    store.dispose()
    assert seen == {"real", "duel", "catch", "attention"}


def test_completion_url_placeholders_are_filled_from_the_link_and_checked():
    from studies.pages import completion_target

    mturk = {"workerId": "W 1", "assignmentId": "A&1", "hitId": "H1", "turkSubmitTo": "https://workersandbox.mturk.com/"}
    url = completion_target("{turkSubmitTo}/mturk/externalSubmit?assignmentId={assignmentId}&done=1", mturk)
    assert url == "https://workersandbox.mturk.com/mturk/externalSubmit?assignmentId=A%261&done=1"
    prolific = {"PROLIFIC_PID": "p1"}
    assert completion_target("https://app.prolific.com/submissions/complete?cc=XYZ", prolific) == (
        "https://app.prolific.com/submissions/complete?cc=XYZ"
    )
    assert completion_target("https://x.org/?a={assignmentId}", prolific) is None  # no value for it
    assert completion_target("{turkSubmitTo}/s", {**mturk, "turkSubmitTo": "javascript:alert(1)"}) is None
    with pytest.raises(ValueError, match="completion-url"):
        CrowdConfig(True, completion_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="slot-timeout"):
        CrowdConfig(True, slot_timeout_min=0)


def test_a_database_from_an_older_evalsuite_is_refused_with_the_fix(tmp_path, run_dir, capsys):
    import sqlite3

    db = tmp_path / "old.db"
    _crowd_study(run_dir, str(db))
    with sqlite3.connect(db) as conn:  # what a database made before duels looked like: no method_b
        conn.execute("ALTER TABLE assignments DROP COLUMN method_b")
    with pytest.raises(RuntimeError, match="assignments lacks method_b.*re-create the study"):
        Store(str(db), create=False)
    assert main(["study", "invite", "-n", "1", "--db", str(db)]) == 2
    assert "older evalsuite" in capsys.readouterr().err
