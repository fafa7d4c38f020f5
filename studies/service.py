"""Library calls behind `evalsuite study create|invite|serve`: make a study, invite raters, serve the app."""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from studies.design import CrowdConfig, StudyConfig, balanced_raters, rater_plan, select_images, study_size
from studies.payload import Need, study_need
from studies.quality import QualityPolicy
from studies.stimuli import build_stimuli, run_images
from studies.store import Store

APP_PATH = Path(__file__).with_name("app.py")  # the script Streamlit reruns (AppTest runs it alone)
SERVER_PATH = Path(__file__).with_name("server.py")  # what `serve` runs: the app plus its "shown" route
DB_ENV = "EVALSUITE_STUDY_DB"  # the app's database when its command line names none (AppTest)


def database() -> str:
    """The rater app's database: `-- --db URL` after `streamlit run`, else $EVALSUITE_STUDY_DB."""
    argv = sys.argv[1:]
    if "--db" in argv and argv.index("--db") + 1 < len(argv):
        return argv[argv.index("--db") + 1]
    db = os.environ.get(DB_ENV)
    if not db:
        raise RuntimeError(f"no study database: run `evalsuite study serve --db FILE` or set {DB_ENV}")
    return db


@functools.cache
def get_store(db: str) -> Store:
    """One Store (engine and pool) per database for the whole server process (app pages and routes)."""
    return Store(db, create=False)


@dataclass(frozen=True)
class CreatedStudy:
    """A stored study: its id, admin token, config and the rater count that balances it."""

    study_id: int
    admin_token: str
    config: StudyConfig
    balanced_raters: int
    need: Need  # device pixels the largest trial needs side by side (images shown 1:1)
    public_slug: str | None = None  # the crowd URL's ?study= value (crowd studies only)
    available: int = 0  # usable images in the run (the study's images are these or a seeded subset)


def create_study(
    run_dir: str | Path,
    db: str,
    task: int,
    methods: tuple[str, ...],
    n_images: int | str | None = None,
    per_rater: int | str | None = None,
    name: str | None = None,
    exposure_s: float = 3.0,
    n_catch: int = 4,
    n_practice: int = 3,
    seed: int = 0,
    quality: dict | None = None,
    design: str = "real",
    per_pair: int | None = None,
    n_attention: int = 0,
    crowd: CrowdConfig | None = None,
) -> CreatedStudy:
    """Design a study on a run folder, re-encode its stimuli and store both in the database.

    `n_images` and `per_rater` default to the paper's protocol (`design.study_size`: 100 images as a seeded
    subset of a larger run, 50 per rater and method); "all" takes every image. Only the stimuli of the
    study's images are stored.
    """
    run = Path(run_dir)
    available = run_images(run, list(methods))
    n_study, n_per_rater = study_size(len(available), n_images, per_rater)
    image_ids = select_images(available, n_study, seed)
    if isinstance(n_images, int) and n_images > len(available):
        print(
            f"note: the run has {len(available)} usable images; the study uses all of them, not {n_images}",
            file=sys.stderr,
        )
    config = StudyConfig(
        name=name or f"{run.resolve().name}-task{task}",
        run_dir=str(run.resolve()),
        task=task,
        methods=tuple(methods),
        image_ids=image_ids,
        per_rater=n_per_rater,
        exposure_s=exposure_s,
        n_catch=min(n_catch, len(image_ids)),
        n_practice=min(n_practice, len(image_ids)),
        seed=seed,
        quality=QualityPolicy.from_dict(quality or {}).to_dict(),  # the exclusion rules, fixed before any judgment
        design=design,
        per_pair=min(per_pair, len(image_ids)) if per_pair is not None else None,
        n_attention=min(n_attention, len(image_ids)),
        crowd=crowd or CrowdConfig(),
    )
    slug = secrets.token_urlsafe(9) if config.crowd.enabled else None
    stimuli = build_stimuli(run, image_ids, config.methods, config.show_lr, config.n_attention > 0, seed)
    with Store(db) as store:
        study_id, token = store.add_study(config.name, task, config.to_dict(), stimuli, slug)
        need = study_need(store.stimulus_sizes(study_id))
    return CreatedStudy(study_id, token, config, balanced_raters(config), need, slug, len(available))


def _only_study(store: Store, study_id: int | None) -> int:
    studies = store.studies()
    if not studies:
        raise ValueError(f"{store.url} holds no study; run `evalsuite study create` first")
    if study_id is None:
        if len(studies) > 1:
            listing = ", ".join(f"{s['id']} ({s['name']})" for s in studies)
            raise ValueError(f"{store.url} holds several studies ({listing}); pass --study ID")
        return studies[0]["id"]
    if study_id not in {s["id"] for s in studies}:
        raise ValueError(f"no study {study_id} in {store.url}")
    return study_id


def invite_raters(
    db: str, n: int, study_id: int | None = None, labels: tuple[str, ...] | None = None
) -> list[tuple[str, str]]:
    """Add n raters with their seeded trial plans; returns (label, invite token) per rater."""
    if n < 1:
        raise ValueError(f"-n must be at least 1, got {n}")
    if labels is not None and any(len(x) > 40 for x in labels):
        raise ValueError("rater labels must be at most 40 characters")
    with Store(db, create=False) as store:
        sid = _only_study(store, study_id)
        config = StudyConfig.from_dict(store.study(sid))
        return store.add_raters(sid, n, functools.partial(rater_plan, config), labels)


def revoke_rater(
    db: str, study_id: int | None = None, label: str | None = None, participant: str | None = None
) -> list[str]:
    """Revoke a rater by label or participant id (refused from then on; an unfinished slot is handed out again)."""
    with Store(db, create=False) as store:
        return store.revoke(_only_study(store, study_id), label, participant)


def crowd_link(base_url: str, slug: str, platform: str = "prolific") -> str:
    """The shared study URL to paste into a crowd platform (Prolific fills in its {{%...%}} placeholders)."""
    base = f"{base_url.rstrip('/')}/?study={slug}"
    if platform == "prolific":
        return base + "&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    return base  # MTurk's external question appends &assignmentId=...&hitId=...&workerId=... itself


def study_id(db: str, study: int | None = None) -> int:
    """The id of the database's only study, or of `study` after checking it exists."""
    with Store(db, create=False) as store:
        return _only_study(store, study)


def admin_token(db: str, study_id: int | None = None) -> str:
    """A fresh admin token for a study (the old one stops working)."""
    with Store(db, create=False) as store:
        return store.rotate_admin_token(_only_study(store, study_id))


def serve_command(db: str, port: int = 8501, address: str = "127.0.0.1") -> list[str]:
    """The `streamlit run` command line that serves the rater app headless on address:port."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SERVER_PATH),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        # No full garbage collection after every script run: it cost more CPU than the rest of a trial page.
        "--runner.postScriptGC",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--client.showErrorDetails",
        "false",
        "--theme.base",
        "light",
        "--",
        "--db",
        db,
    ]


def serve(db: str, port: int = 8501, address: str = "127.0.0.1") -> int:
    """Run the rater app until interrupted; returns Streamlit's exit code."""
    Store(db, create=False).dispose()  # fail early, with the fix, on a database without a study
    return subprocess.call(serve_command(db, port, address))  # the command passes the database: `-- --db`
