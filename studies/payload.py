"""What the browser receives for one trial: a binary payload with a small header and raw RGB pixels.

Both images of a pair travel as raw 8-bit RGB rows (no file format, no metadata, no name), so their byte
counts are equal by construction (a pair has one size); the page draws them into canvases at one image
pixel per device pixel. Layout: 4-byte big-endian header length, the UTF-8 JSON header, then the left
pixels, the right pixels and (task 1) the LR input's pixels. The header names nothing that differs
between the real and the fake image: the display id (random, single use), the exposure, the sizes, the study-wide
window the page needs, where to report the display drawn and (practice only) the feedback on the previous
practice answer.

The window a study needs (`Need`) is computed here once for both sides: `study create` prints
`Need.window_css(dpr)` and the page's check (studies/trial.js) asks for the same numbers from the header's
"need", with the page's own side padding measured. studies/pages.py pins that padding (PAGE_CSS) and the
trial page's height, so what is printed is what the page needs; tests/test_study_browser.py measures it.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

FORMAT_VERSION = 1
GAP_CSS_PX = 16  # space between the images (CSS pixels), also used by the window check
PAGE_PAD_X_CSS_PX = 16  # the rater page's padding left and right of its content (pinned by pages.PAGE_CSS)
# Height of a trial page without the pair (CSS px): padding, progress, question, message line, margins,
# buttons, padding: 203.8 px as Chromium lays it out with Streamlit's bundled font, rounded up with 1 px to
# spare (tests/test_study_browser.py checks that the page fits this and would not fit 10 px less).
MARGIN_CSS_PX = 205
# Narrowest content (CSS px) the trial page lays out without wrapping a line, by the number of gaps between
# the images: task 1 (LR between the pair) its question, 668 px in bold; task 2 its question (328 px) and the
# practice feedback in the message line (about 345 px).
MIN_CONTENT_CSS_PX = {2: 680, 1: 360}
# Where the page POSTs "shown" (studies/server.py), relative to the app's URL; the same for every trial.
SHOWN_PATH = "_evalsuite/shown"


@dataclass(frozen=True)
class Pixels:
    """An image as raw RGB rows: width, height and w*h*3 bytes."""

    width: int
    height: int
    rgb: bytes


def decode_rgb(png: bytes) -> Pixels:
    """PNG bytes -> raw RGB rows (alpha and metadata dropped)."""
    with Image.open(io.BytesIO(png)) as im:
        arr = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return Pixels(arr.shape[1], arr.shape[0], arr.tobytes())


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk, without decoding the pixels."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@dataclass(frozen=True)
class Need:
    """The device pixels a study's largest trial needs: the pair (and LR) side by side, its height, and the
    number of gaps between the images (2 with the LR input between the pair, else 1)."""

    width: int
    height: int
    gaps: int = 2

    def content_css(self, dpr: float) -> int:
        """Width (CSS px) the trial page's content needs at this DPR: the images, the gaps, the question."""
        return max(math.ceil(self.width / dpr) + self.gaps * GAP_CSS_PX, MIN_CONTENT_CSS_PX[self.gaps])

    def window_css(self, dpr: float) -> tuple[int, int]:
        """Smallest window (CSS px: width, height) that shows a whole trial page at this DPR without scrolling."""
        return self.content_css(dpr) + 2 * PAGE_PAD_X_CSS_PX, math.ceil(self.height / dpr) + MARGIN_CSS_PX

    def header(self) -> dict[str, int]:
        """What the page's check needs to ask for the same window (studies/trial.js `fit`)."""
        return {"w": self.width, "h": self.height, "pad_w": self.gaps * GAP_CSS_PX, "pad_h": MARGIN_CSS_PX,
                "min_w": MIN_CONTENT_CSS_PX[self.gaps]}


def study_need(sizes: list[tuple[int, int, int, int]]) -> Need:
    """The study-wide need from (pair w, pair h, lr w, lr h) per image (lr 0 x 0 when not shown)."""
    width = max(2 * w + lw for w, _h, lw, _lh in sizes)
    height = max(max(h, lh) for _w, h, _lw, lh in sizes)
    return Need(int(width), int(height), 2 if any(lw for _w, _h, lw, _lh in sizes) else 1)


def trial_payload(
    display_id: str, exposure_s: float, left: Pixels, right: Pixels, lr: Pixels | None, need: Need, note: str = ""
) -> bytes:
    """The bytes the page receives for one display of a trial (`note`: practice feedback shown above the pair)."""
    if (left.width, left.height) != (right.width, right.height):
        raise ValueError("the two images of a pair must have one size")
    header = {
        "v": FORMAT_VERSION,
        "mode": "trial",
        "display": display_id,
        "exposure_ms": int(round(exposure_s * 1000)),
        "w": left.width,
        "h": left.height,
        "lr": [lr.width, lr.height] if lr is not None else [0, 0],
        "need": need.header(),
        "shown_url": SHOWN_PATH,
    }
    if note:
        header["note"] = note
    return _pack(header, left.rgb, right.rgb, lr.rgb if lr is not None else b"")


def display_payload(
    trial: Any, display_id: str, exposure_s: float, need: Need, pixels: Callable[[str], Pixels], note: str = ""
) -> bytes:
    """The payload of one display of a `store.Trial`, its stimuli looked up by `pixels(stimulus_id)`."""
    lr = pixels(trial.middle_id) if trial.middle_id else None
    return trial_payload(display_id, exposure_s, pixels(trial.left_id), pixels(trial.right_id), lr, need, note)


def check_payload(need: Need) -> bytes:
    """The bytes of the screen check shown before the study starts (no images)."""
    return _pack({"v": FORMAT_VERSION, "mode": "check", "need": need.header()})


def redirect_payload(url: str) -> bytes:
    """The bytes that make the page go to a crowd platform's completion URL (the end page of a study)."""
    return _pack({"v": FORMAT_VERSION, "mode": "redirect", "url": url})


def _pack(header: dict[str, Any], *blocks: bytes) -> bytes:
    """The wire layout: 4-byte big-endian header length, the compact JSON header, then the pixel blocks."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return b"".join([len(head).to_bytes(4, "big"), head, *blocks])


def parse_payload(data: bytes) -> tuple[dict, list[bytes]]:
    """Inverse of trial_payload (for tests and audits): the header and the pixel blocks in page order."""
    n = int.from_bytes(data[:4], "big")
    header = json.loads(data[4 : 4 + n].decode("utf-8"))
    if header.get("mode") != "trial":
        return header, []
    body = data[4 + n :]
    size = header["w"] * header["h"] * 3
    lw, lh = header["lr"]
    blocks = [body[:size], body[size : 2 * size]]
    if lw:
        blocks.append(body[2 * size : 2 * size + lw * lh * 3])
    return header, blocks
