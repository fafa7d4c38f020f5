"""The study database's tables (SQLAlchemy 2.0 models), row types and the helpers the store's parts share."""
from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
