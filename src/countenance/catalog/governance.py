"""Catalog operations of the governance controls: exclusions, erasure, suppression.

Kept apart from :mod:`countenance.catalog.sql` to keep each module small; ``SqlCatalog``
inherits them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.errors import InvalidArgument
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
    """Mixed into SqlCatalog: needs ``_db`` and ``space_id``."""

    _db: sa.Engine

    def space_id(self, space: EmbeddingSpace) -> int:  # pragma: no cover - SqlCatalog's
        raise NotImplementedError

    # exclusions ----------------------------------------------------------------------------

    def add_exclusion(self, code: str, reason: str | None, actor: str) -> None:
        values = {"code": code, "reason": reason, "actor": actor, "created_at": _now()}
        s.check_text(s.exclusions, values)
        try:
            with self._db.begin() as conn:
                conn.execute(s.exclusions.insert().values(**values))
        except sa.exc.IntegrityError as exc:
            raise InvalidArgument(f"{code} is already excluded") from exc

    def remove_exclusion(self, code: str) -> bool:
        with self._db.begin() as conn:
            done = conn.execute(s.exclusions.delete().where(s.exclusions.c.code == code))
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

    def delete_photos_in(self, code: str) -> tuple[int, Ids]:
        """Delete every photo (and its faces) whose jurisdiction ``code`` covers."""
        p = s.photos
        where = sa.or_(p.c.jurisdiction == code, p.c.jurisdiction.like(f"{code}-%"))
        with self._db.begin() as conn:
            photo_ids = conn.execute(sa.select(p.c.id).where(where)).scalars().all()
            face_ids = self._delete_photo_rows(conn, list(photo_ids))
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

    def delete_faces(self, face_ids: Iterable[int]) -> tuple[int, list[str]]:
        """Delete faces; a photo left with no face is deleted too. Returns (faces deleted,
        SHA-256 of the photos deleted) in one transaction."""
        f, p = s.faces, s.photos
        wanted = sorted({int(i) for i in face_ids})
        deleted = 0
        emptied: list[str] = []
        with self._db.begin() as conn:
            photo_ids: set[int] = set()
            for i in range(0, len(wanted), 900):
                chunk = wanted[i : i + 900]
                photo_ids.update(
                    conn.execute(sa.select(f.c.photo_id).where(f.c.id.in_(chunk))).scalars()
                )
                deleted += conn.execute(f.delete().where(f.c.id.in_(chunk))).rowcount
            for photo_id in sorted(photo_ids):
                left = conn.execute(
                    sa.select(sa.func.count()).where(f.c.photo_id == photo_id)
                ).scalar()
                if left:
                    conn.execute(p.update().where(p.c.id == photo_id).values(n_faces=left))
                    continue
                digest = conn.execute(sa.select(p.c.sha256).where(p.c.id == photo_id)).scalar()
                conn.execute(p.delete().where(p.c.id == photo_id))
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
    ) -> int:
        """Keep the template (one or more unit vectors) of an erased person; returns its id."""
        vectors = np.ascontiguousarray(template, dtype="<f4").reshape(-1, space.dim)
        s.check_text(s.suppressions, {"reason": reason, "actor": actor})
        with self._db.begin() as conn:
            result = conn.execute(
                s.suppressions.insert().values(
                    space_id=self.space_id(space),
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
