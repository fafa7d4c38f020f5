"""The pages of the Streamlit rater app: consent (when set), instructions with a screen check, practice, timed
2AFC trials, thanks (with a completion code, or a redirect to the platform); `?admin=TOKEN` shows progress.
Raters arrive by an invite link (`?token=...`) or by a crowd study's shared URL (`?study=SLUG&PROLIFIC_PID=...`
or MTurk's `workerId`), which makes their rater on first arrival (`Store.join`).
studies/app.py (the script Streamlit reruns) only calls `main()`:
this module is imported once per server process, so its caches and the component are set up once.

The whole rater flow is one `st.fragment`: after the first page of a session, every click and report reruns
only that function (no new-session message, no re-read of the rater on trial pages), and the page reports a
drawn pair by a POST to studies/server.py's route, not by a rerun: one script run per answer.

A trial is one *display* (`Store.issue_display`): the page's component (studies/trial.js) receives the pair
as raw RGB rows of equal length, draws both images in one frame at one image pixel per device pixel,
reports "shown", hides them after the exposure and only then lets the rater answer once. The server counts
an answer only for the display on screen, after its reported draw and exposure (`Store.answer`); anything
else is refused and logged. A reload, reconnect or second tab gets a fresh display of the pending trial.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import streamlit as st

from studies.design import StudyConfig, rater_plan
from studies.payload import (
    PAGE_PAD_X_CSS_PX,
    Need,
    Pixels,
    check_payload,
    decode_rgb,
    display_payload,
    redirect_payload,
    study_need,
)
from studies.service import database, get_store
from studies.store import EXPIRED, REVOKED, RaterInfo, Screen, Store, Trial

INSTRUCTIONS = """
You will see pairs of images, side by side{lr}. Each pair is shown for **{exposure:g} seconds**, then it
is hidden and you choose.

**Question:** {question}

