"""Catalog rows of watches (a template an investigator asked to be alerted about, until it
expires) and the alerts they raised. ``SqlCatalog`` inherits these; writes take the write
core's open transaction.

Example::

    watch = catalog.add_watch(space, template, 0.41, actor="ana", purpose="case 9",
                              case_ref="9", expires_at=later, conn=change.conn)
    catalog.live_watches(space, now)      # [(id, template, min_similarity), ...]
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.governance import iso_utc
from countenance.errors import NotFound
from countenance.ports import Vectors
from countenance.types import EmbeddingSpace


class WatchCatalog:
    """Mixed into SqlCatalog: needs ``_db`` and ``space_id``."""

    _db: sa.Engine

    if TYPE_CHECKING:

        def space_id(self, space: EmbeddingSpace) -> int: ...

        def _writing(
            self, conn: sa.Connection | None
        ) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def add_watch(
        self,
        space: EmbeddingSpace,
        template: Vectors,
        min_similarity: float,
        *,
        actor: str,
        purpose: str,
        case_ref: str | None,
        expires_at: dt.datetime,
        person_id: int | None = None,
        probe_sha256: str | None = None,
        conn: sa.Connection | None = None,
    ) -> int:
        vectors = np.ascontiguousarray(template, dtype="<f4").reshape(-1, space.dim)
        values = {"actor": actor, "purpose": purpose, "case_ref": case_ref}
        s.check_text(s.watches, values)
        space_id = self.space_id(space)
        with self._writing(conn) as c:
            result = c.execute(
                s.watches.insert().values(
                    space_id=space_id,
                    template=vectors.tobytes(),
                    min_similarity=float(min_similarity),
                    person_id=person_id,
                    probe_sha256=probe_sha256,
                    created_at=dt.datetime.now(dt.UTC),
                    expires_at=expires_at,
                    **values,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def live_watches(
        self, space: EmbeddingSpace, at: dt.datetime
    ) -> list[tuple[int, Vectors, float]]:
        """Watches of ``space`` not expired at ``at``: id, template rows, min similarity."""
        w = s.watches
        with self._db.connect() as c:
            rows = c.execute(
                sa.select(w.c.id, w.c.template, w.c.min_similarity)
                .where(w.c.space_id == self.space_id(space), w.c.expires_at > at)
                .order_by(w.c.id)
            ).all()
        return [
            (int(r[0]), np.frombuffer(r[1], dtype="<f4").reshape(-1, space.dim), float(r[2]))
            for r in rows
        ]

    def list_watches(
        self, *, actor: str | None = None, expired: bool = False
    ) -> list[dict[str, Any]]:
        """Watches (one actor's, or all), live ones only unless ``expired``."""
        w, a = s.watches, s.alerts
        alerts = (
            sa.select(sa.func.count())
            .where(a.c.watch_id == w.c.id)
            .scalar_subquery()
            .label("alerts")
        )
        query = sa.select(
            w.c.id,
            w.c.actor,
            w.c.purpose,
            w.c.case_ref,
            w.c.person_id,
            w.c.min_similarity,
            w.c.created_at,
            w.c.expires_at,
            alerts,
        ).order_by(w.c.id)
        if actor is not None:
            query = query.where(w.c.actor == actor)
        if not expired:
            query = query.where(w.c.expires_at > dt.datetime.now(dt.UTC))
        with self._db.connect() as c:
            rows = c.execute(query).mappings().all()
        return [
            {
                "id": int(r["id"]),
                "actor": r["actor"],
                "purpose": r["purpose"],
                "case": r["case_ref"],
                "person": r["person_id"],
                "min_similarity": round(float(r["min_similarity"]), 4),
                "created_at": iso_utc(r["created_at"]),
                "expires_at": iso_utc(r["expires_at"]),
                "alerts": int(r["alerts"]),
            }
            for r in rows
        ]

    def get_watch(self, watch_id: int) -> dict[str, Any]:
        for watch in self.list_watches(expired=True):
            if watch["id"] == watch_id:
                return watch
        raise NotFound(f"no watch {watch_id}")

    def remove_watches(
        self,
        *,
        ids: list[int] | None = None,
        expired_at: dt.datetime | None = None,
        conn: sa.Connection | None = None,
    ) -> list[int]:
        """Delete watches (by id, or every one expired at ``expired_at``) with their
        templates and alerts; the ids deleted."""
        w = s.watches
        query = sa.select(w.c.id)
        if ids is not None:
            query = query.where(w.c.id.in_([int(i) for i in ids]))
        elif expired_at is not None:
            query = query.where(w.c.expires_at <= expired_at)
        else:
            raise ValueError("remove_watches needs ids or expired_at")
        with self._writing(conn) as c:
            gone = [int(i) for i in c.execute(query).scalars()]
            if gone:
                c.execute(s.alerts.delete().where(s.alerts.c.watch_id.in_(gone)))
                c.execute(w.delete().where(w.c.id.in_(gone)))
        return gone

    def watches_of_person(self, person: int) -> list[int]:
        w = s.watches
        with self._db.connect() as c:
            return [
                int(i)
                for i in c.execute(sa.select(w.c.id).where(w.c.person_id == person)).scalars()
            ]

    def any_watch_expired(self, at: dt.datetime) -> bool:
        w = s.watches
        with self._db.connect() as c:
            return (
                c.execute(sa.select(w.c.id).where(w.c.expires_at <= at).limit(1)).first()
                is not None
            )

    def add_alert(
        self,
        watch_id: int,
        face_id: int,
        photo_sha256: str,
        similarity: float,
        *,
        conn: sa.Connection | None = None,
    ) -> int:
        with self._writing(conn) as c:
            result = c.execute(
                s.alerts.insert().values(
                    watch_id=watch_id,
                    face_id=face_id,
                    photo_sha256=photo_sha256,
                    similarity=float(similarity),
                    created_at=dt.datetime.now(dt.UTC),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def list_alerts(
        self,
        *,
        watch_id: int | None = None,
        actor: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Alerts, oldest first, with their watch's case and the face's photo (where the
        face is still stored)."""
        a, w, f, p, src = s.alerts, s.watches, s.faces, s.photos, s.sources
        query = (
            sa.select(
                a.c.id,
                a.c.watch_id,
                a.c.face_id,
                a.c.photo_sha256,
                a.c.similarity,
                a.c.created_at,
                a.c.delivered_at,
                a.c.delivery_error,
                w.c.case_ref,
                w.c.actor,
                p.c.id.label("photo_id"),
                p.c.uri,
                src.c.name.label("source"),
            )
            .select_from(
                a.join(w, a.c.watch_id == w.c.id)
                .outerjoin(f, a.c.face_id == f.c.id)
                .outerjoin(p, f.c.photo_id == p.c.id)
                .outerjoin(src, p.c.source_id == src.c.id)
            )
            .where(a.c.id > after)
            .order_by(a.c.id)
            .limit(limit)
        )
        if watch_id is not None:
            query = query.where(a.c.watch_id == watch_id)
        if actor is not None:
            query = query.where(w.c.actor == actor)
        with self._db.connect() as c:
            rows = c.execute(query).mappings().all()
        return [
            {
                "id": int(r["id"]),
                "watch": int(r["watch_id"]),
                "case": r["case_ref"],
                "actor": r["actor"],
                "face_id": r["face_id"],
                "photo_id": r["photo_id"],
                "photo": r["uri"],
                "source": r["source"],
                "photo_sha256": r["photo_sha256"],
                "similarity": round(float(r["similarity"]), 4),
                "at": iso_utc(r["created_at"]),
                "delivered_at": iso_utc(r["delivered_at"]),
                "delivery_error": r["delivery_error"],
            }
            for r in rows
        ]

    def alert_delivered(
        self, alert_id: int, *, error: str | None, conn: sa.Connection | None = None
    ) -> None:
        values: dict[str, Any] = {"delivery_error": error}
        if error is None:
            values["delivered_at"] = dt.datetime.now(dt.UTC)
        with self._writing(conn) as c:
            c.execute(s.alerts.update().where(s.alerts.c.id == alert_id).values(**values))
