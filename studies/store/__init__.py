"""The study database: SQLAlchemy 2.0 models and a small repository (SQLite by default, any SQLAlchemy URL).

Only seen-and-answered trials count. The app shows a trial as a *display*: `issue_display` gives the
pending trial a fresh random display id (the only one of that trial that can still be answered),
`display_shown` records the moment the page reports both images drawn, and `answer` accepts a choice only
for the current display of an unanswered trial, only after it was shown and its exposure ran out. Anything
else (a late click of a replaced display, a second tab, a click before the exposure ended, another choice
for an answered trial) is written to `refusals`, never to `judgments`; the same answer resent for the same
display is the judgment already stored (`AnswerResult.repeat`). Judgments are written exactly once:
`judgments.assignment_id` is unique and the insert is `INSERT ... ON CONFLICT DO NOTHING` on SQLite and
PostgreSQL.

Raters hold *slots* (`raters.index`: the design's rater index). Invited raters take new slots; crowd raters
(`join`) arrive by a shared study URL with a participant id and take the lowest free slot: one whose raters
were all revoked or expired, or one whose active crowd rater has not finished and was inactive longer than
the study's slot timeout (that rater is then marked `expired`), else a new one. At most one rater per
participant (`uq_rater_participant`) and one active rater per slot (a partial unique index) exist, so
concurrent arrivals, reloads and second tabs never make a second rater or share a slot. Revoked and expired
raters are refused (`answer`, `issue_display`); their judgments are kept.

The store is split by concern, one module each: `schema` (the tables, row types and shared helpers),
`catalog` (studies and their stimuli), `raters` (raters and their slots), `answers` (displays and answers),
`frames` (export as data frames). `Store` joins the parts; every name is importable from `studies.store`.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from studies.store.answers import AnswersMixin
from studies.store.catalog import StudiesMixin
from studies.store.frames import FramesMixin
from studies.store.raters import RatersMixin
from studies.store.schema import (  # noqa: F401  (the store's public names, importable from studies.store)
    ACTIVE,
    EXPIRED,
    EXPOSURE_GRACE_S,
    MAX_SCREEN_PX,
    REVOKED,
    SIDES,
    AnswerResult,
    Assignment,
    Base,
    Display,
    Judgment,
    Rater,
    RaterInfo,
    Refusal,
    Screen,
    Stimulus,
    StimulusImage,
    Study,
    SubmitResult,
    Trial,
    db_url,
    hash_token,
    make_engine,
    new_token,
)


class Store(StudiesMixin, RatersMixin, AnswersMixin, FramesMixin):
    """Repository over the study tables; every method opens its own short transaction (thread-safe)."""

    def __init__(self, db: str | Path, create: bool = True) -> None:
        self.url = db_url(db)
        url = make_url(self.url)
        if not create and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            if not Path(url.database).exists():
                raise FileNotFoundError(
                    f"no study database at {url.database}; make one with "
                    "`evalsuite study create --run RUN_DIR --db ...`"
                )
        self.engine = make_engine(db)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()
        if create:
            Base.metadata.create_all(self.engine)
        elif not self._has_tables():
            self.engine.dispose()
            raise FileNotFoundError(
                f"{self.url} holds no study; make one with `evalsuite study create --run RUN_DIR --db ...`"
            )
        self._check_schema()

    def _check_schema(self) -> None:
        """Refuse a database made by an older evalsuite (tables without the crowd/duel columns), with the fix."""
        from sqlalchemy import inspect

        insp = inspect(self.engine)
        for table in Base.metadata.sorted_tables:
            if not insp.has_table(table.name):
                continue
            have = {c["name"] for c in insp.get_columns(table.name)}
            missing = sorted({c.name for c in table.columns} - have)
            if missing:
                self.engine.dispose()
                raise RuntimeError(
                    f"{self.url} was made by an older evalsuite (table {table.name} lacks {', '.join(missing)}); "
                    "export it with that version if needed and re-create the study with `evalsuite study create`"
                )

    def _writing(self) -> contextlib.AbstractContextManager:
        """A lock that queues this process's SQLite writers (a no-op context on other databases)."""
        # SQLite has one writer at a time; waiting on a lock beats its busy handler, which sleeps in steps
        # of up to 100 ms. Writers in other processes still wait through busy_timeout.
        return self._write_lock if self._sqlite else contextlib.nullcontext()

    def _has_tables(self) -> bool:
        with self.engine.connect() as conn:
            return self.engine.dialect.has_table(conn, "studies")

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

