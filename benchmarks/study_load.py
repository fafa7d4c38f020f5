"""Load test of the rater app: N simulated raters at once against `streamlit run` on 127.0.0.1.

Each simulated rater speaks the browser's own protocol (Streamlit protobuf messages over the app's
WebSocket): it opens its invite link, starts, answers every trial with a random side --wait s plus up
to --think s after the trial is rendered (default: at once, a stress test), and stops at the thank-you
page (bounded by --max-steps and --timeout). Printed: judgments per second, the 95th percentile latency
of a submission (click sent -> next page rendered), and the number of lost or duplicated judgments
(must be 0), with ratios to the anchors; medians over --repeats runs.

    .venv/bin/python benchmarks/study_load.py                      # 50 raters, SQLite, 3 repeats
    .venv/bin/python benchmarks/study_load.py --postgres           # throwaway PostgreSQL server
    .venv/bin/python benchmarks/study_load.py --wait 3 --think 1   # raters at the paper's 3 s pace
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # study_support: run folder, servers

# Anchors: 50 raters answering at the paper's pace (one 3 s exposure each) need 50 / 3 judgments/s;
# a submission should render the next trial within 1 s; no judgment may be lost or doubled.
ANCHOR_JPS = 50 / 3.0
ANCHOR_P95_S = 1.0


@dataclass
class RaterLog:
    """What one simulated rater did: (position, choice) per answer and each submission's latency."""

    token: str
    answers: list[tuple[int, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    finished: bool = False
    error: str = ""


class StreamlitClient:
    """A minimal Streamlit WebSocket client: rerun with widget triggers, read the rendered elements."""

    def __init__(self, ws, query: str) -> None:
        self.ws, self.query, self.cache = ws, query, {}

    async def rerun(self, trigger_id: str | None = None) -> list:
        """Send a rerun (optionally clicking the button `trigger_id`); return the elements of the new page."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        if trigger_id:
            w = msg.rerun_script.widget_states.widgets.add()
            w.id, w.trigger_value = trigger_id, True
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
                elements.append(fwd.delta.new_element)
            elif kind == "script_finished" and fwd.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return elements


def _buttons(elements) -> dict[str, str]:
    return {e.button.label: e.button.id for e in elements if e.WhichOneof("type") == "button"}


def _texts(elements) -> str:
    out = []
    for e in elements:
        kind = e.WhichOneof("type")
        if kind in ("heading", "markdown", "alert"):
            out.append(getattr(e, kind).body)
        elif kind == "progress":
            out.append(e.progress.text)
    return "\n".join(out)


async def simulate_rater(base: str, token: str, seed: int, max_steps: int, think_s: float, wait_s: float) -> RaterLog:
    """One rater from the invite link to the thank-you page."""
    import websockets

    log = RaterLog(token)
    rng = np.random.default_rng(seed)
    ws_url = base.replace("http://", "ws://") + "/_stcore/stream"
    try:
        async with websockets.connect(
            ws_url,
            subprotocols=["streamlit"],
            origin=base,
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        ) as ws:
            client = StreamlitClient(ws, urlencode({"token": token}))
            page = await client.rerun()
            for _ in range(max_steps):
                buttons, text = _buttons(page), _texts(page)
                if "You have finished the study" in text:
                    log.finished = True
                    break
                if "Left" in buttons:
                    choice = str(rng.choice(["Left", "Right"]))
                    # The button id ends with its key a<position>l|r: the trial this click answers.
                    position = int(buttons[choice].rsplit("-a", 1)[1][:-1])
                    await asyncio.sleep(wait_s + float(rng.uniform(0, think_s)))
                    t0 = time.perf_counter()
                    page = await client.rerun(buttons[choice])
                    log.latencies.append(time.perf_counter() - t0)
                    log.answers.append((position, choice.lower()))
                elif buttons:
                    page = await client.rerun(next(iter(buttons.values())))  # Start / Continue / Start the study
                else:
                    raise RuntimeError(f"page without buttons: {text[:200]!r}")
    except Exception as exc:  # noqa: BLE001 (reported, and counted as unfinished)
        log.error = f"{type(exc).__name__}: {exc}"
    return log


def audit(db: str, logs: list[RaterLog]) -> tuple[int, int]:
    """(lost, duplicated): answers sent but not stored as sent; stored judgments nobody sent, or extra."""
    from studies.store import Store

    with Store(db, create=False) as store:
        frame = store.judgments_frame()
        public = {log.token: store.rater_by_token(log.token).public_id for log in logs}
    stored = {}
    duplicated = 0
    for r in frame.itertuples():
        key = (r.rater_id, int(r.position))
        duplicated += key in stored
        stored[key] = r.choice
    sent = {(public[log.token], pos): choice for log in logs for pos, choice in log.answers}
    lost = sum(1 for k, c in sent.items() if stored.get(k) != c)
    duplicated += sum(1 for k in stored if k not in sent)
    return lost, duplicated


async def _run_all(base: str, tokens: list[str], max_steps: int, think_s: float, wait_s: float, timeout_s: float):
    jobs = [simulate_rater(base, t, k, max_steps, think_s, wait_s) for k, t in enumerate(tokens)]
    return await asyncio.wait_for(asyncio.gather(*jobs), timeout_s)


def one_run(args: argparse.Namespace, db: str, run_dir: Path) -> dict[str, float]:
    """Create a study, invite the raters, serve the app, let them all answer; return the figures."""
    from study_support import served_app

    from studies.service import create_study, invite_raters

    create_study(
        run_dir,
        db,
        task=args.task,
        methods=("bicubic", "nearest"),
        per_rater=args.per_rater,
        n_catch=args.catch,
        n_practice=args.practice,
        exposure_s=3.0,
    )
    tokens = [t for _, t in invite_raters(db, args.raters)]
    with served_app(db) as base:
        t0 = time.perf_counter()
        logs = asyncio.run(_run_all(base, tokens, args.max_steps, args.think, args.wait, args.timeout))
        wall = time.perf_counter() - t0
    lost, duplicated = audit(db, logs)
    lat = [x for log in logs for x in log.latencies]
    errors = [log.error for log in logs if log.error]
    for e in errors[:3]:
        print(f"  rater error: {e}", file=sys.stderr)
    return {
        "judgments": float(len(lat)),
        "wall_s": wall,
        "jps": len(lat) / wall,
        "p95_s": float(np.percentile(lat, 95)) if lat else float("nan"),
        "lost": float(lost),
        "duplicated": float(duplicated),
        "unfinished": float(sum(not log.finished for log in logs)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the load test --repeats times and print medians with their anchor ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--raters", type=int, default=50)
    p.add_argument("--per-rater", type=int, default=1, help="images per rater and method (2 methods)")
    p.add_argument("--catch", type=int, default=1)
    p.add_argument("--practice", type=int, default=1)
    p.add_argument("--task", type=int, default=1, choices=[1, 2])
    p.add_argument("--images", type=int, default=8, help="images in the generated run folder")
    p.add_argument("--size", type=int, default=128, help="HR side of the generated images (pixels)")
    p.add_argument("--think", type=float, default=0.2, help="max random pause before each answer (s)")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="fixed pause before each answer (s); 3 = raters wait out the paper's exposure",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=200, help="bound on pages per rater")
    p.add_argument("--timeout", type=float, default=300.0, help="bound on one run (s)")
    p.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL server instead of SQLite")
    args = p.parse_args(argv)
    # SIGTERM (e.g. `timeout`) unwinds normally, so the served app and the temporary files are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from study_support import fresh_postgres_database, make_run_folder, postgres_server

    results = []
    with tempfile.TemporaryDirectory(prefix="study-load-") as tmp:
        run_dir = make_run_folder(Path(tmp) / "run", n_images=args.images, size=args.size)
        for k in range(args.repeats):
            if args.postgres:
                with postgres_server() as server:
                    res = one_run(args, fresh_postgres_database(server, f"load{k}"), run_dir)
            else:
                res = one_run(args, str(Path(tmp) / f"load{k}.db"), run_dir)
            results.append(res)
            print(
                f"run {k + 1}: {res['judgments']:.0f} judgments in {res['wall_s']:.1f} s, "
                f"{res['jps']:.1f} judgments/s, p95 {res['p95_s'] * 1000:.0f} ms, lost {res['lost']:.0f}, "
                f"duplicated {res['duplicated']:.0f}, unfinished raters {res['unfinished']:.0f}"
            )

    def med(key: str) -> float:
        """Median of one figure over the repeats."""
        return statistics.median(r[key] for r in results)

    backend = "postgresql" if args.postgres else "sqlite"
    pace = f"answers after {args.wait:g}-{args.wait + args.think:g} s"
    print(
        f"\nstudy_load: {args.raters} raters at once, {backend}, task {args.task}, {pace}, "
        f"median of {len(results)} runs"
    )
    print(
        f"judgments/s            {med('jps'):8.1f}   ratio to anchor {ANCHOR_JPS:.1f}/s (50 raters, 3 s): "
        f"{med('jps') / ANCHOR_JPS:.2f}"
    )
    print(
        f"p95 submission latency {med('p95_s') * 1000:8.0f} ms ratio to anchor {ANCHOR_P95_S * 1000:.0f} ms: "
        f"{med('p95_s') / ANCHOR_P95_S:.2f}"
    )
    lost = int(max(r["lost"] for r in results))
    dup = int(max(r["duplicated"] for r in results))
    unfinished = int(max(r["unfinished"] for r in results))
    print(f"lost judgments         {lost:8d}   (must be 0)")
    print(f"duplicated judgments   {dup:8d}   (must be 0)")
    print(f"unfinished raters      {unfinished:8d}")
    return 0 if lost == dup == unfinished == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
