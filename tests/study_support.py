"""Test and benchmark support for studies: a tiny run folder, a throwaway PostgreSQL, a served app.

Real components only: the run folder holds real PNG files laid out as the engine writes them, PostgreSQL
is a real server in a temporary cluster, and the app is `streamlit run` on a free localhost port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from PIL import Image

from studies.service import serve_command


def make_run_folder(
    root: str | Path,
    n_images: int = 4,
    size: int = 32,
    scale: int = 4,
    methods: tuple[str, ...] = ("bicubic", "nearest"),
    seed: int = 0,
) -> Path:
    """Write a small run folder (hr/, lr/, outputs/<method>/, summary.csv) of generated images."""
    from evalsuite.degrade import degrade, to_image, to_tensor, upsample

    root = Path(root)
    rng = np.random.default_rng(seed)
    for sub in ["hr", "lr", *[f"outputs/{m}" for m in methods]]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for k in range(n_images):
        # A smooth colour field plus noise: different per image, with detail the LR loses.
        base = np.stack([np.sin(6 * xx + k), np.cos(5 * yy - k), np.sin(4 * (xx + yy) + 2 * k)], -1)
        arr = np.clip(127 + 80 * base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        hr = Image.fromarray(arr, "RGB")
        image_id = f"img{k:03d}"
        hr.save(root / "hr" / f"{image_id}.png")
        lr = degrade(to_tensor(hr)[None], scale)
        to_image(lr[0]).save(root / "lr" / f"{image_id}.png")
        for m in methods:
            # "nearest": pixel replication; any other label: the engine's bicubic upsampling.
            if m == "nearest":
                sr = lr[0].repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            else:
                sr = upsample(lr, scale)[0]
            to_image(sr).save(root / "outputs" / m / f"{image_id}.png")
    (root / "summary.csv").write_text("method,n_images\n" + "".join(f"{m},{n_images}\n" for m in methods))
    return root


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL server binaries (Debian layout), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on a free port; yields its SQLAlchemy URL; removes it after."""
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    # PostgreSQL refuses to run as root: run it as the `postgres` user in a folder that user owns.
    as_user: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="evalsuite-pg-"))
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = tmp / "data", free_port()
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(tmp / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ServedApp(str):
    """The base URL of a served app (a str), with the server's process id."""

    pid: int


@contextlib.contextmanager
def served_app(db: str, port: int | None = None, timeout_s: float = 60.0) -> Iterator[ServedApp]:
    """Serve the rater app with `streamlit run` on 127.0.0.1; yields its base URL (with .pid); stops it after."""
    port = port or free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        serve_command(db, port, "127.0.0.1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = ServedApp(f"http://127.0.0.1:{port}")
    base.pid = proc.pid
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(
                    f"the study app did not start:\n{log.read().decode(errors='replace')[-3000:]}"
                )
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextlib.contextmanager
def served_apps(db: str, n: int) -> Iterator[list[ServedApp]]:
    """n app processes on one database (the scale-out set-up); yields their base URLs."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(served_app(db)) for _ in range(n)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Page:
    """What a rater's tab shows after a script run: buttons, texts and the display component (if any)."""

    buttons: dict[str, tuple[str, bool]]  # label -> (widget id, disabled)
    text: str
    component_id: str = ""
    header: dict | None = None
    fragment_id: str = ""  # the fragment holding the page: its clicks and events rerun only that fragment

    @property
    def display(self) -> str:
        """The display id of the trial on screen ('' when none)."""
        return (self.header or {}).get("display", "")


class StudyTab:
    """One browser tab of a rater, speaking Streamlit's WebSocket protocol (what the page's JS would send)."""

    def __init__(self, ws, query: str, base: str = "") -> None:
        self.ws, self.query, self.base, self.cache = ws, query, base, {}

    async def run(self, widget_id: str | None = None, event: dict | None = None, fragment_id: str = "") -> Page:
        """Rerun the script (or one fragment), clicking button `widget_id` or sending component `event`."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        if fragment_id:
            msg.rerun_script.fragment_id = fragment_id
        if widget_id:
            w = msg.rerun_script.widget_states.widgets.add()
            w.id = widget_id
            if event is None:
                w.trigger_value = True
            else:
                w.json_trigger_value = json.dumps([{"event": "event", "value": event}])
        await self.ws.send(msg.SerializeToString())
        elements = []
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(await self.ws.recv())
            if fwd.WhichOneof("type") == "ref_hash":
                fwd = self.cache[fwd.ref_hash]
            elif fwd.hash:
                self.cache[fwd.hash] = fwd
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                elements.append((fwd.delta.new_element, fwd.delta.fragment_id))
            elif kind == "script_finished" and fwd.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return _page(elements)

    async def send(self, page: Page, event: dict, fragment: bool = True) -> Page:
        """Send the display component's event (as its JS does with setTriggerValue); it reruns the component's
        fragment, as a browser asks, unless `fragment` is False (a full rerun)."""
        from streamlit.components.v2.bidi_component.main import _make_trigger_id

        trigger = _make_trigger_id(page.component_id, "events")
        return await self.run(trigger, event, page.fragment_id if fragment else "")


    async def shown(self, page: Page, screen: tuple[int, int, float] = (1600, 1000, 1.0)) -> bool:
        """Report the page's display drawn, as its JS does: a POST to the server's "shown" route (no rerun)."""
        from studies.payload import SHOWN_PATH

        body = json.dumps({"display": page.display, "w": screen[0], "h": screen[1], "dpr": screen[2]}).encode()
        req = urllib.request.Request(f"{self.base}/{SHOWN_PATH}", body, {"Content-Type": "application/json"})

        def post() -> bool:
            with urllib.request.urlopen(req, timeout=120) as r:
                return bool(json.loads(r.read())["ok"])

        return await asyncio.to_thread(post)


def _page(elements) -> Page:
    from studies.payload import parse_payload

    buttons, texts, comp, header, fragment = {}, [], "", None, ""
    for e, fragment_id in elements:
        fragment = fragment or fragment_id  # the rater's page is one fragment: its clicks rerun only that
        kind = e.WhichOneof("type")
        if kind == "button":
            buttons[e.button.label] = (e.button.id, e.button.disabled)
        elif kind in ("heading", "markdown", "alert"):
            texts.append(getattr(e, kind).body)
        elif kind == "progress":
            texts.append(e.progress.text)
        elif kind == "bidi_component" and e.bidi_component.WhichOneof("data") == "bytes":
            comp, header = e.bidi_component.id, parse_payload(e.bidi_component.bytes)[0]
    return Page(buttons, "\n".join(texts), comp, header, fragment)


async def open_tab(base: str, token: str):
    """A new WebSocket connection (a new Streamlit session) for an invite link: (connection, tab, page)."""
    import websockets

    ws = await websockets.connect(
        base.replace("http://", "ws://") + "/_stcore/stream",
        subprotocols=["streamlit"],
        origin=base,
        max_size=None,
        open_timeout=120,
        ping_interval=None,
    )
    tab = StudyTab(ws, urlencode({"token": token}), base)
    return ws, tab, await tab.run()


async def into_trials(tab: StudyTab, page: Page, screen: tuple[int, int, float] = (1600, 1000, 1.0)) -> Page:
    """From the instructions to a trial (or the thank-you page): report the screen, Start/Continue, and
    open the main block when asked."""
    for _ in range(6):
        if page.header and page.header.get("mode") == "trial" or "You have finished" in page.text:
            return page
        if page.header and page.header.get("mode") == "check" and page.buttons.get("Start", ("", True))[1] \
                and page.buttons.get("Continue", ("", True))[1]:
            w, h, dpr = screen
            page = await tab.send(page, {"type": "screen", "w": w, "h": h, "dpr": dpr, "fits": True})
            continue
        for label in ("Start", "Continue", "Start the study", "Continue here"):
            if label in page.buttons and not page.buttons[label][1]:
                page = await tab.run(page.buttons[label][0], fragment_id=page.fragment_id)
                break
        else:
            raise RuntimeError(f"unexpected page: {page.text[:300]!r}")
    raise RuntimeError(f"no trial after the instructions: {page.text[:300]!r}")


def submit_all(db: str, jobs: list[tuple[int, int, str]], seed: int = 0) -> list[tuple[int, str, bool]]:
    """Submit (rater id, assignment id, choice) jobs in a seeded random order, each twice (a double click).

    Returns (assignment id, choice sent, created) for every call; runs in a thread or a spawned process.
    """
    from studies.store import Store

    rng = np.random.default_rng(seed)
    out = []
    with Store(db, create=False) as store:
        for idx in rng.permutation(len(jobs)):
            rater_id, assignment_id, choice = jobs[idx]
            for _ in range(2):
                res = store.submit(rater_id, assignment_id, choice)
                out.append((assignment_id, choice, res.created))
    return out


def fresh_postgres_database(server_url: str, name: str) -> str:
    """Create an empty database `name` on a PostgreSQL server; returns its SQLAlchemy URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def answer_through_displays(store, rater_id: int, choose) -> list[str]:
    """Answer every open trial of a rater the way the app does (display, shown, answer); `choose(trial)`
    gives the side. Returns the sides chosen, in order."""
    out = []
    for t in store.trials(rater_id):
        if t.answered:
            continue
        display = store.issue_display(rater_id, t.assignment_id)
        store.display_shown(rater_id, display)
        side = choose(t)
        res = store.answer(rater_id, display, side, 0.0)
        if not res.accepted:
            raise RuntimeError(f"answer refused: {res.reason}")
        out.append(side)
    return out


def make_large_run(
    root: str | Path, n_images: int, size: int = 8, scale: int = 4, methods: tuple[str, ...] = ("bicubic", "nearest")
) -> Path:
    """A run folder of many generated images quickly (PIL only, no engine): smooth colour fields with noise as
    hr/, box-downscaled lr/, and per method a PIL upscale of the LR (bicubic, or nearest for "nearest")."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for sub in ["hr", "lr", *[f"outputs/{m}" for m in methods]]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for k in range(n_images):
        base = np.stack([np.sin(6 * xx + k), np.cos(5 * yy - 0.7 * k), np.sin(4 * (xx + yy) + 0.3 * k)], -1)
        arr = np.clip(127 + 80 * base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        hr = Image.fromarray(arr, "RGB")
        lr = hr.resize((size // scale, size // scale), Image.Resampling.BOX)
        image_id = f"img{k:05d}"
        hr.save(root / "hr" / f"{image_id}.png")
        lr.save(root / "lr" / f"{image_id}.png")
        for m in methods:
            kind = Image.Resampling.NEAREST if m == "nearest" else Image.Resampling.BICUBIC
            lr.resize((size, size), kind).save(root / "outputs" / m / f"{image_id}.png")
    (root / "summary.csv").write_text("method,n_images\n" + "".join(f"{m},{n_images}\n" for m in methods))
    return root
