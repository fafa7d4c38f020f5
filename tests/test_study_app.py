"""The rater app's page flow with Streamlit's AppTest: instructions, practice, timed trials, thanks, admin."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from study_support import make_run_folder

from studies.service import DB_ENV, admin_token, create_study, invite_raters
from studies.store import Store

APP = str(Path(__file__).resolve().parents[1] / "studies" / "app.py")


@pytest.fixture()
def study(tmp_path, monkeypatch):
    run = make_run_folder(tmp_path / "run", n_images=3, size=16)
    db = str(tmp_path / "study.db")
    made = create_study(
        run, db, task=1, methods=("bicubic", "nearest"), per_rater=2, n_catch=1, n_practice=1, exposure_s=0.5
    )
    monkeypatch.setenv(DB_ENV, db)
    return db, made


def _app(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _page_text(at: AppTest) -> str:
    """Everything the page sends that a rater could read: texts, HTML, labels, keys and widget ids."""
    parts = []
    for kind in ("title", "markdown", "caption", "info", "success", "error", "warning"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [e.proto.body for e in at.get("html")]
    parts += [p.proto.text for p in at.get("progress")]
    parts += [f"{b.label} {b.key} {b.proto.id}" for b in at.button]
    return "\n".join(parts)


def test_rater_flow_records_exactly_the_clicks_and_leaks_nothing(study):
    db, made = study
    token = invite_raters(db, 1)[0][1]
    at = _app(token=token)
    assert at.title[0].value == "Image comparison" and "0.5 seconds" in at.markdown[0].value
    at.button(key="start").click().run()
    clicks, rng = [], np.random.default_rng(0)
    forbidden = ["bicubic", "nearest", "img00", "outputs", ".png", "hr/", "ground truth"]
    store = Store(db, create=False)
    stimulus_ids = list(store.stimulus_ids(made.study_id).values())
    for step in range(6):  # 1 practice + 2 x 2 real + 1 catch
        if "start_main" in [b.key for b in at.button]:
            assert at.title[0].value == "Practice done"
            at.button(key="start_main").click().run()
        text = _page_text(at)
        assert not at.exception
        html = at.get("html")[0].proto.body
        # Task 1: left, LR input, right; the pair hides after the exposure time.
        assert len(re.findall(r"data:image/png;base64,", html)) == 3
        assert "animation:es-hide 0s linear 0.5" in html or "animation:es-hide 0s linear 0.4" in html
        assert re.findall(r'alt="([^"]*)"', html) == ["left", "low resolution input", "right"]
        for word in forbidden + stimulus_ids:
            assert word not in text, f"page names {word!r}"
        expected = "Practice 1 of 1" if step == 0 else f"Image pair {step} of 5"
        assert at.get("progress")[0].proto.text == expected
        side = str(rng.choice(["left", "right"]))
        clicks.append(side)
        at.button(key=next(b.key for b in at.button if b.label == side.capitalize())).click().run()
        if step == 0:
            assert "undamaged image" in at.info[0].value
    assert at.title[0].value == "Thank you!"
    frame = store.judgments_frame()
    assert frame.sort_values("position")["choice"].tolist() == clicks
    assert (frame["latency_s"] > 0).all()
    # A reload resumes on the thank-you page; nothing is asked again.
    assert _app(token=token).title[0].value == "Thank you!"
    store.dispose()


def test_reload_resumes_and_does_not_show_the_pair_again_after_the_exposure(study):
    db, _ = study
    token = invite_raters(db, 1)[0][1]
    at = _app(token=token)
    at.button(key="start").click().run()
    at.button(key=next(b.key for b in at.button if b.label == "Left")).click().run()  # practice
    at.button(key="start_main").click().run()
    at.button(key=next(b.key for b in at.button if b.label == "Right")).click().run()
    assert at.get("progress")[0].proto.text == "Image pair 2 of 5"
    time.sleep(0.6)  # past the 0.5 s exposure of the trial now shown
    again = _app(token=token)
    assert "Continue" in [b.label for b in again.button]
    again.button(key="start").click().run()
    assert again.get("progress")[0].proto.text == "Image pair 2 of 5"
    html = again.get("html")[0].proto.body
    assert html.count("data:image/png;base64,") == 1  # only the LR input; the pair is not sent again


def test_bad_links_and_the_admin_page(study):
    db, made = study
    assert "not valid" in _app(token="forged-token").error[0].value
    assert "not valid" in _app(admin="forged").error[0].value
    assert "personal link" in _app().warning[0].value
    at = _app(admin=made.admin_token)
    assert "No raters yet" in at.info[0].value
    (public_id, token), _ = invite_raters(db, 2)
    at = _app(admin=made.admin_token)
    raters, methods = at.dataframe[0].value, at.dataframe[1].value
    assert len(raters) == 2 and list(raters["trials"]) == [5, 5] and list(raters["answered"]) == [0, 0]
    assert list(methods["method"]) == ["bicubic", "nearest"] and list(methods["planned"]) == [4, 4]
    # One rater answers every trial: the catch trial right, every real trial fooled.
    store = Store(db, create=False)
    rater = store.rater_by_token(token)
    plan = store.assignments_frame().set_index(["rater_id", "position"])
    for t in store.trials(rater.id):
        real_side = plan.loc[(public_id, t.position), "real_side"]
        fake_side = "left" if real_side == "right" else "right"
        store.submit(rater.id, t.assignment_id, real_side if t.kind == "catch" else fake_side)
    store.dispose()
    at = _app(admin=made.admin_token)
    raters, methods = at.dataframe[0].value.set_index("rater_id"), at.dataframe[1].value.set_index("method")
    assert raters.loc[public_id, ["answered", "catch_correct", "catch_answered"]].tolist() == [5, 1, 1]
    assert raters["answered"].sum() == 5
    assert methods["answered"].tolist() == [2, 2] and methods["fool_rate_so_far"].tolist() == [1.0, 1.0]
    # A new admin token replaces the old one.
    new = admin_token(db)
    assert "not valid" in _app(admin=made.admin_token).error[0].value
    assert _app(admin=new).title[0].value.startswith("Study ")
