"""The study store: displays and answers."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from studies.store.schema import (
    ACTIVE,
    EXPOSURE_GRACE_S,
    SIDES,
    AnswerResult,
    Assignment,
    Display,
    Judgment,
    Rater,
    Refusal,
    Screen,
    SubmitResult,
    Trial,
    _aware,
    _float_or_none,
    _now,
)


class AnswersMixin:
    """The store's displays and answers (a part of `Store`; `self` is the Store)."""

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
        values = _judgment(assignment_id, rater_id, choice, d.real_side, shown, now) | {
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
            values = _judgment(assignment_id, rater_id, choice, a.real_side, _aware(a.shown_at), answered_at)
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


def _judgment(
    assignment_id: int, rater_id: int, choice: str, real_side: str, shown: datetime | None, answered: datetime
) -> dict[str, Any]:
    """The columns of a judgment row every path writes: who chose which side, and when (latency from the show)."""
    return {
        "assignment_id": assignment_id,
        "rater_id": rater_id,
        "choice": choice,
        "chose_real": choice == real_side,
        "shown_at": shown,
        "answered_at": answered,
        "latency_s": (answered - shown).total_seconds() if shown else None,
    }
