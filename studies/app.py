"""The Streamlit rater app: instructions, practice, timed 2AFC trials, thanks; `?admin=TOKEN` shows progress.

Run with `evalsuite study serve --db FILE|URL` (or `streamlit run studies/app.py -- --db FILE|URL`).
The page only renders and calls the store. No leaks: images are inlined as re-encoded PNG data (no URL,
no file name, no stimulus id), alt texts say only "left"/"right", widget keys carry only the trial's
position, and the left image always comes first in the page.
"""

from __future__ import annotations

import base64
import os
import sys
from datetime import datetime, timezone

import streamlit as st

from studies.design import StudyConfig
from studies.service import DB_ENV
from studies.store import SIDES, RaterInfo, Store, Trial

INSTRUCTIONS = """
You will see pairs of images, side by side{lr}. Each pair is shown for **{exposure:g} seconds**, then it
is hidden and you choose.

**Question:** {question}

- Answer with the **Left** or **Right** button below the images. Go with your first impression.
- A short practice block comes first{practice}.
- You can stop and come back later with the same link; you continue where you stopped.
- Please use a laptop or desktop screen and keep the browser window large.
"""


def database() -> str:
    """The study database: `-- --db URL` after `streamlit run app.py`, else $EVALSUITE_STUDY_DB."""
    argv = sys.argv[1:]
    if "--db" in argv and argv.index("--db") + 1 < len(argv):
        return argv[argv.index("--db") + 1]
    db = os.environ.get(DB_ENV)
    if not db:
        raise RuntimeError(f"no study database: run `evalsuite study serve --db FILE` or set {DB_ENV}")
    return db


@st.cache_resource
def get_store(db: str) -> Store:
    """One Store (engine and pool) per database for the whole server."""
    return Store(db, create=False)


@st.cache_data(max_entries=4096, show_spinner=False)
def png_data_uri(db: str, stimulus_id: str) -> str:
    """A stimulus as a data: URI (no request URL to leak, the same encoding for both sides)."""
    return "data:image/png;base64," + base64.b64encode(get_store(db).stimulus_png(stimulus_id)).decode("ascii")


@st.cache_data(show_spinner=False)
def get_config(db: str, study_id: int) -> StudyConfig:
    """A study's config (it never changes once created)."""
    return StudyConfig.from_dict(get_store(db).study(study_id))


def _set(flag: str) -> None:
    """Button callback: set a session flag (the page then renders the next step in the same run)."""
    st.session_state[flag] = True


def _answer(db: str, rater_id: int, trial: Trial, choice: str) -> None:
    """Button callback: record the choice once (a repeated click on the same trial changes nothing)."""
    get_store(db).submit(rater_id, trial.assignment_id, choice)
    if trial.block == "practice":
        st.session_state["feedback"] = trial.assignment_id


def _cell(src: str, alt: str, cls: str) -> str:
    return f'<div class="es-box"><img class="{cls}" alt="{alt}" src="{src}"></div>'


def _pair_html(db: str, trial: Trial, remaining_s: float) -> str:
    """The images of a trial; both sides hide together after `remaining_s` seconds (CSS, in the browser)."""
    style = (
        "<style>"
        ".es-pair{display:flex;justify-content:center;align-items:center;gap:1rem;margin:0.5rem 0 1rem 0}"
        ".es-pair>div{flex:0 1 512px;min-width:0}"
        ".es-pair img{width:100%;height:auto;display:block;border-radius:4px}"
        ".es-box{background:#f3f4f6;border-radius:4px}"
        f".es-side{{animation:es-hide 0s linear {max(remaining_s, 0.0):.3f}s forwards}}"
        "@keyframes es-hide{to{visibility:hidden}}"
        "</style>"
    )
    blank = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    if remaining_s <= 0:
        # Time is up (e.g. after a reload): the pair is not sent again.
        cells = [_cell(blank, "left", ""), _cell(blank, "right", "")]
    else:
        cells = [
            _cell(png_data_uri(db, trial.left_id), "left", "es-side"),
            _cell(png_data_uri(db, trial.right_id), "right", "es-side"),
        ]
    if trial.middle_id:
        cells.insert(1, f'<div><img alt="low resolution input" src="{png_data_uri(db, trial.middle_id)}"></div>')
    return style + '<div class="es-pair">' + "".join(cells) + "</div>"


def _remaining(exposure_s: float, shown_at: datetime | None) -> float:
    """Seconds of exposure left: the full time on first show, less after a reload."""
    if shown_at is None:
        return exposure_s
    return exposure_s - (datetime.now(timezone.utc) - shown_at).total_seconds()


