"""The study store: raters and their slots."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from studies.store.schema import (
    _RATER_COLUMNS,
    ACTIVE,
    EXPIRED,
    REVOKED,
    Rater,
    RaterInfo,
    _abandoned,
    _assignment,
    _now,
    _one_slot_each,
    _participant_label,
    _rater_info,
    _SlotLost,
    hash_token,
    new_token,
)


class RatersMixin:
    """The store's raters and their slots (a part of `Store`; `self` is the Store)."""

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

