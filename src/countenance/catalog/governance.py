"""Catalog operations of the governance controls: exclusions, erasure, suppression.

Kept apart from :mod:`countenance.catalog.sql` to keep each module small; ``SqlCatalog``
inherits them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.errors import InvalidArgument, RateLimited
from countenance.ports import Ids, Vectors
from countenance.types import EmbeddingSpace


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive one is taken as UTC, as SQLite hands back what it stored.

    Example: ``as_utc(datetime(2024, 5, 1, 14, tzinfo=paris))`` is 12:00 UTC.
    """
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def iso_utc(value: dt.datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC to the second, or None."""
    return None if value is None else as_utc(value).isoformat(timespec="seconds")


def covers(exclusion: str, jurisdiction: str | None) -> bool:
    """Whether an excluded code covers a photo's jurisdiction: ``CA`` covers ``CA`` and
    ``CA-QC``; ``US-IL`` covers only ``US-IL`` (a photo known only to be in ``US`` is not known
    to be in Illinois)."""
    if not jurisdiction:
        return False
    return jurisdiction == exclusion or jurisdiction.startswith(exclusion + "-")


def iso3166(code: str) -> str:
    """An ISO 3166-1 alpha-2 country (``CA``) or 3166-2 subdivision (``US-IL``) code."""
    value = code.strip().upper()
    country, _, sub = value.partition("-")
    if (
        len(country) != 2
        or not country.isalpha()
        or (sub and not (1 <= len(sub) <= 3 and sub.isalnum()))
    ):
        raise InvalidArgument(f"{code!r} is not an ISO 3166 code such as CA or US-IL")
    return value


class GovernanceCatalog:
    """Mixed into SqlCatalog: needs ``_db`` and ``space_id``.

    Every write takes an optional ``conn``: given, it runs inside that open transaction (the
    write core's, which also records the audit event); omitted, in a transaction of its own.
    """

    _db: sa.Engine

    if TYPE_CHECKING:

        def space_id(self, space: EmbeddingSpace) -> int: ...

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A new transaction: committed when the block ends, rolled back if it raises."""
        return self._db.begin()

    @contextlib.contextmanager
    def _writing(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        if conn is not None:
            yield conn
        else:
            with self._db.begin() as own:
                yield own

    # exclusions ----------------------------------------------------------------------------

    def add_exclusion(
        self, code: str, reason: str | None, actor: str, *, conn: sa.Connection | None = None
    ) -> None:
        values = {"code": code, "reason": reason, "actor": actor, "created_at": _now()}
        s.check_text(s.exclusions, values)
        t = s.exclusions
        with self._writing(conn) as c:
            if c.execute(sa.select(t.c.code).where(t.c.code == code)).first() is not None:
                raise InvalidArgument(f"{code} is already excluded")
            c.execute(t.insert().values(**values))

    def remove_exclusion(self, code: str, *, conn: sa.Connection | None = None) -> bool:
        with self._writing(conn) as c:
            done = c.execute(s.exclusions.delete().where(s.exclusions.c.code == code))
        return bool(done.rowcount)

    def exclusions(self) -> list[dict[str, Any]]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(s.exclusions).order_by(s.exclusions.c.code)).mappings()
            return [
                {
                    "code": r["code"],
                    "reason": r["reason"],
                    "actor": r["actor"],
                    "created_at": as_utc(r["created_at"]).isoformat(timespec="seconds"),
                }
                for r in rows
            ]

    def delete_photos_in(self, code: str, *, conn: sa.Connection | None = None) -> tuple[int, Ids]:
        """Delete every photo (and its faces) whose jurisdiction ``code`` covers."""
        p = s.photos
        where = sa.or_(p.c.jurisdiction == code, p.c.jurisdiction.like(f"{code}-%"))
        with self._writing(conn) as c:
            photo_ids = c.execute(sa.select(p.c.id).where(where)).scalars().all()
            face_ids = self._delete_photo_rows(c, list(photo_ids))
        return len(photo_ids), face_ids

    def _delete_photo_rows(self, conn: sa.Connection, photo_ids: list[int]) -> Ids:
        f, p = s.faces, s.photos
        face_ids: list[int] = []
        for i in range(0, len(photo_ids), 900):
            chunk = photo_ids[i : i + 900]
            face_ids += conn.execute(sa.select(f.c.id).where(f.c.photo_id.in_(chunk))).scalars()
            conn.execute(f.delete().where(f.c.photo_id.in_(chunk)))
            conn.execute(p.delete().where(p.c.id.in_(chunk)))
        return np.asarray(face_ids, dtype=np.int64)

    # search rate -----------------------------------------------------------------------------

    def reserve_rate_slot(self, actor: str, limit: int, now: dt.datetime) -> int:
        """Reserve one of ``actor``'s ``limit`` search slots of the minute before ``now``;
        returns how many the minute then holds, or raises RateLimited (reserving none).

        The slot is written before it is counted, inside one transaction: that takes
        SQLite's write lock, so concurrent reservations count one after another; PostgreSQL
        takes a transaction lock on the actor first.
        """
        t = s.rate_slots
        since = now - dt.timedelta(minutes=1)
        with self._db.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:a))"), {"a": actor})
            conn.execute(t.insert().values(actor=actor, at=now))
            held = conn.execute(
                sa.select(sa.func.count()).where(t.c.actor == actor, t.c.at > since)
            ).scalar_one()
            if held > limit:
                conn.rollback()
                raise RateLimited(
                    f"{actor!r} has run {held - 1} searches in the last minute, the limit is"
                    f" {limit}; wait and try again"
                )
            conn.execute(t.delete().where(t.c.at <= since))
        return int(held)

    # erasure -------------------------------------------------------------------------------

    def live_faces_of(self, *, photo_id: int | None = None, source_id: int | None = None) -> Ids:
        """Ids of the indexed faces of one photo or one source."""
        f, p = s.faces, s.photos
        query = sa.select(f.c.id).where(f.c.skip_reason.is_(None))
        if photo_id is not None:
            query = query.where(f.c.photo_id == photo_id)
        elif source_id is not None:
            query = query.join(p, f.c.photo_id == p.c.id).where(p.c.source_id == source_id)
        else:
            raise InvalidArgument("live_faces_of needs a photo_id or a source_id")
        with self._db.connect() as conn:
            return np.asarray(conn.execute(query).scalars().all(), dtype=np.int64)

    def delete_faces(
        self, face_ids: Iterable[int], *, conn: sa.Connection | None = None
    ) -> tuple[int, list[str]]:
        """Delete faces; a photo left with no face is deleted too. Returns (faces deleted,
        SHA-256 of the photos deleted) in one transaction."""
        f, p = s.faces, s.photos
        wanted = sorted({int(i) for i in face_ids})
        deleted = 0
        emptied: list[str] = []
        with self._writing(conn) as c:
            photo_ids: set[int] = set()
            for i in range(0, len(wanted), 900):
                chunk = wanted[i : i + 900]
                photo_ids.update(
                    c.execute(sa.select(f.c.photo_id).where(f.c.id.in_(chunk))).scalars()
                )
                deleted += c.execute(f.delete().where(f.c.id.in_(chunk))).rowcount
            for photo_id in sorted(photo_ids):
                left = c.execute(
                    sa.select(sa.func.count()).where(f.c.photo_id == photo_id)
                ).scalar()
                if left:
                    c.execute(p.update().where(p.c.id == photo_id).values(n_faces=left))
                    continue
                digest = c.execute(sa.select(p.c.sha256).where(p.c.id == photo_id)).scalar()
                c.execute(p.delete().where(p.c.id == photo_id))
                emptied.append(str(digest))
        return deleted, emptied

    # suppression ---------------------------------------------------------------------------

    def add_suppression(
        self,
        space: EmbeddingSpace,
        template: Vectors,
        min_similarity: float,
        reason: str,
        actor: str,
        *,
        conn: sa.Connection | None = None,
    ) -> int:
        """Keep the template (one or more unit vectors) of an erased person; returns its id."""
        vectors = np.ascontiguousarray(template, dtype="<f4").reshape(-1, space.dim)
        s.check_text(s.suppressions, {"reason": reason, "actor": actor})
        space_id = self.space_id(space)
        with self._writing(conn) as c:
            result = c.execute(
                s.suppressions.insert().values(
                    space_id=space_id,
                    embedding=vectors.tobytes(),
                    min_similarity=float(min_similarity),
                    reason=reason,
                    actor=actor,
                    created_at=_now(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def suppression_templates(self, space: EmbeddingSpace) -> tuple[Ids, Vectors, Vectors]:
        """Every template vector of ``space``: (suppression id per vector, vectors,
        min_similarity per vector)."""
        t = s.suppressions
        query = sa.select(t.c.id, t.c.embedding, t.c.min_similarity).where(
            t.c.space_id == self.space_id(space)
        )
        ids: list[int] = []
        parts: list[Vectors] = []
        edges: list[float] = []
        with self._db.connect() as conn:
            for sid, blob, edge in conn.execute(query):
                vectors = np.frombuffer(blob, dtype="<f4").reshape(-1, space.dim)
                ids += [int(sid)] * len(vectors)
                edges += [float(edge)] * len(vectors)
                parts.append(vectors.astype(np.float32))
        if not parts:
            empty = np.zeros((0, space.dim), dtype=np.float32)
            return np.zeros(0, dtype=np.int64), empty, np.zeros(0, dtype=np.float32)
        return (
            np.asarray(ids, dtype=np.int64),
            np.concatenate(parts),
            np.asarray(edges, dtype=np.float32),
        )

    def face_details(self, face_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Everything held about each face but its embedding: photo, source, dates."""
        f, p, t = s.faces, s.photos, s.sources
        wanted = [int(i) for i in face_ids]
        out: dict[int, dict[str, Any]] = {}
        query_cols = (
            f.c.id,
            f.c.x1,
            f.c.y1,
            f.c.x2,
            f.c.y2,
            p.c.id.label("photo_id"),
            p.c.uri,
            p.c.page_url,
            p.c.jurisdiction,
            p.c.ingested_at,
            p.c.expires_at,
            t.c.name,
            t.c.lawful_basis,
            t.c.consent_ref,
            t.c.jurisdiction.label("source_cc"),
            t.c.licence,
            t.c.retention_days,
        )
        with self._db.connect() as conn:
            for i in range(0, len(wanted), 900):
                query = (
                    sa.select(*query_cols)
                    .select_from(f.join(p, f.c.photo_id == p.c.id).join(t, p.c.source_id == t.c.id))
                    .where(f.c.id.in_(wanted[i : i + 900]))
                )
                for r in conn.execute(query).mappings():
                    out[int(r["id"])] = dict(r)
        return out
