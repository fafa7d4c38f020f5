"""The study store: export: the tables as data frames."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Select, func, select

from studies.design import with_pairs
from studies.store.schema import _ANSWER_COLUMNS, _PLAN_COLUMNS, Assignment, Display, Judgment, Rater, Refusal, Study


class FramesMixin:
    """The store's export: the tables as data frames (a part of `Store`; `self` is the Store)."""

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


