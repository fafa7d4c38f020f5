"""The rater app's server route: `POST /_evalsuite/shown` records a display drawn (no Streamlit rerun), for
the display's own rater only, once; malformed, oversized, unknown and replaced reports record nothing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from study_support import make_run_folder, served_app

from studies.payload import SHOWN_PATH
from studies.service import create_study, invite_raters
from studies.store import RaterInfo, Screen, Store


def _post(base: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}/{SHOWN_PATH}", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _report(display: str, w: int = 1500, h: int = 900, dpr: float = 2.0) -> bytes:
    return json.dumps({"type": "shown", "display": display, "w": w, "h": h, "dpr": dpr}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    run = make_run_folder(root / "run", n_images=2, size=32)
    db = str(root / "study.db")
    create_study(run, db, task=2, methods=("bicubic",), per_rater=2, n_catch=0, n_practice=0, exposure_s=0.2)
    with served_app(db) as base:
        yield db, base


def _pending_display(db: str) -> tuple[RaterInfo, int, str]:
    """A new rater's first trial, displayed: (rater, assignment id, display id)."""
    token = invite_raters(db, 1)[0][1]
    with Store(db, create=False) as store:
        rater = store.rater_by_token(token)
        trial = store.trials(rater.id)[0]
        return rater, trial.assignment_id, store.issue_display(rater.id, trial.assignment_id)


def test_shown_route_records_the_display_once_with_the_screen(served):
    db, base = served
    rater, assignment_id, display = _pending_display(db)
    rater_id = rater.id
    assert _post(base, _report(display)) == (200, {"ok": True})
    with Store(db, create=False) as store:
        first = next(t for t in store.trials(rater_id) if t.assignment_id == assignment_id).shown_at
    assert first is not None
    # Already shown: the first draw counts, and a later report changes nothing (neither time nor screen).
    assert _post(base, _report(display, w=800, h=600, dpr=1.0)) == (200, {"ok": False})
    with Store(db, create=False) as store:
        trial = next(t for t in store.trials(rater_id) if t.assignment_id == assignment_id)
        assert trial.shown_at == first
        raters = store.raters_frame()
        row = raters[raters["rater_id"] == rater.public_id].iloc[0]
        assert (row["window_w"], row["window_h"], row["dpr"]) == (1500, 900, 2.0)
        # The route's "shown" is what the answer checks: after the exposure the answer counts.
        time.sleep(0.25)
        assert store.answer(rater_id, display, "left", 0.2).accepted


def test_shown_route_refuses_what_it_cannot_trust(served):
    db, base = served
    rater, assignment_id, display = _pending_display(db)
    rater_id = rater.id
    assert _post(base, b"not json")[0] == 400
    assert _post(base, json.dumps({"display": 7}).encode())[0] == 400
    assert _post(base, json.dumps(["a list"]).encode())[0] == 400
    assert _post(base, _report(display) + b" " * 2000)[0] == 413
    assert _post(base, _report("0" * 32)) == (200, {"ok": False})  # no such display
    with Store(db, create=False) as store:
        fresh = store.issue_display(rater_id, assignment_id)  # a reload: the first display is replaced
        assert _post(base, _report(display)) == (200, {"ok": False})
        assert next(t for t in store.trials(rater_id) if t.assignment_id == assignment_id).shown_at is None
        # A malformed or absurd screen still records the draw, without the screen (no database error).
        absurd = {"display": fresh, "w": 10**12, "h": -5, "dpr": float("nan")}
        assert _post(base, json.dumps(absurd).encode()) == (200, {"ok": True})
        raters = store.raters_frame()
        assert raters.loc[raters["rater_id"] == rater.public_id, "window_w"].isna().all()
        assert next(t for t in store.trials(rater_id) if t.assignment_id == assignment_id).shown_at is not None


@pytest.mark.parametrize("bad", [{"w": 10**12}, {"w": 0}, {"h": -5}, {"h": 100_001}, {"dpr": float("nan")},
                                 {"dpr": 0.0}, {"dpr": 40.0}, {"w": "wide"}, {"dpr": None}])
def test_a_screen_report_out_of_range_is_not_a_screen(bad):
    good = {"w": 1500, "h": 900, "dpr": 2.0}
    assert Screen.from_report(good) == Screen(1500, 900, 2.0)
    assert Screen.from_report(good | bad) is None
    assert Screen.from_report({"w": 1500, "h": 900}) is None
