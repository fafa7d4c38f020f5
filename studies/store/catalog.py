"""The study store: studies and their stimuli."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update

from studies.store.schema import Stimulus, StimulusImage, Study, _now, _study_info, hash_token, new_token


class StudiesMixin:
    """The store's studies and their stimuli (a part of `Store`; `self` is the Store)."""

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
