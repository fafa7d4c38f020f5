"""The rater app in a real headless Chromium against `streamlit run`: only seen-and-answered trials count
(double clicks, reload mid-display, reconnect, a second tab, Streamlit's `R`, an answer lost on the way),
nothing in what the browser receives tells the real image apart (an attacker's classifier is at chance), and
images are shown at one image pixel per device pixel with a window check.

The helpers look at the page the way a rater does (buttons by their text, the pair by its `left`/`right`
labels, visible and with pixels), so the same tests run against any version of the app.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest
from study_support import free_port, make_run_folder, served_app

from studies.design import CrowdConfig
from studies.service import create_study, invite_raters
from studies.store import Store

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
METHODS = ("bicubic", "nearest")
EXPOSURE = 0.8
pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (setup-system.sh)")

# Whether both images of the pair are on screen with their pixels (an <img> that loaded, or a drawn canvas).
PAIR_VISIBLE = """() => {
  const els = [...document.querySelectorAll('*')]
    .flatMap(e => e.shadowRoot ? [e, ...e.shadowRoot.querySelectorAll('*')] : [e]);
  const side = (name) => els.filter(e => (e.tagName === 'IMG' && e.alt === name) ||
                                         (e.tagName === 'CANVAS' && e.getAttribute('aria-label') === name));
  const ok = (e) => getComputedStyle(e).visibility === 'visible' && e.isConnected &&
      (e.tagName === 'IMG' ? (e.complete && e.naturalWidth > 1) : e.width > 1);
  return side('left').some(ok) && side('right').some(ok);
}"""


# Installed in every page: records each time span in which the pair is visible (page clock, ms).
RECORDER = f"""
window.__shows = [];
(() => {{
  const visible = {PAIR_VISIBLE};
  let cur = null;
  setInterval(() => {{
    const v = document.body ? visible() : false;
    if (v && !cur) {{ cur = {{s: performance.now(), e: null}}; window.__shows.push(cur); }}
    else if (!v && cur) {{ cur.e = performance.now(); cur = null; }}
  }}, 20);
}})();
"""


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory) -> Path:
    """A real benchmark run (the engine) on three small generated photo-like images."""
    import evalsuite

    root = tmp_path_factory.mktemp("bench")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 48
    for k in range(3):
        base = np.stack([np.sin(7 * xx + k), np.cos(6 * yy - k), np.sin(5 * (xx - yy) + k)], -1)
        arr = np.clip(127 + 90 * base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(data / f"photo_{k}.png")
    spec = {
        "data": str(data),
        "task": None,
        "scale": 4,
        "methods": list(METHODS),
        "metrics": ["psnr"],
        "out": str(root / "run"),
        "device": "cpu",
        "report": False,
        "workers": 1,
        "bootstrap": 50,
    }
    evalsuite.run(spec, log=lambda *a, **k: None, progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def served(engine_run, tmp_path_factory):
    """One study (task 1, 1 practice + 4 real + 1 catch trials per rater) served for the module."""
    db = str(tmp_path_factory.mktemp("study") / "study.db")
    made = create_study(
        engine_run, db, task=1, methods=METHODS, per_rater=2, n_catch=1, n_practice=1, exposure_s=EXPOSURE
    )
    with served_app(db) as base:
        yield db, base, made


@pytest.fixture(scope="module")
def playwright():
    """One Playwright driver for the module (the sync API allows one per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


def _context(browser, **kw):
    """A browser context whose pages record when the pair is visible."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **kw})
    context.add_init_script(RECORDER)
    return context


def _now(page) -> float:
    return page.evaluate("performance.now()")


def _full_shows(page, since: float = 0.0) -> int:
    """How many times since `since` (page ms) the pair was visible for a full exposure."""
    return page.evaluate(
        "([since, ms]) => window.__shows.filter(x => x.s >= since && ((x.e ?? performance.now()) - x.s) >= ms)"
        ".length",
        [since, (EXPOSURE - 0.15) * 1000],
    )


def _rater(db: str) -> tuple[str, str]:
    """A new rater: (public id, token)."""
    token = invite_raters(db, 1)[0][1]
    with Store(db, create=False) as store:
        return store.rater_by_token(token).public_id, token


def _judgments(db: str, public_id: str):
    """The rater's stored judgments, by position."""
    with Store(db, create=False) as store:
        frame = store.judgments_frame()
    return frame[frame["rater_id"] == public_id].sort_values("position")


def _start(page, base: str, token: str) -> None:
    page.goto(f"{base}/?token={token}")
    page.get_by_role("button", name=re.compile("^(Start|Continue)$")).click(timeout=30_000)


def _resume_main(page, base: str, token: str) -> None:
    """Open the link again after the practice: Continue, then (once more) the start of the main block."""
    _start(page, base, token)
    page.get_by_role("button", name="Start the study").click(timeout=30_000)
    page.get_by_text("Image pair 1 of 5").wait_for(timeout=30_000)


def _wait_pair(page, since: float = 0.0, timeout_ms: int = 20_000) -> None:
    """Wait until the pair has become visible (at or after page time `since`)."""
    page.wait_for_function("s => window.__shows.some(x => x.s >= s)", arg=since, timeout=timeout_ms)


def _wait_hidden(page) -> None:
    page.wait_for_function(f"() => !({PAIR_VISIBLE})()", timeout=20_000)


def _through_practice(page) -> None:
    """Answer the practice trial and open the main block (the first main trial is then displaying)."""
    _wait_pair(page)
    page.get_by_role("button", name="Left", exact=True).click()
    page.get_by_role("button", name="Start the study").click(timeout=30_000)
    page.get_by_text("Image pair 1 of 5").wait_for(timeout=30_000)


def _click_at(page, name: str, gaps_s: tuple[float, ...]) -> None:
    """Click the button's screen position once, then again after each gap (a rater's impatient clicks)."""
    box = page.get_by_role("button", name=name, exact=True).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    for gap in gaps_s:
        time.sleep(gap)
        page.mouse.click(x, y)


def test_double_click_never_answers_the_next_trial(served, browser):
    db, base, _ = served
    public_id, token = _rater(db)
    context = _context(browser)
    page = context.new_page()
    try:
        _start(page, base, token)
        _through_practice(page)
        _wait_pair(page)
        _wait_hidden(page)
        # Clicks 350 ms and 800 ms after the first land where the next trial's Left button appears.
        _click_at(page, "Left", (0.35, 0.45))
        deadline = time.monotonic() + 30
        while len(_judgments(db, public_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # time for a stray click to be stored
        got = _judgments(db, public_id)
        assert got["position"].tolist() == [0, 1], "a repeated click answered the next trial unseen"
        # The next trial is answered only after its own display.
        page.get_by_role("button", name="Right", exact=True).click()
        page.get_by_text("Image pair 3 of 5").wait_for(timeout=30_000)
        got = _judgments(db, public_id)
        assert got["choice"].tolist() == ["left", "left", "right"]
        assert (got["latency_s"] >= EXPOSURE - 0.1).all()
        assert _full_shows(page) >= 3  # practice, pair 1, pair 2: each seen in full
    finally:
        context.close()


def _first_two_trials(page, base: str, token: str) -> None:
    """Start, answer the practice trial and the first main trial once each is hidden."""
    _start(page, base, token)
    _through_practice(page)
    _wait_pair(page)
    _wait_hidden(page)
    page.get_by_role("button", name="Right", exact=True).click()
    page.get_by_text("Image pair 2 of 5").wait_for(timeout=30_000)


@pytest.mark.parametrize("blocked", [False, True], ids=["route", "route-blocked"])
def test_shown_goes_to_the_server_route_and_falls_back_to_the_component(served, browser, blocked):
    """The page reports each draw with a POST to the server's route (no rerun); where the route fails (a proxy
    that does not pass it), through the component's event. Either way an answer counts only after its draw."""
    db, base, _ = served
    public_id, token = _rater(db)
    context = _context(browser)
    page = context.new_page()
    posts, sent = [], []
    page.on("requestfinished", lambda r: posts.append(r) if "_evalsuite/shown" in r.url else None)
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(f if isinstance(f, bytes) else b"")))
    if blocked:
        page.route("**/_evalsuite/shown", lambda route: route.fulfill(status=404, body="not here"))
    try:
        _first_two_trials(page, base, token)
        replies = [(r.method, r.response().status, r.response().body()) for r in posts]
    finally:
        context.close()
    got = _judgments(db, public_id)
    assert got["choice"].tolist() == ["left", "right"]
    assert (got["latency_s"] >= EXPOSURE - 0.1).all()
    shown_events = sum(b'"shown"' in f for f in sent)
    if blocked:
        assert shown_events >= 2, "the fallback did not report the draws through the component"
    else:
        # The practice pair and pair 1 (pair 2 may already be drawn and reported too).
        assert len(replies) >= 2
        assert [(m, st, json.loads(b)) for m, st, b in replies] == [("POST", 200, {"ok": True})] * len(replies)
        assert shown_events == 0, "a draw was reported by a rerun although the route works"


def test_reload_mid_display_resumes_at_a_fresh_display(served, browser):
    db, base, _ = served
    public_id, token = _rater(db)
    context = _context(browser)
    page = context.new_page()
    try:
        _start(page, base, token)
        _through_practice(page)
        _wait_pair(page)
        page.reload()  # mid-display
        time.sleep(EXPOSURE + 0.3)  # the interrupted exposure is over by now
        page.get_by_role("button", name="Continue").click(timeout=30_000)
        page.get_by_role("button", name="Start the study").click(timeout=30_000)
        page.get_by_text("Image pair 1 of 5").wait_for(timeout=30_000)
        page.get_by_role("button", name="Left", exact=True).click()
        page.get_by_text("Image pair 2 of 5").wait_for(timeout=30_000)
        # The answer counted only after a fresh display of the same trial, seen in full.
        assert _full_shows(page) >= 1, "answered a pair that was not shown again after the reload"
        got = _judgments(db, public_id)
        assert got["position"].tolist() == [0, 1] and got["choice"].tolist() == ["left", "left"]
        assert got["latency_s"].iloc[1] >= EXPOSURE - 0.1
    finally:
        context.close()


def test_second_tab_and_reconnect_never_count_an_unseen_pair(served, browser):
    db, base, _ = served
    public_id, token = _rater(db)
    context = _context(browser)
    a, b = context.new_page(), context.new_page()
    try:
        _start(a, base, token)
        _through_practice(a)
        _wait_pair(a)
        _wait_hidden(a)
        # The same link in a second tab: a fresh display of the same trial there.
        _resume_main(b, base, token)
        _wait_pair(b)
        # The first tab's answer belongs to a display that was replaced: it is not counted.
        a.get_by_role("button", name="Left", exact=True).click()
        time.sleep(1.0)
        assert _judgments(db, public_id)["position"].tolist() == [0]
        b.get_by_role("button", name="Right", exact=True).click()
        b.get_by_text("Image pair 2 of 5").wait_for(timeout=30_000)
        got = _judgments(db, public_id)
        assert got["choice"].tolist() == ["left", "right"]
        a.close()
        # Reconnect: the connection drops right after an answer, before the next pair arrives or is seen.
        b.get_by_role("button", name="Left", exact=True).click()
        t_click = _now(b)
        context.set_offline(True)
        time.sleep(EXPOSURE + 1.5)
        context.set_offline(False)
        # Answer the pending trial as soon as the page allows (an answer the server refused is asked again).
        for _ in range(4):
            b.get_by_role("button", name="Right", exact=True).click(timeout=30_000)
            try:
                b.get_by_text("Image pair 4 of 5").wait_for(timeout=5_000)
                break
            except Exception:  # noqa: BLE001 (refused: a fresh display follows)
                continue
        assert _full_shows(b, t_click) >= 1, "the pair after the reconnect was answered unseen"
        got = _judgments(db, public_id)
        assert got["choice"].tolist() == ["left", "right", "left", "right"]
        assert (got["latency_s"] >= EXPOSURE - 0.1).all()
    finally:
        context.close()


def test_streamlit_rerun_shortcut_neither_restarts_nor_answers(served, browser):
    db, base, _ = served
    public_id, token = _rater(db)
    context = _context(browser)
    page = context.new_page()
    try:
        _start(page, base, token)
        _through_practice(page)
        _wait_pair(page)
        page.locator("body").press("r")  # Streamlit's rerun shortcut, mid-display
        _wait_hidden(page)
        page.locator("body").press("r")  # and after the pair was hidden, before answering
        time.sleep(0.5)
        page.get_by_role("button", name="Right", exact=True).click()
        page.locator("body").press("r")  # and right after answering
        page.get_by_text("Image pair 2 of 5").wait_for(timeout=30_000)
        time.sleep(0.5)
        got = _judgments(db, public_id)
        assert got["position"].tolist() == [0, 1] and got["choice"].tolist() == ["left", "right"]
        assert got["latency_s"].iloc[1] >= EXPOSURE - 0.1
        assert _full_shows(page) >= 2
    finally:
        context.close()


def _drop_event(page, kind: str, nth: int) -> tuple[list[float], list[bytes]]:
    """Relay the page's websocket to the server, dropping the nth (1-based) component event of this type that
    the page sends (as when Streamlit loses one); returns (send times of every such event, dropped)."""
    sent, dropped = [], []
    needle = f'"type":"{kind}"'.encode()

    def relay(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            if isinstance(message, bytes) and needle in message:
                sent.append(time.monotonic())
                if len(sent) == nth:
                    dropped.append(message)
                    return
            server.send(message)

        ws.on_message(from_page)

    page.route_web_socket(re.compile(r".*/_stcore/stream"), relay)
    return sent, dropped


def test_an_answer_lost_on_the_way_is_sent_again_and_counted_once(served, browser):
    """Streamlit can lose a component's event when reruns overlap (seen on a busy CI machine: the page then sat
    with both buttons off). The page sends the answer again until the next display arrives; counted once."""
    db, base, _ = served
    public_id, token = _rater(db)
    context = _context(browser)
    page = context.new_page()
    answers, dropped = _drop_event(page, "answer", 2)  # the practice answer passes; pair 1's first is lost
    try:
        _start(page, base, token)
        _through_practice(page)
        _wait_pair(page)
        _wait_hidden(page)
        page.get_by_role("button", name="Right", exact=True).click()
        page.get_by_text("Image pair 2 of 5").wait_for(timeout=30_000)
        time.sleep(0.5)
        got = _judgments(db, public_id)
        assert dropped, "no answer went through the websocket"
        assert len(answers) >= 3 and answers[2] - answers[1] >= 1.5  # resent after its wait
        assert got["position"].tolist() == [0, 1] and got["choice"].tolist() == ["left", "right"]
        with Store(db, create=False) as store:
            refused = store.refusals_frame()
        assert not (refused["rater_label"] == got["rater_label"].iloc[0]).any()
    finally:
        context.close()


def test_a_lost_screen_report_does_not_keep_start_disabled(served, browser):
    """The Start button waits for the window report; when that event is lost, a resend enables it."""
    db, base, _ = served
    _public_id, token = _rater(db)
    context = _context(browser)
    page = context.new_page()
    reports, dropped = _drop_event(page, "screen", 1)
    try:
        page.goto(f"{base}/?token={token}")
        page.get_by_role("button", name="Start").click(timeout=30_000)
        page.get_by_text("Practice 1 of 1").wait_for(timeout=30_000)
        assert dropped and len(reports) >= 2
    finally:
        context.close()


# [image pixels wide, device pixels wide on screen] of every visible image or canvas.
SHOWN_SIZES = """() => {
  const els = [...document.querySelectorAll('*')].flatMap(e => e.shadowRoot
    ? [...e.shadowRoot.querySelectorAll('img,canvas')] : (e.matches('img,canvas') ? [e] : []));
  return els.filter(e => getComputedStyle(e).visibility === 'visible')
    .map(e => [e.tagName === 'IMG' ? e.naturalWidth : e.width, e.getBoundingClientRect().width * devicePixelRatio]);
}"""


def _guess(a: float, b: float) -> str:
    """The attacker's guess of the real side from one feature per side (ties: left)."""
    return "right" if b > a else "left"


def _frames_payloads(frames: list[bytes]) -> list[tuple[bytes, bytes, str]]:
    """Per trial shown, what a browser received for the left and the right image and the element order.

    Handles the inline-PNG page (data: URIs in an HTML element) and the raw-pixel component payload.
    """
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    from studies.payload import parse_payload

    out, seen = [], set()
    for f in frames:
        msg = ForwardMsg()
        try:
            msg.ParseFromString(f)
        except Exception:  # noqa: BLE001 (not a ForwardMsg)
            continue
        if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
            continue
        el = msg.delta.new_element
        kind = el.WhichOneof("type")
        if kind == "html" and "data:image/png;base64," in el.html.body:
            uris = re.findall(r'alt="(left|right)" src="data:image/png;base64,([^"]+)"', el.html.body)
            pattern = r'src="data:image/png;base64,([^"]+)"[^>]*alt="(\w+)"'
            uris = uris or [(s, u) for u, s in re.findall(pattern, el.html.body)]
            sides = {side: base64.b64decode(u) for side, u in uris}
            if "left" in sides and "right" in sides and el.html.body not in seen:
                seen.add(el.html.body)
                out.append((sides["left"], sides["right"], el.html.body[:0]))
        elif kind == "bidi_component" and el.bidi_component.WhichOneof("data") == "bytes":
            header, blocks = parse_payload(el.bidi_component.bytes)
            if blocks and header["display"] not in seen:
                seen.add(header["display"])
                out.append((blocks[0], blocks[1], ""))
    return out


def test_attacker_sees_nothing_but_pixels_and_images_are_true_size(served, browser, engine_run):
    """Everything the browser receives for each trial: sizes, format, metadata, names, order -> chance."""
    db, base, _ = served
    public_id, token = _rater(db)
    frames: list[bytes] = []
    context = _context(browser, device_scale_factor=2)
    page = context.new_page()
    keep = lambda f: frames.append(f if isinstance(f, bytes) else f.encode())  # noqa: E731
    page.on("websocket", lambda ws: ws.on("framereceived", keep))
    sizes = []
    try:
        _start(page, base, token)
        for step in range(6):
            if step == 1:
                page.get_by_role("button", name="Start the study").click(timeout=30_000)
            since = _now(page)
            page.wait_for_function(PAIR_VISIBLE, timeout=20_000)
            assert _now(page) >= since
            # Shown at one image pixel per device pixel (DPR 2): CSS width x 2 = image width; LR at 1/4.
            sizes.append(page.evaluate(SHOWN_SIZES))
            trial = sizes[-1]
            assert len(trial) == 3
            assert [round(css) for _, css in trial] == [w for w, _ in trial], f"not 1:1 device pixels: {trial}"
            assert trial[0][0] == trial[2][0] == 4 * trial[1][0], "the LR input is not at its true relative size"
            page.get_by_role("button", name=("Left", "Right")[step % 2], exact=True).click()
        page.get_by_text("Thank you!").wait_for(timeout=30_000)
    finally:
        context.close()
    # The attacker: per trial, guess the real image from what the browser received for each side.
    got = _judgments(db, public_id).set_index("position")
    payloads = _frames_payloads(frames)
    assert len(payloads) == len(got) == 6
    real = got.sort_index()["real_side"].tolist()
    guesses = {
        "larger is real": [_guess(len(lb), len(rb)) for lb, rb, _ in payloads],
        "more metadata is real": [_guess(_meta(lb), _meta(rb)) for lb, rb, _ in payloads],
    }
    for name, guess in guesses.items():
        k = sum(g == r for g, r in zip(guess, real, strict=True))
        assert binomtest(k, len(real), 0.5).pvalue > 0.05, f"{name}: {k}/{len(real)} right"
    for lb, rb, _ in payloads:
        assert len(lb) == len(rb)
    # The pixels are the run's own: the ground truth on the real side.
    hr = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in (engine_run / "hr").glob("*.png")}
    for (lb, rb, _), (_, row) in zip(payloads, got.sort_index().iterrows(), strict=True):
        real_bytes = lb if row["real_side"] == "left" else rb
        assert real_bytes == hr[row["image_id"]].tobytes() or _png_pixels(real_bytes) == hr[row["image_id"]].tobytes()


def _meta(data: bytes) -> int:
    """Bytes outside pixel data an attacker could read: PNG chunks other than IDAT, else 0 (raw pixels)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return 0
    from studies.stimuli import png_chunks

    return len([c for c in png_chunks(data) if c != "IDAT"])


def _png_pixels(data: bytes) -> bytes:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return b""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).tobytes()


def test_small_window_is_asked_to_grow_and_the_screen_is_recorded(tmp_path, browser):
    run = make_run_folder(tmp_path / "run", n_images=2, size=256, methods=("bicubic",))
    db = str(tmp_path / "big.db")
    create_study(run, db, task=1, methods=("bicubic",), per_rater=1, n_catch=0, n_practice=0, exposure_s=EXPOSURE)
    public_id, token = _rater(db)
    # The pair and the LR input need 2 x 256 + 64 device pixels side by side: too wide for 500 CSS px at DPR 1.
    context = _context(browser, viewport={"width": 500, "height": 700}, device_scale_factor=1)
    page = context.new_page()
    try:
        with served_app(db) as base:
            page.goto(f"{base}/?token={token}")
            page.get_by_text("Please make the browser window larger").wait_for(timeout=30_000)
            assert page.get_by_role("button", name="Start").is_disabled()
            page.set_viewport_size({"width": 1100, "height": 800})
            page.get_by_text("is large enough").wait_for(timeout=30_000)
            page.get_by_role("button", name="Start").click(timeout=30_000)
            page.get_by_role("button", name="Left", exact=True).click()
            page.get_by_text("Thank you!").wait_for(timeout=30_000)
            assert _full_shows(page) == 1
    finally:
        context.close()
    with Store(db, create=False) as store:
        raters = store.raters_frame()
    row = raters.set_index("label").loc[raters.set_index("label").index[0]]
    assert (row["window_w"], row["window_h"], row["dpr"]) == (1100, 800, 1.0)


FOUR = ("bicubic", "nearest", "m3", "m4")


def test_crowd_study_with_duels_runs_end_to_end_through_a_prolific_link(tmp_path, browser):
    """Done-means of issue 16: a 4-method study with duels through a Prolific-style link: consent, practice,
    every trial (a reload mid-study resumes the same rater), the completion code; and a redirect variant."""
    run = make_run_folder(tmp_path / "run", n_images=3, size=32, methods=FOUR)
    db, port = str(tmp_path / "crowd.db"), free_port()
    made = create_study(
        run, db, task=1, methods=FOUR, per_rater=1, per_pair=1, design="both", n_catch=1, n_attention=1,
        n_practice=1, exposure_s=0.3,
        crowd=CrowdConfig(True, completion_code="CC-7391", consent="Do you agree to **take part**?"),
    )
    done_url = f"http://127.0.0.1:{port}/_stcore/health?cc=XYZ"
    other = create_study(
        run, db, task=2, methods=("bicubic",), per_rater=1, n_catch=0, n_practice=0, exposure_s=0.3,
        crowd=CrowdConfig(True, completion_url=done_url),
    )
    n_main = made.config.trials_per_rater
    assert n_main == 4 + 6 + 1 + 1
    context = _context(browser)
    page = context.new_page()
    try:
        with served_app(db, port=port) as base:
            page.goto(f"{base}/?study={made.public_slug}&PROLIFIC_PID=pp1&STUDY_ID=st1&SESSION_ID=se1")
            page.get_by_text("take part").wait_for(timeout=30_000)
            page.get_by_role("button", name="I agree").click()
            page.get_by_role("button", name="Start").click(timeout=30_000)
            page.get_by_text("Practice 1 of 1").wait_for(timeout=30_000)
            page.get_by_role("button", name="Left", exact=True).click()
            page.get_by_role("button", name="Start the study").click(timeout=30_000)
            for i in range(n_main):
                page.get_by_text(f"Image pair {i + 1} of {n_main}").wait_for(timeout=30_000)
                if i == 5:  # a reload mid-study: the same rater resumes at a fresh display of this trial
                    page.reload()
                    page.get_by_role("button", name="Continue").click(timeout=30_000)
                    page.get_by_text(f"Image pair {i + 1} of {n_main}").wait_for(timeout=30_000)
                page.get_by_role("button", name=("Left", "Right")[i % 2], exact=True).click()
            page.get_by_text("Thank you!").wait_for(timeout=30_000)
            page.get_by_text("CC-7391").wait_for(timeout=30_000)  # the completion code, shown on the end page
            # The redirect variant: the end page sends the participant to the platform's completion URL.
            page.goto(f"{base}/?study={other.public_slug}&PROLIFIC_PID=pp2&STUDY_ID=st2&SESSION_ID=se2")
            page.get_by_role("button", name="Start").click(timeout=30_000)
            page.get_by_role("button", name="Right", exact=True).click()
            page.wait_for_url(done_url, timeout=30_000)
    finally:
        context.close()
    with Store(db, create=False) as store:
        raters = store.raters_frame(made.study_id)
        judged = store.judgments_frame(made.study_id)
        assert len(store.raters_frame(other.study_id)) == 1 and len(store.judgments_frame(other.study_id)) == 1
    # One rater (the reload made no second one), who consented, with every trial answered once.
    assert raters["participant_id"].tolist() == ["pp1"] and raters["consented_at"].notna().all()
    assert len(judged) == 1 + n_main and judged["position"].tolist() == list(range(1 + n_main))
    assert judged.loc[judged["block"] == "main", "choice"].tolist() == [("left", "right")[i % 2] for i in range(n_main)]
    assert (judged["kind"] == "duel").sum() == 6 and (judged["kind"] == "attention").sum() == 1
    assert (judged["latency_s"] >= 0.3 - 0.1).all()


# Odd sizes everywhere (pair 975 x 61, LR 243 x 15): at DPR 1.5 or 2 each is a fractional number of CSS px. The
# pair is wide enough that it, not the page's minimum width, sets the window up to DPR 3.
ODD = {"hr": (975, 61), "lr": (243, 15)}
# The page's display component and its state, message and canvases (device px rects), from its shadow root.
DISPLAY = """() => {
  for (const e of document.querySelectorAll('*')) {
    const root = e.shadowRoot && e.shadowRoot.querySelector('.es-root');
    if (!root) continue;
    const rect = (x) => { const r = x.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    return {state: root.dataset.state, msg: root.querySelector('.es-msg').textContent,
            canvases: [...root.querySelectorAll('canvas')].map(c => [c.getAttribute('aria-label'), c.width, c.height,
              ...rect(c).map(v => v * devicePixelRatio)]),
            buttons: [...root.querySelectorAll('button')].map(rect),
            w: innerWidth, h: innerHeight, dpr: devicePixelRatio};
  }
  return null;
}"""


@pytest.fixture(scope="module")
def odd_study(tmp_path_factory):
    """A task-1 study of one odd-sized image made by `evalsuite study create` (its printed windows kept), served."""
    from evalsuite.cli import main

    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(3)
    for sub, (w, h) in (("hr", ODD["hr"]), ("lr", ODD["lr"]), ("outputs/sr", ODD["hr"])):
        (root / "run" / sub).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "run" / sub / "i0.png")
    db = str(root / "study.db")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["study", "create", "--run", str(root / "run"), "--methods", "sr", "--db", db, "--catch", "0",
                     "--practice", "0", "--exposure", "120"]) == 0
    found = re.findall(r"(\d+) x (\d+) at ([\d.]+)%", out.getvalue())
    printed = {float(p) / 100: (int(w), int(h)) for w, h, p in found}
    with served_app(db) as base:
        yield db, base, printed


def _window(cdp, w: int, h: int) -> None:
    """Set the page's window (CSS px) without emulating a DPR: the browser's own (forced) scale factor stays."""
    cdp.send("Emulation.setDeviceMetricsOverride", {"width": w, "height": h, "deviceScaleFactor": 0, "mobile": False})


@pytest.mark.parametrize("dpr", [1, 1.25, 1.5, 2, 3])
def test_printed_window_is_what_the_page_needs_and_images_are_1to1_at_any_dpr(odd_study, playwright, dpr):
    """Issue 30 (items 3 and 4) on a browser whose screen has this DPR (--force-device-scale-factor: DevTools' DPR
    emulation scales the page after layout and cannot show 1:1 at DPR 2): `study create`'s printed window is
    accepted, 10 px less in either direction is asked to grow, the whole trial page fits it (and would not fit 10
    px less), and the screenshot of each image (pair and LR) equals the payload's pixels exactly."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    from studies.payload import Need, parse_payload

    db, base, printed = odd_study
    hr_w, hr_h = ODD["hr"]
    want = Need(2 * hr_w + ODD["lr"][0], hr_h).window_css(dpr)
    assert set(printed) == {1.0, 1.5, 2.0} and printed.get(dpr, want) == want
    w, h = want
    _public_id, token = _rater(db)
    frames: list[bytes] = []
    # One browser per DPR: a screen's scale factor is fixed when the browser starts.
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--force-device-scale-factor={dpr}"])
    try:
        page = b.new_context(no_viewport=True).new_page()
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
        cdp = page.context.new_cdp_session(page)
        _window(cdp, w, h)
        page.goto(f"{base}/?token={token}")
        page.get_by_role("button", name="Start").wait_for(timeout=30_000)

        def state(size: tuple[int, int]) -> dict:
            _window(cdp, *size)
            page.wait_for_function(f"() => innerWidth === {size[0]} && innerHeight === {size[1]}", timeout=5_000)
            time.sleep(0.5)  # the check reads the window 250 ms after the last resize
            return page.evaluate(DISPLAY)

        if dpr * w == int(dpr * w) and dpr * h == int(dpr * h):  # a window of exactly w x h CSS px exists
            for size in ((w - 10, h), (w, h - 10)):
                got = state(size)
                assert got["state"] == "small", f"{size} at DPR {dpr} was accepted: {got['msg']}"
                assert f"need a window of about {w} \u00d7 {h} pixels" in got["msg"]
            got = state((w, h))
        else:  # the browser rounds the window to whole device pixels: it may be a CSS px larger
            # Resize away and back, so the page's check runs on this size (not on one seen while loading).
            _window(cdp, w - 10, h)
            page.wait_for_function(f"() => innerWidth <= {w - 9}", timeout=5_000)
            _window(cdp, w, h)
            page.wait_for_function(f"() => innerWidth >= {w} && innerWidth <= {w + 1}", timeout=5_000)
            time.sleep(0.5)  # the check reads the window 250 ms after the last resize
            got = page.evaluate(DISPLAY)
            assert 0 <= got["w"] - w <= 1 and 0 <= got["h"] - h <= 1
        assert got["state"] == "fits", got["msg"]
        page.get_by_role("button", name="Start").click(timeout=30_000)
        page.wait_for_function(f"() => ({DISPLAY})()?.state === 'shown'", timeout=30_000)
        time.sleep(0.3)
        got = page.evaluate(DISPLAY)
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot(scale="device"))).convert("RGB"))
    finally:
        b.close()
    # The whole trial (pair, LR, buttons) lies inside the window, and 10 px less would cut it.
    bottom = max(r[3] for r in got["buttons"])
    assert bottom <= got["h"] and max(c[5] for c in got["canvases"]) <= got["w"] * dpr
    assert bottom + 16 > got["h"] - 10, f"the page needs {bottom + 16:.1f} px of height, not {got['h']}"
    # The payload the browser received, and each canvas on screen at whole device pixels, pixel for pixel.
    blocks = []
    for f in frames:
        msg = ForwardMsg()
        with contextlib.suppress(Exception):
            msg.ParseFromString(f if isinstance(f, bytes) else f.encode())
            el = msg.delta.new_element
            if el.WhichOneof("type") == "bidi_component" and el.bidi_component.WhichOneof("data") == "bytes":
                header, found = parse_payload(el.bidi_component.bytes)
                blocks = found or blocks
    assert len(blocks) == 3
    sizes = {"left": (hr_w, hr_h), "right": (hr_w, hr_h), "low resolution input": ODD["lr"]}
    for (label, cw, ch, x0, y0, x1, y1), block in zip(got["canvases"], (blocks[0], blocks[2], blocks[1]), strict=True):
        assert (cw, ch) == sizes[label]
        assert abs(x0 - round(x0)) < 0.05 and abs(y0 - round(y0)) < 0.05, f"{label} not on device pixels: {x0}, {y0}"
        assert (round(x1 - x0), round(y1 - y0)) == (cw, ch), f"{label} drawn at {x1 - x0} x {y1 - y0} device px"
        expect = np.frombuffer(block, np.uint8).reshape(ch, cw, 3)
        # Where on screen: the layout's device position, or a pixel off where an ancestor layer sits between
        # device pixels (the window at DPR 1.25 is not a whole number of CSS px); a resampled image matches nowhere.
        exact = max(
            (shot[y : y + ch, x : x + cw] == expect).all(-1).mean()
            for y in (round(y0) - 1, round(y0), round(y0) + 1)
            for x in (round(x0) - 1, round(x0), round(x0) + 1)
        )
        assert exact == 1.0, f"{label} at DPR {dpr}: {exact:.1%} of the pixels exact"
