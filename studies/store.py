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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from studies.design import with_pairs

SIDES = ("left", "right")
ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"  # raters.status
# Answers may arrive this much before the exposure has run out on the server clock: the page hides the pair
# by its own clock after it reported the draw, so network jitter can make the server see a shorter time.
EXPOSURE_GRACE_S = 0.1
MAX_SCREEN_PX = 100_000  # a window report above this (CSS px) is not a screen: not stored


class Base(DeclarativeBase):
    """Declarative base of the study tables."""


class Study(Base):
    """One 2AFC study: a task, its methods and the design settings (as JSON)."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[int] = mapped_column(Integer)
    config_json: Mapped[str] = mapped_column(Text)
    admin_token_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The shared crowd URL's ?study= value (random, public); None when the study takes invited raters only.
    public_slug: Mapped[str | None] = mapped_column(String(40), unique=True, nullable=True)


class Stimulus(Base):
    """One re-encoded image under an opaque random id (never shown to raters; pages inline the bytes)."""

    __tablename__ = "stimuli"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    image_id: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))  # hr | lr | output | catch | attention
    method: Mapped[str | None] = mapped_column(String(300), nullable=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("study_id", "image_id", "role", "method", name="uq_stimulus"),)


class Rater(Base):
    """A rater: invited by a token (only the token's SHA-256 is stored) or arrived by the crowd URL."""

    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)  # the slot: rater index of the design (design.rater_plan)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The rater's browser window (CSS pixels) and devicePixelRatio, as last reported by the page.
    window_w: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_h: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dpr: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE, server_default=ACTIVE)  # active|expired|revoked
    participant_id: Mapped[str | None] = mapped_column(String(200), nullable=True)  # crowd raters only
    platform_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # e.g. Prolific STUDY_ID, SESSION_ID
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        UniqueConstraint("study_id", "participant_id", name="uq_rater_participant"),
        # One active rater per slot; expired and revoked raters keep their slot number (and judgments).
        Index(
            "uq_rater_slot_active",
            "study_id",
            "index",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )


class Assignment(Base):
    """One trial of one rater: which pair, which side holds the real image, and its place in the order."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    block: Mapped[str] = mapped_column(String(16))  # practice | main
    kind: Mapped[str] = mapped_column(String(16))  # real | duel | catch | attention
    method: Mapped[str | None] = mapped_column(String(300), nullable=True)
    method_b: Mapped[str | None] = mapped_column(String(300), nullable=True)  # a duel's second method
    image_id: Mapped[str] = mapped_column(String(300))
    real_side: Mapped[str] = mapped_column(String(8))  # the real image's side; a duel: the side of `method`
    left_id: Mapped[str] = mapped_column(ForeignKey("stimuli.id"))
    right_id: Mapped[str] = mapped_column(ForeignKey("stimuli.id"))
    middle_id: Mapped[str | None] = mapped_column(ForeignKey("stimuli.id"), nullable=True)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # first shown
    current_display: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the answerable one
    __table_args__ = (UniqueConstraint("rater_id", "position", name="uq_assignment_position"),)


class Display(Base):
    """One showing of a trial on a page, under a random single-use id; shown_at is set by the page's report."""

    __tablename__ = "displays"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    window_w: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_h: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dpr: Mapped[float | None] = mapped_column(Float, nullable=True)


class Refusal(Base):
    """An answer the server did not count, and why (kept for the study owner; never a judgment)."""

    __tablename__ = "refusals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"), nullable=True)
    display_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    choice: Mapped[str | None] = mapped_column(String(16), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(200))


class Judgment(Base):
    """A rater's answer to one trial; unique per trial (exactly once)."""

    __tablename__ = "judgments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    choice: Mapped[str] = mapped_column(String(8))
    chose_real: Mapped[bool] = mapped_column(Boolean)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # server: shown report -> answer
    display_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    exposed_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # page clock: drawn -> hidden
    client_latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # page clock: drawn -> click


# A trial's plan as read-outs show it (the columns judgments_frame and assignments_frame share).
_PLAN_COLUMNS = (
    Assignment.position,
    Assignment.block,
    Assignment.kind,
    Assignment.method,
    Assignment.method_b,
    Assignment.image_id,
    Assignment.real_side,
)
# What a judgment records, as the read-outs list it after the plan.
_ANSWER_COLUMNS = (
    Judgment.choice,
    Judgment.chose_real,
    Judgment.shown_at,
    Judgment.answered_at,
    Judgment.latency_s,
    Judgment.client_latency_s,
    Judgment.exposed_s,
)