- Answer with the **Left** or **Right** button below the images. Go with your first impression.
- A short practice block comes first{practice}.
- You can stop and come back later with the same link; you continue where you stopped.
- The images are shown at their true pixel size: please use a laptop or desktop screen with a large window.
"""
EXPIRED_TEXT = (
    "Your place in this study expired: there was no activity for more than {minutes:g} minutes and it was given "
    "to another participant. The answers you gave are saved. Please return the study on the platform (or "
    "contact the researcher); this link cannot continue."
)
REVOKED_TEXT = "This link has been withdrawn by the researcher and no longer accepts answers."
MTURK_PREVIEW = "Accept the HIT to start: the study opens here once you have accepted it."
# Crowd URL parameters: (platform, participant id parameter, other parameters kept with the rater).
PLATFORMS = (
    ("prolific", "PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    ("mturk", "workerId", ("assignmentId", "hitId", "turkSubmitTo")),
    ("other", "participant", ()),
)
REPLACED = (
    "This study was opened again in another tab or window (or this page reconnected after a break): that "
    "answer was not counted. Continue in one place only."
)
_HTML = '<div class="es-root"><div class="es-msg"></div><div class="es-pair"></div><div class="es-buttons">' \
    '<button data-side="left">Left</button><button data-side="right">Right</button></div></div>'
_CSS = """
.es-root{font-family:inherit}
.es-pair{display:flex;justify-content:center;align-items:center;gap:16px;margin:0.25rem 0 0.75rem 0}
.es-pair canvas{display:block;image-rendering:pixelated;flex:none}
.es-msg{min-height:1.5rem;text-align:center;color:#374151;margin-bottom:0.25rem}
.es-buttons{display:flex;gap:1rem;justify-content:center}
.es-buttons button{flex:0 1 16rem;padding:0.6rem 0;font-size:1.05rem;border-radius:0.5rem;border:none;
  background:#ff4b4b;color:white;cursor:pointer}
.es-buttons button:disabled{background:#e5e7eb;color:#9ca3af;cursor:default}
"""
# The rater pages' frame, pinned so that the window a study needs is known in advance (studies.payload.Need):
# no Streamlit header bar, and a fixed padding around the content (Streamlit's own depends on the window).
PAGE_CSS = (
    "<style>header[data-testid='stHeader']{display:none}"
    f"[data-testid='stMainBlockContainer']{{padding:16px {PAGE_PAD_X_CSS_PX}px;max-width:none}}</style>"
)
TRIAL_COMPONENT = st.components.v2.component(
    "evalsuite_trial", html=_HTML, css=_CSS, js=Path(__file__).with_name("trial.js").read_text(encoding="utf-8")
)


# Plain process-wide caches (this module is imported once per server): cheaper per call than st.cache_*.
@functools.lru_cache(maxsize=2048)
def pixels(db: str, stimulus_id: str) -> Pixels:
    """A stimulus decoded once per server process to raw RGB rows."""
    return decode_rgb(get_store(db).stimulus_png(stimulus_id))


@functools.cache
def get_config(db: str, study_id: int) -> StudyConfig:
    """A study's config (it never changes once created)."""
    return StudyConfig.from_dict(get_store(db).study(study_id))


@functools.cache
def get_need(db: str, study_id: int) -> Need:
    """The device pixels the study's largest trial needs (fixed per study)."""
    return study_need(get_store(db).stimulus_sizes(study_id))


def _set(flag: str) -> None:
    """Button callback: set a session flag (the page then renders the next step in the same run)."""
    st.session_state[flag] = True


def _resume() -> None:
    """Button callback: continue the study in this tab (a fresh display of the pending trial)."""
    st.session_state["paused"] = False


def _on_check(db: str, rater_id: int, key: str) -> None:
    """Screen-check callback: keep whether the window fits, and record the window and DPR."""
    ev = (st.session_state.get(key) or {}).get("event")
    if not isinstance(ev, dict) or ev.get("type") != "screen":
        return
    st.session_state["screen_fits"] = bool(ev.get("fits"))
    screen = Screen.from_report(ev)
    if screen is not None:
        get_store(db).record_screen(rater_id, screen)


def _mark_answered(assignment_id: int | None) -> None:
    """After an answer: mark the session's cached trial answered (the one store.answer accepted), or, when
    the answer was refused, drop the cache so that the next run reads the rater's trials again."""
    trials = st.session_state.get("trials")
    if assignment_id is None or trials is None:
        st.session_state.pop("trials", None)
        return
    st.session_state["trials"] = [
        dataclasses.replace(t, answered=True) if t.assignment_id == assignment_id else t for t in trials
    ]


def _on_trial(db: str, rater_id: int, key: str, exposure_s: float) -> None:
    """Trial callback: record a "shown" report, or count/refuse an answer (then the next display is issued)."""
    ev = (st.session_state.get(key) or {}).get("event")
    if not isinstance(ev, dict):
        return
    store = get_store(db)
    display_id = ev.get("display")
    if ev.get("type") == "shown":
        store.display_shown(rater_id, display_id, Screen.from_report(ev))
    elif ev.get("type") == "answer":
        ms = lambda k: ev[k] / 1000.0 if isinstance(ev.get(k), (int, float)) else None  # noqa: E731
        res = store.answer(rater_id, display_id, ev.get("choice"), exposure_s, ms("exposed_ms"), ms("rt_ms"))
        current = st.session_state.get("display")
        if res.repeat and current is not None and current[1] != display_id:
            return  # a resend of an answer this session already took: its next display stays
        st.session_state.pop("display", None)  # the next run shows the next trial, or this one afresh
        counted = res.accepted or res.repeat
        _mark_answered(res.assignment_id if counted else None)
        # A display replaced elsewhere: wait for the rater to choose this tab, so the other one is not disturbed.
        st.session_state["paused"] = res.reason.startswith("replaced")
        if counted and res.block == "practice":
            st.session_state["feedback"] = store.practice_feedback(rater_id, res.assignment_id)
        elif counted:
            st.session_state["feedback"] = ""


def participant(params: Any) -> tuple[str, str, dict[str, str]]:
    """(platform, participant id, other platform parameters) from a crowd URL's query; ValueError says what
    is wrong (no id, an unfilled placeholder, an MTurk preview)."""
    for platform, key, extra in PLATFORMS:
        pid = str(params.get(key) or "").strip()
        if not pid:
            continue
        if platform == "mturk" and params.get("assignmentId") == "ASSIGNMENT_ID_NOT_AVAILABLE":
            raise ValueError(MTURK_PREVIEW)
        if len(pid) > 200 or not pid.isprintable() or "{" in pid or "%" in pid:
            raise ValueError("The participant id in this link is not valid: open the study from the platform.")
        return platform, pid, {k: str(params.get(k))[:200] for k in extra if params.get(k)}
    raise ValueError(
        "This study link needs your participant id: open it from Prolific or MTurk (the platform adds it)."
    )


def completion_target(template: str, params: Any) -> str | None:
    """The completion URL with {PROLIFIC_PID}, {assignmentId}, {turkSubmitTo}, ... filled in from the rater's
    link (values URL-quoted; turkSubmitTo is MTurk's own host); None when a placeholder has no value."""
    url = template
    for _platform, key, extra in PLATFORMS:
        for name in (key, *extra):
            placeholder = "{" + name + "}"
            if placeholder not in url:
                continue
            value = str(params.get(name) or "")
            if not value:
                return None
            url = url.replace(placeholder, value.rstrip("/") if name == "turkSubmitTo" else quote(value, safe=""))
    if "{" in url or not url.startswith(("https://", "http://")):
        return None
    return url


def _trials(store: Store, rater_id: int) -> list[Trial]:
    """The rater's trials, read once per session (kept current by _mark_answered) and again when stale."""
    trials = st.session_state.get("trials")
    if trials is None:
        trials = st.session_state["trials"] = store.trials(rater_id)
    return trials


def _stage(trials: list[Trial]) -> str:
    """Which page the rater is on: paused | thanks | instructions | practice_done | trial (consent comes
    before the instructions and is decided by the flow, which reads the rater's state for it)."""
    if st.session_state.get("paused"):
        return "paused"
    pending = [t for t in trials if not t.answered]
    if not pending:
        return "thanks"
    if not st.session_state.get("started", False):
        return "instructions"
    practice = any(t.block == "practice" for t in trials)
    main_begun = any(t.answered for t in trials if t.block == "main")
    if pending[0].block == "main" and practice and not main_begun and not st.session_state.get("main_started"):
        return "practice_done"
    return "trial"


def trial_page(db: str, rater: RaterInfo, config: StudyConfig, trials: list[Trial]) -> bool:
    """One trial: feedback, progress, question, and the display component (pair, exposure, Left/Right).
    False when no display could be issued (the trial was answered in another tab, or the rater is revoked or
    expired): the flow then reads the rater again and shows what applies."""
    store = get_store(db)
    trial = next(t for t in trials if not t.answered)
    # This session's display of the pending trial; a fresh one for a new session, trial or refused answer.
    current = st.session_state.get("display")
    if current is None or current[0] != trial.assignment_id:
        try:
            current = (trial.assignment_id, store.issue_display(rater.id, trial.assignment_id))
        except ValueError:  # answered meanwhile in another tab: read the trials again
            st.session_state.pop("trials", None)
            return False
        except PermissionError:  # revoked, or the slot expired
            return False
        st.session_state["display"] = current
    block = [t for t in trials if t.block == trial.block]
    done = sum(t.answered for t in block)
    label = "Practice" if trial.block == "practice" else "Image pair"
    st.progress(done / max(len(block), 1), text=f"{label} {done + 1} of {len(block)}")
    st.markdown(f"**{config.question}**")
    display_id = current[1]
    need = get_need(db, rater.study_id)
    # Practice feedback goes into the display's message line (above the pair), so the page's height is fixed.
    note = st.session_state.get("feedback") or ""
    data = display_payload(trial, display_id, config.exposure_s, need, functools.partial(pixels, db), note)
    key = f"d{display_id}"
    TRIAL_COMPONENT(
        key=key, data=data, on_event_change=functools.partial(_on_trial, db, rater.id, key, config.exposure_s)
    )
    return True


def rater_page(db: str, token: str) -> None:
    """An invited rater (?token=...): the rater flow, or an error for an unknown token."""
    # The token's rater, looked up once per browser session (tokens never change owner).
    if st.session_state.get("rater_key") != ("token", token):
        st.session_state["rater"] = get_store(db).rater_by_token(token)
        st.session_state["rater_key"] = ("token", token)
        st.session_state.pop("trials", None)
    rater = st.session_state["rater"]
    if rater is None:
        st.error("This link is not valid. Please use the exact link you were sent.")
        return
    rater_flow(db, rater)


def crowd_page(db: str, slug: str, params: Any) -> None:
    """A crowd participant (?study=SLUG&PROLIFIC_PID=...): their rater (made on first arrival), then the flow."""
    store = get_store(db)
    study_id = store.study_by_slug(slug)
    config = get_config(db, study_id) if study_id is not None else None
    if config is None or not config.crowd.enabled:
        st.error("This study link is not valid. Please open the study from the platform again.")
        return
    try:
        platform, pid, extra = participant(params)
    except ValueError as exc:
        st.warning(str(exc))
        return
    # One rater per participant id: a reload, a second tab or a simultaneous arrival finds the same one.
    if st.session_state.get("rater_key") != ("study", slug, pid):
        plan = functools.partial(rater_plan, config)
        timeout_s = config.crowd.slot_timeout_min * 60.0
        st.session_state["rater"] = store.join(study_id, pid, plan, timeout_s, {"platform": platform, **extra})
        st.session_state["rater_key"] = ("study", slug, pid)
        st.session_state.pop("trials", None)
    rater_flow(db, st.session_state["rater"])


def _consent(db: str, rater_id: int) -> None:
    """Consent button callback: store the acceptance time."""
    get_store(db).record_consent(rater_id)


def _finished(config: StudyConfig) -> None:
    """The end page: thanks, and the completion code or the redirect to the platform's completion URL."""
    crowd = config.crowd
    st.title("Thank you!")
    target = completion_target(crowd.completion_url, st.query_params) if crowd.completion_url else None
    if target:
        st.success("You have finished the study. Your answers are saved; taking you back to the platform ...")
        st.link_button("Return to the platform to complete", target, type="primary")
        TRIAL_COMPONENT(key="redirect", data=redirect_payload(target))
    elif crowd.completion_code:
        st.success("You have finished the study. Your answers are saved.")
        st.markdown("Your **completion code** (enter it on the platform to complete the study):")
        st.code(crowd.completion_code, language=None)
    else:
        st.success("You have finished the study. Your answers are saved; you can close this page.")


@st.fragment
def rater_flow(db: str, rater: RaterInfo) -> None:
    """The rater flow: consent (when set), instructions and screen check, practice (with feedback), the study,
    the end page. Revoked raters and raters whose slot expired are told so and can answer nothing.

    One fragment: every click and report after the first page reruns only this function, not the script.
    """
    store = get_store(db)
    config = get_config(db, rater.study_id)
    trials = _trials(store, rater.id)
    stage = _stage(trials)
    # The trial page needs no read of the rater: its display and answer refuse a revoked or expired rater.
    if stage == "trial" and trial_page(db, rater, config, trials):
        return
    state = store.rater(rater.id)  # status and consent change while the rater works: read them per page
    if state.status == REVOKED:
        st.error(REVOKED_TEXT)
        return
    if state.status == EXPIRED:
        st.warning(EXPIRED_TEXT.format(minutes=config.crowd.slot_timeout_min))
        return
    if stage == "trial":  # its trial was answered in another tab meanwhile: the rater's next page
        trials = _trials(store, rater.id)
        stage = _stage(trials)
        if stage == "trial" and trial_page(db, rater, config, trials):
            return
    if stage not in ("paused", "thanks") and config.crowd.consent and state.consented_at is None:
        stage = "consent"
    if st.session_state.get("feedback"):
        st.info(st.session_state["feedback"])
    if stage == "consent":
        st.title("Consent")
        st.markdown(config.crowd.consent)
        st.caption("If you do not agree, close this page (and return the study on the platform).")
        st.button("I agree", key="consent", type="primary", on_click=_consent, args=(db, rater.id))
    elif stage == "paused":
        st.warning(REPLACED)
        st.button("Continue here", key="resume", type="primary", on_click=_resume)
    elif stage == "thanks":
        _finished(config)
    elif stage == "instructions":
        n_practice = sum(t.block == "practice" for t in trials)
        st.title("Image comparison")
        st.markdown(
            INSTRUCTIONS.format(
                lr=" with a small low-resolution image between them" if config.show_lr else "",
                exposure=config.exposure_s,
                question=config.question,
                practice=f" ({n_practice} pair{'s' * (n_practice != 1)}, with feedback)" if n_practice else "",
            )
        )
        if config.crowd.enabled:
            st.caption(
                f"Please work without long breaks: after {config.crowd.slot_timeout_min:g} minutes without "
                "activity your place may be given to another participant."
            )
        key = "screen-check"
        check = check_payload(get_need(db, rater.study_id))
        TRIAL_COMPONENT(key=key, data=check, on_event_change=functools.partial(_on_check, db, rater.id, key))
        st.button(
            "Continue" if any(t.answered for t in trials) else "Start",
            key="start",
            type="primary",
            on_click=_set,
            args=("started",),
            disabled=not st.session_state.get("screen_fits", False),
        )
    elif stage == "practice_done":
        st.title("Practice done")
        st.markdown("The study starts now. Answers are no longer checked; go with your first impression.")
        st.button("Start the study", key="start_main", type="primary", on_click=_set, args=("main_started",))
    else:  # a trial that cannot be displayed now (it changed under this page twice)
        st.warning("This pair cannot be shown right now. Please reload the page.")


ADMIN_REFRESH_S = 10  # the admin page refreshes itself this often


def rater_progress(trials: pd.DataFrame, raters: pd.DataFrame, analysis_raters: pd.DataFrame) -> pd.DataFrame:
    """Per rater: label, status, answered of planned, last seen, median latency, catch accuracy, exclusion, screen."""
    g = trials.groupby("rater_id", sort=False)
    out = raters.set_index("rater_id")[["label", "status", "last_seen", "window_w", "window_h", "dpr"]].copy()
    out["answered"] = g["answered"].sum()
    out["planned"] = g.size()
    out["median_latency_s"] = trials[trials["answered"]].groupby("rater_id")["latency_s"].median()
    out["refused"] = g["n_refused"].sum()
    # Catch accuracy and exclusion: the analysis' own numbers (studies.analysis), not a second count.
    verdict = analysis_raters.set_index("rater_id")[["catch_accuracy", "excluded"]]
    out = out.join(verdict)
    out["excluded"] = out["excluded"].astype("boolean").fillna(False)
    screen = out["window_w"].notna()
    out["window"] = ""
    out.loc[screen, "window"] = (
        out.loc[screen, "window_w"].astype(int).astype(str) + "x" + out.loc[screen, "window_h"].astype(int).astype(str)
        + " @" + out.loc[screen, "dpr"].map("{:g}".format)
    )
    cols = ["label", "status", "answered", "planned", "last_seen", "median_latency_s", "catch_accuracy", "excluded",
            "refused", "window"]
    return out[cols].reset_index(drop=True)


@st.fragment(run_every=ADMIN_REFRESH_S)
def admin_tables(db: str, study_id: int) -> None:
    """The live part of the admin page: raters and fool rates, recomputed on every refresh."""
    from studies.analysis import DEFAULT_RULE, analyze_frame

    store = get_store(db)
    trials = store.trials_frame(study_id)
    if trials.empty:
        st.info("No raters yet: invite some with `evalsuite study invite -n N --db ...`.")
        return
    analysis = analyze_frame(store.judgments_frame(study_id), [store.study(study_id)], DEFAULT_RULE, n_resamples=400)
    main = trials[trials["block"] == "main"]
    st.caption(f"updated {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC; refreshes every {ADMIN_REFRESH_S} s")
    st.subheader("Raters")
    st.dataframe(rater_progress(trials, store.raters_frame(study_id), analysis.raters), hide_index=True)
    st.subheader("Methods")
    real = main[main["kind"] == "real"]
    per = real.groupby("method").agg(answered=("answered", "sum"), planned=("answered", "size"))
    fr = analysis.fool_rates.set_index("method")[
        ["n_judgments", "n_raters", "fool_rate", "ci_low", "ci_high", "exclusion"]
    ]
    st.dataframe(per.join(fr).reset_index(), hide_index=True)
    if analysis.all_excluded:
        st.warning("Every rater is flagged by the study's exclusion rules: the fool rates keep all raters "
                   "(column exclusion).")
    st.caption(" ".join(analysis.notes[1:3]))


def admin_page(db: str, token: str) -> None:
    """Progress per rater and live fool rates per method, for the study whose admin token this is."""
    store = get_store(db)
    study_id = store.admin_study(token)
    if study_id is None:
        st.error("This admin link is not valid.")
        return
    config = get_config(db, study_id)
    st.title(f"Study {config.name}: progress")
    st.caption(
        f"task {config.task}; {config.n_images} images; {config.per_rater} per rater per method; "
        f"exposure {config.exposure_s:g} s; methods: {', '.join(config.methods)}; design {config.design}"
        + (f" ({len(config.pairs)} pairs, {config.pair_count} per rater and pair)" if config.pairs else "")
        + (f"; {config.n_attention} attention checks per rater" if config.n_attention else "")
        + (f"; crowd URL, slot timeout {config.crowd.slot_timeout_min:g} min" if config.crowd.enabled else "")
    )
    admin_tables(db, study_id)


def main() -> None:
    """Route by query parameter: ?token=... (invited rater), ?study=... (crowd participant), ?admin=... (admin)."""
    st.set_page_config(
        page_title="Image comparison",
        layout="wide",
        initial_sidebar_state="collapsed",
        menu_items={"Get help": None, "Report a bug": None, "About": None},
    )
    db = database()
    params = st.query_params
    if params.get("token") or params.get("study"):
        st.html(PAGE_CSS)
    if params.get("admin"):
        admin_page(db, params["admin"])
    elif params.get("token"):
        rater_page(db, params["token"])
    elif params.get("study"):
        crowd_page(db, params["study"], params)
    else:
        st.title("Image comparison")
        st.warning("Open the personal link you were sent (it ends with ?token=...).")

