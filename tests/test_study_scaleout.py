"""Scale-out: two app processes behind one PostgreSQL database serve the same raters; a rater's second tab
on the other process takes over, and the first tab's late answer is refused there too."""

from __future__ import annotations

import asyncio

import pytest
from study_support import (
    fresh_postgres_database,
    into_trials,
    make_run_folder,
    open_tab,
    postgres_bin,
    postgres_server,
    served_apps,
)

from studies.service import create_study, invite_raters
from studies.store import Store


@pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL server binaries (scripts/setup-system.sh)")
def test_two_app_processes_on_one_postgresql(tmp_path):
    run = make_run_folder(tmp_path / "run", n_images=3, size=32)
    with postgres_server() as server:
        db = fresh_postgres_database(server, "scaleout")
        create_study(run, db, task=2, methods=("bicubic",), per_rater=2, n_catch=1, n_practice=0, exposure_s=0.2)
        tokens = [t for _, t in invite_raters(db, 2)]
        with served_apps(db, 2) as (app_a, app_b):
            asyncio.run(_scenario(app_a, app_b, tokens))
        with Store(db, create=False) as store:
            judged = store.judgments_frame()
            refused = store.refusals_frame()
    # Rater 1: 3 trials, all answered once, the first by the second tab; rater 2: 3 trials on process B.
    assert judged.groupby("rater_label").size().to_dict() == {"R01": 3, "R02": 3}
    first = judged[(judged["rater_label"] == "R01") & (judged["position"] == 0)]
    assert first["choice"].tolist() == ["right"]
    assert refused["reason"].tolist() == ["replaced display (reload, reconnect or another tab)"]


async def _answer(tab, page, choice: str):
    """What the page does for one display: report it shown (the server's route), wait out the exposure, answer."""
    display = page.display
    assert await tab.shown(page)
    await asyncio.sleep(0.3)
    return await tab.send(page, {"type": "answer", "display": display, "choice": choice})


async def _scenario(app_a: str, app_b: str, tokens: list[str]) -> None:
    ws1, tab1, page1 = await open_tab(app_a, tokens[0])
    page1 = await into_trials(tab1, page1)
    assert await tab1.shown(page1)
    # The same link on the other process: a fresh display of the same trial replaces the first one.
    ws2, tab2, page2 = await open_tab(app_b, tokens[0])
    page2 = await into_trials(tab2, page2)
    assert page2.display and page2.display != page1.display
    await asyncio.sleep(0.3)
    late = await tab1.send(page1, {"type": "answer", "display": page1.display, "choice": "left"})
    assert "another tab or window" in late.text and "Continue here" in late.buttons
    await ws1.close()
    for choice in ("right", "left", "left"):
        page2 = await _answer(tab2, page2, choice)
    assert "You have finished" in page2.text
    await ws2.close()
    ws3, tab3, page3 = await open_tab(app_b, tokens[1])
    page3 = await into_trials(tab3, page3)
    for _ in range(3):
        page3 = await _answer(tab3, page3, "left")
    assert "You have finished" in page3.text
    await ws3.close()
