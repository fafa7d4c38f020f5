"""End to end in a real headless Chromium: a study made from a real engine run, answered by a browser-driven
rater against `streamlit run`; the database holds exactly the clicks, and a leak audit of the page source,
WebSocket frames, HTTP responses and image bytes finds nothing that names the real image."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studies.analysis import analyze
from studies.service import create_study, invite_raters
from studies.stimuli import png_chunks
from studies.store import Store
from study_support import served_app

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


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory) -> Path:
    """A real benchmark run (the engine) on three small generated photos-like images."""
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


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (scripts/setup-system.sh)")
def test_browser_rater_completes_a_study_and_nothing_leaks(engine_run, tmp_path):
    from playwright.sync_api import sync_playwright

    db = str(tmp_path / "study.db")
    made = create_study(engine_run, db, task=1, methods=METHODS, per_rater=2, n_catch=1, n_practice=1, exposure_s=1.0)
    token = invite_raters(db, 1)[0][1]
    store = Store(db, create=False)
    stim_ids = list(store.stimulus_ids(made.study_id).values())
    image_ids = sorted({k[0] for k in store.stimulus_ids(made.study_id)})
    forbidden = [*METHODS, *image_ids, *stim_ids, "photo_", "outputs", str(engine_run)]
    frames: list[bytes] = []
    responses: list[tuple[str, bytes]] = []
    pages: list[str] = []
    clicks: list[str] = []
    pixels_seen: list[tuple[np.ndarray, np.ndarray]] = []

    with served_app(db) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on(
                "websocket",
                lambda ws: ws.on("framereceived", lambda f: frames.append(f if isinstance(f, bytes) else f.encode())),
            )

            def on_response(r):
                body = b""
                try:
                    if "/static/" not in r.url:
                        body = r.body()
                except Exception:  # noqa: BLE001 (redirects and aborted requests have no body)
                    pass
                responses.append((r.url, body))

            page.on("response", on_response)
            page.goto(f"{base}/?token={token}")
            page.get_by_role("button", name="Start", exact=True).click()
            rng = np.random.default_rng(1)
            for step in range(6):  # 1 practice + 4 real + 1 catch
                if step == 1:
                    page.get_by_role("button", name="Start the study").click()
                label = "Practice 1 of 1" if step == 0 else f"Image pair {step} of 5"
                page.get_by_text(label).wait_for(timeout=30_000)
                sides = page.locator("img.es-side")
                sides.first.wait_for(timeout=30_000)
                assert sides.evaluate_all("els => els.map(e => getComputedStyle(e).visibility)") == ["visible"] * 2
                srcs = sides.evaluate_all("els => els.map(e => e.getAttribute('src'))")
                pixels_seen.append(tuple(_decode(s) for s in srcs))
                pages.append(page.content())
                # The pair hides itself after the exposure time; a choice is still required.
                page.wait_for_function(
                    "() => [...document.querySelectorAll('img.es-side')]"
                    ".every(e => getComputedStyle(e).visibility === 'hidden')",
                    timeout=10_000,
                )
                choice = str(rng.choice(["Left", "Right"]))
                clicks.append(choice.lower())
                button = page.get_by_role("button", name=choice, exact=True)
                # One trial is answered with a double click: it must count once and not answer the next trial.
                button.dblclick() if step == 2 else button.click()
                if step == 0:
                    page.get_by_text("undamaged image").wait_for(timeout=30_000)
            page.get_by_text("Thank you!").wait_for(timeout=30_000)
            pages.append(page.content())
        finally:
            browser.close()

    # The database holds exactly the answers clicked, once each, in order.
    frame = store.judgments_frame().sort_values("position")
    assert frame["choice"].tolist() == clicks
    assert frame["block"].tolist() == ["practice"] + ["main"] * 5
    assert (frame["latency_s"] >= 0.5).all()  # answered after the pair was hidden
    store.dispose()
    # The study analyzes into fool rates with intervals.
    result = analyze(db, n_resamples=200)
    fr = result.fool_rates.set_index("method")
    assert list(fr.index) == list(METHODS) and (fr["n_judgments"] == 2).all()
    expected = frame[frame["kind"] == "real"].groupby("method")["chose_real"].apply(lambda s: 1 - s.mean())
    assert fr["fool_rate"].to_dict() == pytest.approx(expected.to_dict())
    assert (fr["wilson_low"] <= fr["fool_rate"]).all() and (fr["fool_rate"] <= fr["wilson_high"]).all()

    # Leak audit: page source, every WebSocket frame, every response URL and non-static body.
    for text in pages:
        for word in forbidden:
            assert word not in text, f"page source names {word!r}"
        assert re.findall(r'<img[^>]*class="es-side"[^>]*alt="(\w+)"', text) in ([], ["left", "right"])
    # The audit sees the channel that carries the page: trial texts and image data travel in these frames.
    assert any(b"Image pair 5 of 5" in f for f in frames) and any(b"data:image/png;base64," in f for f in frames)
    assert any(url.rstrip("/").endswith(f"token={token}") for url, _ in responses)
    for f in frames:
        for word in forbidden:
            assert word.encode() not in f, f"a WebSocket frame names {word!r}"
    for url, body in responses:
        for word in forbidden:
            assert word not in url and word.encode() not in body, f"{url} names {word!r}"
    # Image bytes: both sides are PNGs of one size with identical chunk layouts and no metadata.
    for left, right in pixels_seen:
        assert left[0].shape == right[0].shape
        assert set(left[1]) == set(right[1]) == {"IHDR", "IDAT", "IEND"}
    # The pixels are the run's own: the real side of each pair is its image's ground truth, the other side
    # the method's output (real trials) or a degraded copy (catch and practice trials).
    hr = {i: np.asarray(Image.open(engine_run / "hr" / f"{i}.png").convert("RGB")) for i in image_ids}
    trials = frame.to_dict("records")  # in position order: one per page shown
    assert len(pixels_seen) == len(trials) == 6
    for (left, right), trial in zip(pixels_seen, trials, strict=True):
        matches = [any(np.array_equal(side[0], h) for h in hr.values()) for side in (left, right)]
        assert sum(matches) == 1
        real, other = (left, right) if trial["real_side"] == "left" else (right, left)
        assert np.array_equal(real[0], hr[trial["image_id"]])
        if trial["kind"] == "real":
            output = engine_run / "outputs" / trial["method"] / f"{trial['image_id']}.png"
            assert np.array_equal(other[0], np.asarray(Image.open(output).convert("RGB")))


def _decode(src: str) -> tuple[np.ndarray, list[str]]:
    data = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), png_chunks(data)