@dataclass(frozen=True)
class StimulusImage:
    """A stimulus to store: the image it shows, its role, the method (outputs only) and PNG bytes."""

    image_id: str
    role: str
    method: str | None
    png: bytes


@dataclass(frozen=True)
class Trial:
    """What the app needs to show one trial (no real-image side is ever sent to the browser)."""

    assignment_id: int
    position: int
    block: str
    kind: str
    left_id: str
    right_id: str
    middle_id: str | None
    answered: bool
    shown_at: datetime | None = None


@dataclass(frozen=True)
class RaterInfo:
    """A rater found by token or participant: internal id, opaque public id, study, slot, label and status."""

    id: int
    public_id: str
    study_id: int
    index: int
    label: str = ""
    status: str = ACTIVE
    consented_at: datetime | None = None
    created: bool = False  # made by this call (`join`)


_RATER_COLUMNS = (Rater.id, Rater.public_id, Rater.study_id, Rater.index, Rater.label, Rater.status,
                  Rater.consented_at)


def _rater_info(r: Any, created: bool = False) -> RaterInfo:
    """A Rater row (ORM object or row with its columns) as a RaterInfo."""
    return RaterInfo(r.id, r.public_id, r.study_id, r.index, r.label, r.status, _aware(r.consented_at), created)


@dataclass(frozen=True)
class AnswerResult:
    """Outcome of an answer: accepted (this call stored the judgment), a repeat (the same answer for the same
    display came again, a resend: the judgment is already stored; not logged), or refused with the reason
    (logged)."""

    accepted: bool
    reason: str = ""
    block: str = ""
    assignment_id: int | None = None
    repeat: bool = False


