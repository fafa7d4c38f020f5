"""The study database: SQLAlchemy 2.0 models and a small repository (SQLite by default, any SQLAlchemy URL).

Only seen-and-answered trials count. The app shows a trial as a *display*: `issue_display` gives the
pending trial a fresh random display id (the only one of that trial that can still be answered),
`display_shown` records the moment the page reports both images drawn, and `answer` accepts a choice only
for the current display of an unanswered trial, only after it was shown and its exposure ran out. Anything
else (a late click of a replaced display, a second tab, a click before the exposure ended, a repeat) is
written to `refusals`, never to `judgments`. Judgments are written exactly once: `judgments.assignment_id`
is unique and the insert is `INSERT ... ON CONFLICT DO NOTHING` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
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
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

SIDES = ("left", "right")
# Answers may arrive this much before the exposure has run out on the server clock: the page hides the pair
# by its own clock after it reported the draw, so network jitter can make the server see a shorter time.
EXPOSURE_GRACE_S = 0.1


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


class Stimulus(Base):
    """One re-encoded image under an opaque random id (never shown to raters; pages inline the bytes)."""

    __tablename__ = "stimuli"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    image_id: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))  # hr | lr | output | catch
    method: Mapped[str | None] = mapped_column(String(300), nullable=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("study_id", "image_id", "role", "method", name="uq_stimulus"),)


class Rater(Base):
    """A rater invited by a token (only the token's SHA-256 is stored)."""

    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The rater's browser window (CSS pixels) and devicePixelRatio, as last reported by the page.
    window_w: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_h: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dpr: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (UniqueConstraint("study_id", "index", name="uq_rater_index"),)


class Assignment(Base):
    """One trial of one rater: which pair, which side holds the real image, and its place in the order."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    block: Mapped[str] = mapped_column(String(16))  # practice | main
    kind: Mapped[str] = mapped_column(String(16))  # real | catch
    method: Mapped[str | None] = mapped_column(String(300), nullable=True)
    image_id: Mapped[str] = mapped_column(String(300))
    real_side: Mapped[str] = mapped_column(String(8))
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
    Assignment.image_id,
    Assignment.real_side,
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
    """A rater found by token: internal id, opaque public id, the study it belongs to, index and label."""

    id: int
    public_id: str
    study_id: int
    index: int
    label: str = ""


@dataclass(frozen=True)
class AnswerResult:
    """Outcome of an answer: accepted (stored as a judgment) or refused with the reason (logged)."""

    accepted: bool
    reason: str = ""
    block: str = ""
    assignment_id: int | None = None


@dataclass(frozen=True)
class Screen:
    """What the page reports about the rater's screen: window size in CSS pixels and devicePixelRatio."""

    width: int
    height: int
    dpr: float


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
        self, name: str, task: int, config: dict[str, Any], stimuli: Iterable[StimulusImage]
    ) -> tuple[int, str]:
        """Store a study and its stimuli; returns (study id, admin token)."""
        admin_token = new_token()
        with self._writing(), self._session.begin() as s:
            study = Study(
                name=name,
                task=task,
                config_json=json.dumps(config, sort_keys=True),
                admin_token_hash=hash_token(admin_token),
                created_at=_now(),
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
        with self._writing(), self._session.begin() as s:
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
        with self._session() as s:
            r = s.scalars(select(Rater).where(Rater.token_hash == hash_token(token))).first()
            return None if r is None else RaterInfo(r.id, r.public_id, r.study_id, r.index, r.label)

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
                select(Assignment.rater_id, Judgment.id)
                .outerjoin(Judgment, Judgment.assignment_id == Assignment.id)
                .where(Assignment.id == assignment_id)
            ).first()
            if row is None or row[0] != rater_id:
                raise PermissionError(f"trial {assignment_id} does not belong to this rater")
            if row[1] is not None:
                raise ValueError(f"trial {assignment_id} is already answered")
            conn.execute(
                insert(Display).values(id=display_id, assignment_id=assignment_id, rater_id=rater_id, issued_at=now)
            )
            conn.execute(update(Assignment).where(Assignment.id == assignment_id).values(current_display=display_id))
            conn.execute(update(Rater).where(Rater.id == rater_id).values(last_seen=now))
        return display_id

    def _display(self, conn: Any, display_id: Any) -> Any:
        """(rater, shown_at, assignment, current display, first shown, real side, block) of a display, or None."""
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
            )
            .join(Assignment, Display.assignment_id == Assignment.id)
            .where(Display.id == display_id)
        ).first()

    def display_shown(self, rater_id: int, display_id: str, screen: Screen | None = None) -> bool:
        """Record that the page drew the pair of a display (now, server time); False for a replaced one."""
        now = _now()
        with self._writing(), self.engine.begin() as conn:
            d = self._display(conn, display_id)
            if d is None or d.rater_id != rater_id or d[1] is not None or d.current_display != display_id:
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
                *_PLAN_COLUMNS,
                Judgment.choice,
                Judgment.chose_real,
                Judgment.shown_at,
                Judgment.answered_at,
                Judgment.latency_s,
                Judgment.client_latency_s,
                Judgment.exposed_s,
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
        return df

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
                *_PLAN_COLUMNS,
                Assignment.shown_at.label("first_shown_at"),
                Judgment.choice,
                Judgment.chose_real,
                Judgment.shown_at,
                Judgment.answered_at,
                Judgment.latency_s,
                Judgment.client_latency_s,
                Judgment.exposed_s,
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
        """One row per rater: label, public id, index, last seen, window size and DPR as last reported."""
        query = select(
            Rater.study_id,
            Rater.label,
            Rater.public_id.label("rater_id"),
            Rater.index.label("rater_index"),
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


def _study_info(r: Study) -> dict[str, Any]:
    """A study row as a dict: id, name, task and its config."""
    return {"id": r.id, "name": r.name, "task": r.task, **json.loads(r.config_json)}


def _assignment(rater_id: int, t: Any, stim: dict[tuple[str, str, str | None], str]) -> Assignment:
    """Turn a design.TrialPlan into an Assignment row with the stimulus ids of its pair."""
    real = stim[(t.image_id, "hr", None)]
    if t.kind == "catch":
        fake = stim[(t.image_id, "catch", None)]
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
        image_id=t.image_id,
        real_side=t.real_side,
        left_id=left,
        right_id=right,
        middle_id=middle,
    )
