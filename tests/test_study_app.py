"""The rater app's pages with Streamlit's AppTest: instructions behind the screen check, bad links, and
the admin page (labels, progress, the analysis' own catch accuracy, exclusion and fool rates).
The trial flow itself (the display component) is tested in a real browser: tests/test_study_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from study_support import answer_through_displays, make_run_folder

from studies.analysis import analyze
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


def test_instructions_wait_for_the_screen_check(study):
    db, _ = study
    token = invite_raters(db, 1)[0][1]
    at = _app(token=token)
    assert not at.exception
    assert at.title[0].value == "Image comparison" and "0.5 seconds" in at.markdown[0].value
    assert "true pixel size" in at.markdown[0].value
    # The page has not reported a window large enough yet: Start stays disabled.
    assert at.button(key="start").disabled
    # Nothing was displayed or marked shown by rendering the instructions.
    with Store(db, create=False) as store:
        assert all(t.shown_at is None for t in store.trials(store.rater_by_token(token).id))


def test_bad_links_and_the_admin_page(study):
    db, made = study
    assert "not valid" in _app(token="forged-token").error[0].value
    assert "not valid" in _app(admin="forged").error[0].value
    assert "personal link" in _app().warning[0].value
    at = _app(admin=made.admin_token)
    assert "No raters yet" in at.info[0].value
    (label_a, token_a), (label_b, token_b) = invite_raters(db, 2, labels=("alice", "bob"))
    at = _app(admin=made.admin_token)
    raters, methods = at.dataframe[0].value, at.dataframe[1].value
    assert list(raters["label"]) == ["alice", "bob"] and list(raters["planned"]) == [6, 6]
    assert list(raters["answered"]) == [0, 0]
    assert list(methods["method"]) == ["bicubic", "nearest"] and list(methods["planned"]) == [4, 4]
    # alice: catch right, every real trial fooled. bob: catch wrong (excluded by the catch rule).
    store = Store(db, create=False)
    plan = store.assignments_frame().set_index(["rater_index", "position"])
    for token, catch_right in ((token_a, True), (token_b, False)):
        rater = store.rater_by_token(token)

        def choose(t, rater=rater, catch_right=catch_right):
            real = plan.loc[(rater.index, t.position), "real_side"]
            fake = "left" if real == "right" else "right"
            return real if (t.kind == "catch") == catch_right else fake

        answer_through_displays(store, rater.id, choose)
    store.dispose()
    at = _app(admin=made.admin_token)
    assert not at.exception
    raters = at.dataframe[0].value.set_index("label")
    methods = at.dataframe[1].value.set_index("method")
    assert raters.loc["alice", ["answered", "catch_accuracy", "excluded"]].tolist() == [6, 1.0, False]
    assert raters.loc["bob", ["answered", "excluded"]].tolist() == [6, True]
    assert raters["median_latency_s"].notna().all() and raters["last_seen"].notna().all()
    # One function: the admin's fool rates are the analysis' (bob excluded), with the same interval.
    result = analyze(db, n_resamples=400).fool_rates.set_index("method")
    assert methods["fool_rate"].tolist() == result["fool_rate"].tolist() == [1.0, 1.0]
    assert methods["n_raters"].tolist() == [1, 1] and methods["answered"].tolist() == [4, 4]
    assert methods["ci_low"].tolist() == result["ci_low"].tolist()
    # A new admin token replaces the old one.
    new = admin_token(db)
    assert "not valid" in _app(admin=made.admin_token).error[0].value
    assert _app(admin=new).title[0].value.startswith("Study ")