@dataclass(frozen=True)
class Screen:
    """What the page reports about the rater's screen: window size in CSS pixels and devicePixelRatio."""

    width: int
    height: int
    dpr: float

    @classmethod
    def from_report(cls, ev: dict[str, Any]) -> Screen | None:
        """The screen a page reported ({"w", "h", "dpr"}), or None when it is malformed or out of range."""
        try:
            screen = cls(int(ev["w"]), int(ev["h"]), float(ev["dpr"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        sizes_ok = 0 < screen.width <= MAX_SCREEN_PX and 0 < screen.height <= MAX_SCREEN_PX
        return screen if sizes_ok and 0.1 <= screen.dpr <= 16.0 else None  # NaN fails too


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of a submission: whether this call wrote the judgment, and the stored choice."""

    created: bool
    choice: str


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (only digests are stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random URL-safe token (128 bits)."""
    return secrets.token_urlsafe(16)


def db_url(db: str | Path) -> str:
    """A SQLAlchemy URL for `db`: a URL is kept, a file path becomes an absolute sqlite:/// URL."""
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _float_or_none(x: Any) -> float | None:
    """A finite float from a page's report, else None."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) < 1e9 else None


def _aware(t: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: read them as UTC."""
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=timezone.utc)
    return t


def make_engine(db: str | Path) -> Engine:
    """An engine for a file path or SQLAlchemy URL; SQLite gets WAL mode, a busy timeout and foreign keys."""
    url = make_url(db_url(db))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            parent = Path(url.database).parent
            if not parent.is_dir():
                raise FileNotFoundError(f"folder of the study database {url.database} does not exist; create it first")
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; busy_timeout: writers wait instead of failing.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


class Store:
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

    # ----------------------------------------------------------------- studies and stimuli
    def add_study(
        self,
        name: str,
        task: int,
        config: dict[str, Any],
        stimuli: Iterable[StimulusImage],
        public_slug: str | None = None,
    ) -> tuple[int, str]:
        """Store a study and its stimuli (and the crowd URL's slug, if any); returns (study id, admin token)."""
        admin_token = new_token()
        with self._writing(), self._session.begin() as s:
            study = Study(
                name=name,
                task=task,
                config_json=json.dumps(config, sort_keys=True),
                admin_token_hash=hash_token(admin_token),
                created_at=_now(),
                public_slug=public_slug,
            )
            s.add(study)
            s.flush()
            for st in stimuli:
                s.add(
                    Stimulus(
                        id=secrets.token_hex(16),
                        study_id=study.id,
                        image_id=st.image_id,
                        role=st.role,
                        method=st.method,
                        png=st.png,
                        sha256=hashlib.sha256(st.png).hexdigest(),
                    )
                )
            return study.id, admin_token

    def studies(self) -> list[dict[str, Any]]:
        """Every study: id, name, task and its config dict."""
        with self._session() as s:
            return [_study_info(r) for r in s.scalars(select(Study).order_by(Study.id))]

    def study(self, study_id: int) -> dict[str, Any]:
        """One study's id, name, task and config."""
        with self._session() as s:
            r = s.get(Study, study_id)
            if r is None:
                raise KeyError(f"no study {study_id} in {self.url}")
            return _study_info(r)

    def study_by_slug(self, slug: str) -> int | None:
        """The study id whose crowd URL carries this ?study= value, or None."""
        if not slug or len(slug) > 40:
            return None
        with self._session() as s:
            return s.scalar(select(Study.id).where(Study.public_slug == slug))

    def public_slug(self, study_id: int) -> str | None:
        """A study's crowd URL slug (None: no crowd URL)."""
        with self._session() as s:
            return s.scalar(select(Study.public_slug).where(Study.id == study_id))

    def rotate_admin_token(self, study_id: int) -> str:
        """Replace a study's admin token; returns the new one."""
        token = new_token()
        with self._writing(), self._session.begin() as s:
            s.execute(update(Study).where(Study.id == study_id).values(admin_token_hash=hash_token(token)))
        return token

    def admin_study(self, token: str) -> int | None:
        """The study id whose admin token this is, or None."""
        with self._session() as s:
            return s.scalar(select(Study.id).where(Study.admin_token_hash == hash_token(token)))

    def stimulus_ids(self, study_id: int) -> dict[tuple[str, str, str | None], str]:
        """(image_id, role, method) -> stimulus id for a study."""
        with self._session() as s:
            rows = s.execute(
                select(Stimulus.image_id, Stimulus.role, Stimulus.method, Stimulus.id).where(
                    Stimulus.study_id == study_id
                )
            ).all()
            return {(r[0], r[1], r[2]): r[3] for r in rows}

    def stimulus_sizes(self, study_id: int) -> list[tuple[int, int, int, int]]:
        """(pair w, pair h, lr w, lr h) per study image (lr 0 x 0 when the study shows no LR input)."""
        from studies.payload import png_size

        sizes: dict[str, list[int]] = {}
        with self._session() as s:
            rows = s.execute(
                select(Stimulus.image_id, Stimulus.role, func.substr(Stimulus.png, 1, 24)).where(
                    Stimulus.study_id == study_id, Stimulus.role.in_(("hr", "lr"))
                )
            ).all()
        for image_id, role, head in rows:
            w, h = png_size(bytes(head))
            entry = sizes.setdefault(image_id, [0, 0, 0, 0])
            if role == "hr":
                entry[0], entry[1] = w, h
            else:
                entry[2], entry[3] = w, h
        return [tuple(v) for v in sizes.values()]  # type: ignore[misc]

    def stimulus_png(self, stimulus_id: str) -> bytes:
        """The PNG bytes of a stimulus."""
        with self._session() as s:
            png = s.scalar(select(Stimulus.png).where(Stimulus.id == stimulus_id))
        if png is None:
            raise KeyError(f"no stimulus {stimulus_id}")
        return png

    # ----------------------------------------------------------------- raters and trials
    def add_raters(
        self,
        study_id: int,
        n: int,
        plan: Callable[[int], Sequence[Any]],
        labels: Sequence[str] | None = None,
    ) -> list[tuple[str, str]]:
        """Add n raters; `plan(index)` gives the trials (`design.TrialPlan`s) of the rater with that index.

        Indices continue after the study's last rater and are taken in the write transaction, so each plan is
        built for the index its rater is stored under. Labels default to R01, R02, ... by index.
        Returns (label, token) per rater.
        """
        if labels is not None and len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} raters; pass one label per rater")
        stim = self.stimulus_ids(study_id)
        out = []
        with self._writing(), _one_slot_each(), self._session.begin() as s:
            start = s.scalar(select(func.coalesce(func.max(Rater.index) + 1, 0)).where(Rater.study_id == study_id))
            taken = set(s.scalars(select(Rater.label).where(Rater.study_id == study_id)))
            for k in range(n):
                label = labels[k] if labels is not None else f"R{start + k + 1:02d}"
                if label in taken:
                    raise ValueError(f"rater label {label!r} is already used in this study; pick another")
                taken.add(label)
                token, public_id = new_token(), secrets.token_hex(8)
                rater = Rater(
                    study_id=study_id,
                    index=start + k,
                    public_id=public_id,
                    label=label,
                    token_hash=hash_token(token),
                    created_at=_now(),
                )
                s.add(rater)
                s.flush()
                for t in plan(start + k):
                    s.add(_assignment(rater.id, t, stim))
                out.append((label, token))
        return out

    def rater_by_token(self, token: str) -> RaterInfo | None:
        """The rater an invite token belongs to, or None."""
        if not token:
            return None
        return self._one_rater(Rater.token_hash == hash_token(token))

    def rater(self, rater_id: int) -> RaterInfo:
        """A rater's current state (status and consent change while the rater works)."""
        found = self._one_rater(Rater.id == rater_id)
        if found is None:
            raise KeyError(f"no rater {rater_id}")
        return found

    def rater_by_participant(self, study_id: int, participant_id: str) -> RaterInfo | None:
        """The crowd rater of a participant id in a study, or None."""
        return self._one_rater(Rater.study_id == study_id, Rater.participant_id == participant_id)

    def _one_rater(self, *where: Any) -> RaterInfo | None:
        """The rater matching `where` (one Core select: this runs on every page of the rater app), or None."""
        with self.engine.connect() as conn:
            r = conn.execute(select(*_RATER_COLUMNS).where(*where)).first()
        return None if r is None else _rater_info(r)

    def join(
        self,
        study_id: int,
        participant_id: str,
        plan: Callable[[int], Sequence[Any]],
        slot_timeout_s: float,
        platform: dict[str, str] | None = None,
    ) -> RaterInfo:
        """The participant's rater, created with the lowest free slot on first arrival (race-safe, see module).

        `plan(slot)` gives the slot's trials. A returning participant gets their rater back (any status; an
        active one is marked seen). Concurrent calls for one participant create one rater.
        """
        if not participant_id or len(participant_id) > 200:
            raise ValueError("a participant id must have 1 to 200 characters")
        stim = None
        for _attempt in range(50):
            # A returning participant (or the winner of a race for this participant) keeps their rater.
            found = self.rater_by_participant(study_id, participant_id)
            if found is not None:
                if found.status == ACTIVE:
                    with self._writing(), self.engine.begin() as conn:
                        conn.execute(update(Rater).where(Rater.id == found.id).values(last_seen=_now()))
                return found
            stim = stim or self.stimulus_ids(study_id)
            now = _now()
            cutoff = now - timedelta(seconds=slot_timeout_s)
            slot, holder = self._free_slot(study_id, cutoff)
            try:
                with self._writing(), self._session.begin() as s:
                    # Take the slot from an abandoned rater only if it is still abandoned (compare-and-swap).
                    if holder is not None:
                        taken = s.execute(
                            update(Rater)
                            .where(Rater.id == holder, *_abandoned(cutoff))
                            .values(status=EXPIRED)
                        )
                        if taken.rowcount != 1:
                            raise _SlotLost
                    rater = Rater(
                        study_id=study_id,
                        index=slot,
                        public_id=secrets.token_hex(8),
                        label=_participant_label(participant_id),
                        token_hash=hash_token(new_token()),  # crowd raters have no token; this one is never shown
                        created_at=now,
                        last_seen=now,
                        status=ACTIVE,
                        participant_id=participant_id,
                        platform_json=json.dumps(platform or {}, sort_keys=True),
                    )
                    s.add(rater)
                    s.flush()  # IntegrityError: this participant or this slot was taken meanwhile
                    for t in plan(slot):
                        s.add(_assignment(rater.id, t, stim))
                    s.flush()
                    info = _rater_info(rater, created=True)
                return info
            except (IntegrityError, _SlotLost):
                continue  # someone else arrived first: look again
        raise RuntimeError(f"could not give participant {participant_id!r} a slot (too many concurrent arrivals)")

    def _free_slot(self, study_id: int, cutoff: datetime) -> tuple[int, int | None]:
        """(slot, abandoned holder or None): the lowest free slot, else a new one after all slots in use."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Rater.index, Rater.status).where(Rater.study_id == study_id)).all()
            stale = conn.execute(
                select(Rater.index, Rater.id).where(Rater.study_id == study_id, *_abandoned(cutoff))
            ).all()
        active = {i for i, st in rows if st == ACTIVE}
        # Free: a slot whose raters are all revoked or expired, or whose active rater abandoned it.
        free = {i: None for i, _st in rows if i not in active} | {i: rid for i, rid in stale}
        if free:
            slot = min(free)
            return slot, free[slot]
        return (max(i for i, _ in rows) + 1 if rows else 0), None

    def record_consent(self, rater_id: int) -> None:
        """Store the time the rater accepted the consent text (the first acceptance counts)."""
        now = _now()
        with self._writing(), self.engine.begin() as conn:
            conn.execute(
                update(Rater)
                .where(Rater.id == rater_id, Rater.consented_at.is_(None))
                .values(consented_at=now, last_seen=now)
            )

    def revoke(self, study_id: int, label: str | None = None, participant_id: str | None = None) -> list[str]:
        """Revoke a rater (by label or participant id): refused from now on, slot free; returns labels revoked."""
        if (label is None) == (participant_id is None):
            raise ValueError("pass exactly one of --rater LABEL or --participant PID")
        cond = Rater.label == label if label is not None else Rater.participant_id == participant_id
        with self._writing(), self._session.begin() as s:
            labels = list(s.scalars(select(Rater.label).where(Rater.study_id == study_id, cond)))
            if not labels:
                what = f"rater {label!r}" if label is not None else f"participant {participant_id!r}"
                raise ValueError(f"no {what} in study {study_id}; the admin page and `study export` list the raters")
            s.execute(update(Rater).where(Rater.study_id == study_id, cond).values(status=REVOKED))
        return labels

    def trials(self, rater_id: int) -> list[Trial]:
        """A rater's trials in presentation order, each flagged answered or not."""
        # Plain columns (no ORM objects): this runs on every page of every rater.
        a = Assignment
        query = (
            select(a.id, a.position, a.block, a.kind, a.left_id, a.right_id, a.middle_id, Judgment.id, a.shown_at)
            .outerjoin(Judgment, Judgment.assignment_id == a.id)
            .where(a.rater_id == rater_id)
            .order_by(a.position)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Trial(*r[:7], r[7] is not None, _aware(r[8])) for r in rows]

    # ----------------------------------------------------------------- the display protocol
    def issue_display(self, rater_id: int, assignment_id: int) -> str:
        """A fresh display of an unanswered trial: a random id that replaces every earlier display of it."""
        display_id = secrets.token_hex(16)
        now = _now()
        # Core statements, not ORM objects: this runs once per trial of every rater.
        with self._writing(), self.engine.begin() as conn:
            row = conn.execute(
                select(Assignment.rater_id, Judgment.id, Rater.status)
                .join(Rater, Assignment.rater_id == Rater.id)
                .outerjoin(Judgment, Judgment.assignment_id == Assignment.id)
                .where(Assignment.id == assignment_id)
            ).first()
            if row is None or row[0] != rater_id:
                raise PermissionError(f"trial {assignment_id} does not belong to this rater")
            if row[2] != ACTIVE:
                raise PermissionError(f"this rater is {row[2]}")
            if row[1] is not None:
                raise ValueError(f"trial {assignment_id} is already answered")
            conn.execute(
                insert(Display).values(id=display_id, assignment_id=assignment_id, rater_id=rater_id, issued_at=now)
            )
            conn.execute(update(Assignment).where(Assignment.id == assignment_id).values(current_display=display_id))
            conn.execute(update(Rater).where(Rater.id == rater_id).values(last_seen=now))
        return display_id

    def _display(self, conn: Any, display_id: Any) -> Any:
        """(rater, shown_at, assignment, current display, first shown, real side, block, rater status) of a
        display, or None."""
        if not isinstance(display_id, str):
            return None
        return conn.execute(
            select(
                Display.rater_id,
                Display.shown_at,
                Display.assignment_id,
                Assignment.current_display,
                Assignment.shown_at,
                Assignment.real_side,
                Assignment.block,
                Rater.status,
            )
            .join(Assignment, Display.assignment_id == Assignment.id)
            .join(Rater, Display.rater_id == Rater.id)
            .where(Display.id == display_id)
        ).first()

    def display_shown(self, rater_id: int | None, display_id: str, screen: Screen | None = None) -> bool:
        """Record that the page drew the pair of a display (now, server time); False for a replaced one.
        rater_id None: the display's own rater (its random id is a secret only that rater's page holds)."""
        now = _now()
        with self._writing(), self.engine.begin() as conn:
            d = self._display(conn, display_id)
            if d is None or d[1] is not None or d.current_display != display_id:
                return False
            if rater_id is None:
                rater_id = d.rater_id
            elif d.rater_id != rater_id:
                return False
            values: dict[str, Any] = {"shown_at": now}
            if screen is not None:
                values |= {"window_w": screen.width, "window_h": screen.height, "dpr": screen.dpr}
            conn.execute(update(Display).where(Display.id == display_id).values(**values))
            if d[4] is None:
                conn.execute(update(Assignment).where(Assignment.id == d.assignment_id).values(shown_at=now))
            if screen is not None:
                rater = {"window_w": screen.width, "window_h": screen.height, "dpr": screen.dpr, "last_seen": now}
                conn.execute(update(Rater).where(Rater.id == rater_id).values(**rater))
        return True

    def record_screen(self, rater_id: int, screen: Screen) -> None:
        """Keep the rater's latest window size and devicePixelRatio (reported before the study starts)."""
        with self._writing(), self._session.begin() as s:
            s.execute(
                update(Rater)
                .where(Rater.id == rater_id)
                .values(window_w=screen.width, window_h=screen.height, dpr=screen.dpr, last_seen=_now())
            )

    def answer(
        self,
        rater_id: int,
        display_id: str,
        choice: str,
        min_exposure_s: float,
        exposed_s: float | None = None,
        client_latency_s: float | None = None,
    ) -> AnswerResult:
        """Count a choice for the display on screen, once, after its exposure; refuse (and log) anything else."""
        now = _now()
        with self.engine.connect() as conn:
            d = self._display(conn, display_id)
        if d is not None and d.rater_id != rater_id:
            d = None
        shown = _aware(d[1]) if d is not None else None
        reason = ""
        if choice not in SIDES:
            reason = "not a side"
        elif d is None:
            reason = "unknown display"
        elif d.status != ACTIVE:
            reason = f"rater {d.status}"
        elif d.current_display != display_id:
            reason = "replaced display (reload, reconnect or another tab)"
        elif shown is None:
            reason = "display never reported shown"
        elif (now - shown).total_seconds() < min_exposure_s - EXPOSURE_GRACE_S:
            reason = "answered before the exposure ended"
        assignment_id = d.assignment_id if d is not None else None
        if reason:
            self._refuse(rater_id, assignment_id, display_id, choice, reason, now)
            return AnswerResult(False, reason, d.block if d is not None else "", assignment_id)
        values = {
            "assignment_id": assignment_id,
            "rater_id": rater_id,
            "choice": choice,
            "chose_real": choice == d.real_side,
            "shown_at": shown,
            "answered_at": now,
            "latency_s": (now - shown).total_seconds(),
            "display_id": display_id,
            "exposed_s": _float_or_none(exposed_s),
            "client_latency_s": _float_or_none(client_latency_s),
        }
        if not self._insert_once(values):
            # The page resends an answer until its next display arrives (an event can be lost when reruns
            # overlap): the same choice for the same display is the judgment already counted, not a new one.
            with self.engine.connect() as conn:
                first = conn.execute(
                    select(Judgment.display_id, Judgment.choice).where(Judgment.assignment_id == assignment_id)
                ).first()
            if first is not None and tuple(first) == (display_id, choice):
                return AnswerResult(False, "", d.block, assignment_id, repeat=True)
            self._refuse(rater_id, assignment_id, display_id, choice, "already answered", now)
            return AnswerResult(False, "already answered", d.block, assignment_id)
        return AnswerResult(True, "", d.block, assignment_id)

    def _refuse(
        self, rater_id: int, assignment_id: int | None, display_id: Any, choice: Any, reason: str, at: datetime
    ) -> None:
        """Log an answer that was not counted."""
        with self._writing(), self._session.begin() as s:
            s.add(
                Refusal(
                    rater_id=rater_id,
                    assignment_id=assignment_id,
                    display_id=str(display_id)[:64] if display_id is not None else None,
                    choice=str(choice)[:16] if choice is not None else None,
                    at=at,
                    reason=reason,
                )
            )

    def practice_feedback(self, rater_id: int, assignment_id: int) -> str:
        """Feedback text for an answered practice trial of this rater."""
        with self._session() as s:
            row = s.execute(
                select(Judgment.chose_real, Assignment.real_side, Assignment.block)
                .join(Assignment, Judgment.assignment_id == Assignment.id)
                .where(Judgment.assignment_id == assignment_id, Judgment.rater_id == rater_id)
            ).first()
        if row is None or row[2] != "practice":
            return ""
        verdict = "Correct" if row[0] else "Not quite"
        return f"{verdict}: the undamaged image was on the {row[1]}."

    def submit(
        self, rater_id: int, assignment_id: int, choice: str, answered_at: datetime | None = None
    ) -> SubmitResult:
        """Record a choice once, without the display protocol (scripts, simulations, imports; the app uses
        `answer`): repeating an answered trial changes nothing and returns the stored choice."""
        if choice not in SIDES:
            raise ValueError(f"choice must be one of {SIDES}, got {choice!r}")
        answered_at = answered_at or _now()
        with self._session() as s:
            a = s.get(Assignment, assignment_id)
            # A token's rater may answer only its own trials.
            if a is None or a.rater_id != rater_id:
                raise PermissionError(f"trial {assignment_id} does not belong to this rater")
            shown = _aware(a.shown_at)
            values = {
                "assignment_id": assignment_id,
                "rater_id": rater_id,
                "choice": choice,
                "chose_real": choice == a.real_side,
                "shown_at": shown,
                "answered_at": answered_at,
                "latency_s": (answered_at - shown).total_seconds() if shown else None,
            }
        created = self._insert_once(values)
        if created:
            return SubmitResult(True, choice)
        with self._session() as s:
            stored = s.scalar(select(Judgment.choice).where(Judgment.assignment_id == assignment_id))
        return SubmitResult(False, stored)

    def _insert_once(self, values: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT (assignment_id) DO NOTHING; True when this call inserted the row."""
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as upsert
            else:
                from sqlalchemy.dialects.postgresql import insert as upsert
            stmt = (
                upsert(Judgment)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["assignment_id"])
                .returning(Judgment.id)
            )
            with self._writing(), self.engine.begin() as conn:
                return conn.execute(stmt).first() is not None
        # Other databases: the unique constraint still holds; a conflict means someone else wrote it first.
        try:
            with self._writing(), self._session.begin() as s:
                s.add(Judgment(**values))
            return True
        except IntegrityError:
            return False

    # ----------------------------------------------------------------- read-outs
    def judgments_frame(self, study_id: int | None = None) -> pd.DataFrame:
        """Every judgment (of one study, or all) joined with its trial, rater and study (one row per judgment)."""
        query = (
            select(
                Study.id.label("study_id"),
                Study.name.label("study"),
                Study.task,
                Rater.public_id.label("rater_id"),
                Rater.label.label("rater_label"),
                Rater.status.label("rater_status"),
                *_PLAN_COLUMNS,
                *_ANSWER_COLUMNS,
            )
            .join(Assignment, Judgment.assignment_id == Assignment.id)
            .join(Rater, Assignment.rater_id == Rater.id)
            .join(Study, Rater.study_id == Study.id)
            .order_by(Judgment.id)
        )
        if study_id is not None:
            query = query.where(Study.id == study_id)
        df = self._frame(query)
        df["chose_real"] = df["chose_real"].astype(bool)
        return with_pairs(df)

    def assignments_frame(self, study_id: int | None = None) -> pd.DataFrame:
        """Every trial with its rater and whether it is answered (for progress and design checks)."""
        query = (
            select(
                Rater.study_id,
                Rater.public_id.label("rater_id"),
                Rater.index.label("rater_index"),
                *_PLAN_COLUMNS,
                Judgment.choice,
            )
            .join(Rater, Assignment.rater_id == Rater.id)
            .outerjoin(Judgment, Judgment.assignment_id == Assignment.id)
            .order_by(Rater.index, Assignment.position)
        )
        if study_id is not None:
            query = query.where(Rater.study_id == study_id)
        df = self._frame(query)
        df["answered"] = df["choice"].notna()
        return df

    def trials_frame(self, study_id: int) -> pd.DataFrame:
        """One row per planned trial of a study: plan, answer (if any), timings, displays and refusals."""
        displays = (
            select(Display.assignment_id, func.count(Display.id).label("n_displays"))
            .group_by(Display.assignment_id)
            .subquery()
        )
        refused = (
            select(Refusal.assignment_id, func.count(Refusal.id).label("n_refused"))
            .group_by(Refusal.assignment_id)
            .subquery()
        )
        query = (
            select(
                Rater.study_id,
                Rater.label.label("rater_label"),
                Rater.public_id.label("rater_id"),
                Rater.status.label("rater_status"),
                *_PLAN_COLUMNS,
                Assignment.shown_at.label("first_shown_at"),
                *_ANSWER_COLUMNS,
                func.coalesce(displays.c.n_displays, 0).label("n_displays"),
                func.coalesce(refused.c.n_refused, 0).label("n_refused"),
            )
            .join(Rater, Assignment.rater_id == Rater.id)
            .outerjoin(Judgment, Judgment.assignment_id == Assignment.id)
            .outerjoin(displays, displays.c.assignment_id == Assignment.id)
            .outerjoin(refused, refused.c.assignment_id == Assignment.id)
            .where(Rater.study_id == study_id)
            .order_by(Rater.index, Assignment.position)
        )
        df = self._frame(query)
        df.insert(df.columns.get_loc("choice"), "answered", df["choice"].notna())
        return df

    def refusals_frame(self, study_id: int | None = None) -> pd.DataFrame:
        """Every answer the server did not count: rater label, trial position, choice, time and reason."""
        query = (
            select(
                Rater.study_id,
                Rater.label.label("rater_label"),
                Assignment.position,
                Refusal.display_id,
                Refusal.choice,
                Refusal.at,
                Refusal.reason,
            )
            .join(Rater, Refusal.rater_id == Rater.id)
            .outerjoin(Assignment, Refusal.assignment_id == Assignment.id)
            .order_by(Refusal.id)
        )
        if study_id is not None:
            query = query.where(Rater.study_id == study_id)
        return self._frame(query)

    def raters_frame(self, study_id: int | None = None) -> pd.DataFrame:
        """One row per rater: label, public id, slot, status, participant, consent, last seen, window and DPR."""
        query = select(
            Rater.study_id,
            Rater.label,
            Rater.public_id.label("rater_id"),
            Rater.index.label("rater_index"),
            Rater.status,
            Rater.participant_id,
            Rater.consented_at,
            Rater.created_at,
            Rater.last_seen,
            Rater.window_w,
            Rater.window_h,
            Rater.dpr,
        ).order_by(Rater.study_id, Rater.index)
        if study_id is not None:
            query = query.where(Rater.study_id == study_id)
        return self._frame(query)

    def _frame(self, query: Select) -> pd.DataFrame:
        """A query's rows as a DataFrame whose columns are the query's column labels."""
        with self.engine.connect() as conn:
            result = conn.execute(query)
            return pd.DataFrame(result.all(), columns=list(result.keys()))


class _SlotLost(Exception):
    """A concurrent arrival took the slot first (join retries with the next free slot)."""


def _abandoned(cutoff: datetime) -> tuple[Any, ...]:
    """Conditions on Rater for a crowd slot that may be reassigned: active, unfinished, inactive since cutoff."""
    unanswered = (
        select(Assignment.id)
        .outerjoin(Judgment, Judgment.assignment_id == Assignment.id)
        .where(Assignment.rater_id == Rater.id, Judgment.id.is_(None))
        .exists()
    )
    return (
        Rater.status == ACTIVE,
        Rater.participant_id.is_not(None),
        func.coalesce(Rater.last_seen, Rater.created_at) < cutoff,
        unanswered,
    )


def _participant_label(participant_id: str) -> str:
    """A crowd rater's label: the participant id, shortened with a hash suffix when over 40 characters."""
    if len(participant_id) <= 40:
        return participant_id
    return participant_id[:31] + "~" + hashlib.sha256(participant_id.encode()).hexdigest()[:8]


@contextlib.contextmanager
def _one_slot_each() -> Iterator[None]:
    """Turn a concurrent invite's duplicate slot (the partial unique index) into a clear error."""
    try:
        yield
    except IntegrityError as exc:
        raise RuntimeError(
            "another invite or crowd arrival took the same rater slots at the same moment; run invite again"
        ) from exc


def _study_info(r: Study) -> dict[str, Any]:
    """A study row as a dict: id, name, task and its config."""
    return {"id": r.id, "name": r.name, "task": r.task, **json.loads(r.config_json)}


def _assignment(rater_id: int, t: Any, stim: dict[tuple[str, str, str | None], str]) -> Assignment:
    """Turn a design.TrialPlan into an Assignment row with the stimulus ids of its pair."""
    real = stim[(t.image_id, "hr", None)]
    if t.kind in ("catch", "attention"):
        fake = stim[(t.image_id, t.kind, None)]
    elif t.kind == "duel":  # `real_side` is the side of t.method; the other side shows t.method_b
        real, fake = stim[(t.image_id, "output", t.method)], stim[(t.image_id, "output", t.method_b)]
    else:
        fake = stim[(t.image_id, "output", t.method)]
    left, right = (real, fake) if t.real_side == "left" else (fake, real)
    middle = stim.get((t.image_id, "lr", None)) if t.show_lr else None
    return Assignment(
        rater_id=rater_id,
        position=t.position,
        block=t.block,
        kind=t.kind,
        method=t.method,
        method_b=getattr(t, "method_b", None),
        image_id=t.image_id,
        real_side=t.real_side,
        left_id=left,
        right_id=right,
        middle_id=middle,
    )