def trial_page(db: str, rater: RaterInfo, config: StudyConfig, trial: Trial, done: int, total: int) -> None:
    """One trial: progress, question, the timed pair, and the two answer buttons."""
    label = "Practice" if trial.block == "practice" else "Image pair"
    st.progress(done / max(total, 1), text=f"{label} {done + 1} of {total}")
    st.markdown(f"**{config.question}**")
    shown_at = trial.shown_at or get_store(db).mark_shown(trial.assignment_id)
    st.html(_pair_html(db, trial, _remaining(config.exposure_s, shown_at)))
    # Keys a<position>l / a<position>r: only the trial's position, never which side is real.
    for column, side in zip(st.columns(2), SIDES, strict=True):
        column.button(
            side.capitalize(),
            key=f"a{trial.position}{side[0]}",
            on_click=_answer,
            args=(db, rater.id, trial, side),
            use_container_width=True,
            type="primary",
        )
    st.caption("The images disappear after a few seconds; then choose Left or Right.")


def rater_page(db: str, token: str) -> None:
    """The rater flow: instructions, practice (with feedback), the study, thanks."""
    store = get_store(db)
    # The token's rater, looked up once per browser session (tokens never change owner).
    if st.session_state.get("rater_token") != token:
        st.session_state["rater"] = store.rater_by_token(token)
        st.session_state["rater_token"] = token
    rater = st.session_state["rater"]
    if rater is None:
        st.error("This link is not valid. Please use the exact link you were sent.")
        return
    config = get_config(db, rater.study_id)
    trials = store.trials(rater.id)
    practice = [t for t in trials if t.block == "practice"]
    main = [t for t in trials if t.block == "main"]
    pending = [t for t in trials if not t.answered]
    feedback = st.session_state.pop("feedback", None)  # the practice trial just answered
    if feedback is not None:
        st.info(store.practice_feedback(rater.id, feedback))
    if not pending:
        st.title("Thank you!")
        st.success("You have finished the study. Your answers are saved; you can close this page.")
        return
    started = st.session_state.get("started", False)
    if not started:
        st.title("Image comparison")
        st.markdown(
            INSTRUCTIONS.format(
                lr=" with a small low-resolution image between them" if config.show_lr else "",
                exposure=config.exposure_s,
                question=config.question,
                practice=f" ({len(practice)} pairs, with feedback)" if practice else "",
            )
        )
        resumed = any(t.answered for t in trials)
        st.button("Continue" if resumed else "Start", key="start", type="primary", on_click=_set, args=("started",))
        return
    nxt = pending[0]
    if (
        nxt.block == "main"
        and not any(t.answered for t in main)
        and practice
        and not st.session_state.get("main_started", False)
    ):
        st.title("Practice done")
        st.markdown("The study starts now. Answers are no longer checked; go with your first impression.")
        st.button("Start the study", key="start_main", type="primary", on_click=_set, args=("main_started",))
        return
    block = practice if nxt.block == "practice" else main
    done = sum(t.answered for t in block)
    trial_page(db, rater, config, nxt, done, len(block))


def admin_page(db: str, token: str) -> None:
    """Progress per rater and per method, for the study whose admin token this is."""
    store = get_store(db)
    study_id = store.admin_study(token)
    if study_id is None:
        st.error("This admin link is not valid.")
        return
    config = get_config(db, study_id)
    st.title(f"Study {config.name}: progress")
    st.caption(
        f"task {config.task}; {config.n_images} images; {config.per_rater} per rater per method; "
        f"exposure {config.exposure_s:g} s; methods: {', '.join(config.methods)}"
    )
    a = store.assignments_frame(study_id)
    main = a[a["block"] == "main"]
    if main.empty:
        st.info("No raters yet: invite some with `evalsuite study invite -n N --db ...`.")
        return
    per_rater = main.groupby("rater_id").agg(answered=("answered", "sum"), trials=("answered", "size"))
    catch = main[(main["kind"] == "catch") & main["answered"]]
    per_rater["catch_correct"] = (catch["choice"] == catch["real_side"]).groupby(catch["rater_id"]).sum()
    per_rater["catch_answered"] = catch.groupby("rater_id").size()
    per_rater = per_rater.fillna(0).astype(int).reset_index()
    st.subheader("Raters")
    st.dataframe(per_rater, hide_index=True)
    real = main[main["kind"] == "real"]
    per_method = real.groupby("method").agg(answered=("answered", "sum"), planned=("answered", "size"))
    fooled = real[real["answered"]]
    per_method["fool_rate_so_far"] = (fooled["choice"] != fooled["real_side"]).groupby(fooled["method"]).mean()
    st.subheader("Methods")
    st.dataframe(per_method.reset_index(), hide_index=True)


def main() -> None:
    """Route by query parameter: ?token=... (rater) or ?admin=... (admin)."""
    st.set_page_config(
        page_title="Image comparison",
        layout="wide",
        initial_sidebar_state="collapsed",
        menu_items={"Get help": None, "Report a bug": None, "About": None},
    )
    db = database()
    params = st.query_params
    if params.get("admin"):
        admin_page(db, params["admin"])
    elif params.get("token"):
        rater_page(db, params["token"])
    else:
        st.title("Image comparison")
        st.warning("Open the personal link you were sent (it ends with ?token=...).")


# Streamlit runs this file as __main__; a multiprocessing child that re-imports it (as __mp_main__) must not.
if __name__ == "__main__":
    main()
