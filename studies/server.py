"""The rater app's server: Streamlit's own (Starlette) server for studies/app.py, plus one small route.

`POST /_evalsuite/shown` is where the trial page reports that it drew a display (`Store.display_shown`):
a plain HTTP request instead of a Streamlit rerun, which halves the script runs per answer. The display id
(128 random bits, sent only to the rater's page) identifies the rater. `evalsuite study serve` runs this
file with `streamlit run`; a page that cannot reach the route reports "shown" through the component instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# `streamlit run studies/server.py` puts studies/ on the path, not the repository: add it for `import studies`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studies.payload import SHOWN_PATH  # noqa: E402
from studies.service import database, get_store  # noqa: E402
from studies.store import Screen  # noqa: E402

MAX_BODY = 1024  # bytes: a shown report is a display id and a window size


async def shown(request: Request) -> JSONResponse:
    """Record that a page drew a display: {"display": id, "w", "h", "dpr"} -> {"ok": recorded}."""
    body = b""
    async for chunk in request.stream():  # read at most MAX_BODY bytes, whatever the client sends
        body += chunk
        if len(body) > MAX_BODY:
            return JSONResponse({"ok": False, "error": "too long"}, status_code=413)
    try:
        ev = json.loads(body)
        display_id = ev["display"]
        if not isinstance(display_id, str):
            raise ValueError("display id")
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"ok": False, "error": "malformed"}, status_code=400)
    ok = await run_in_threadpool(get_store(database()).display_shown, None, display_id, Screen.from_report(ev))
    return JSONResponse({"ok": ok})


app = st.App(str(Path(__file__).with_name("app.py")), routes=[Route("/" + SHOWN_PATH, shown, methods=["POST"])])
