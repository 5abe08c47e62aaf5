"""What a model switch needs of the catalog: which space is active, the faces still to be
re-embedded into the space being built, and the one transaction that completes the switch.

One space is ``active`` (searches use it); a switch marks its target ``building`` and fills
it photo by photo, one transaction each, so a killed switch resumes where it stopped: a
photo is done once it has a face in the target space. Completing deletes every face of the
old space and marks the target active in one transaction, with its audit event inside.
Suppression templates stay in the space they were made in (see :mod:`countenance.reembed`).

``SqlCatalog`` inherits :class:`SwitchCatalog`, the methods a switch calls; the functions
below do their work on the catalog's engine or inside a caller's transaction.

Example::

    catalog.current_space()                                # the space searches use
    catalog.mark_building(new)
    for photo in catalog.photos_to_reembed(old, new, limit=100): ...
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.types import Box, EmbeddingSpace, Metric

if TYPE_CHECKING:
    from countenance.catalog.sql import FaceRecord

ACTIVE, BUILDING = "active", "building"


@dataclass(frozen=True, slots=True)
class StoredFace:
    """A face of the old space, as a switch re-embeds it: same box, same expiry."""

    face_id: int
    box: Box
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class PhotoToReembed:
    """A photo a switch has still to re-embed, with its faces in the old space."""

    photo_id: int
    uri: str
    sha256: str
    faces: tuple[StoredFace, ...]


def face_row(
    photo_id: int,
    space_id: int,
    face: FaceRecord,
    now: dt.datetime,
    expires_at: dt.datetime | None,
) -> dict[str, Any]:
    """The ``faces`` row of ``face``."""
    return {
        "photo_id": photo_id,
        "space_id": space_id,
        "x1": face.box.x1,
        "y1": face.box.y1,
        "x2": face.box.x2,
        "y2": face.box.y2,
        "landmarks": face.landmarks.as_list() if face.landmarks else None,
        "detector": face.detector,
        "det_score": face.det_score,
        "quality": face.quality,
        "sharpness": face.sharpness,
        "skip_reason": face.skip_reason,
        "embedding": None
        if face.embedding is None
        else np.asarray(face.embedding, dtype="<f4").tobytes(),
        "created_at": now,
        "expires_at": expires_at,
    }


def _space(row: Any) -> EmbeddingSpace:
    return EmbeddingSpace(row.model, row.version, row.dim, Metric(row.metric))


def space_in_state(db: sa.Engine, state: str) -> tuple[int, EmbeddingSpace] | None:
    t = s.spaces
    with db.connect() as conn:
        row = conn.execute(
            sa.select(t).where(t.c.state == state).order_by(t.c.id.desc()).limit(1)
        ).first()
    return None if row is None else (int(row.id), _space(row))


def active_space(db: sa.Engine) -> EmbeddingSpace | None:
    """The space searches use: the one marked active; in a store from before migration 7,
    the one holding the most live faces, else the space registered last."""
    marked = space_in_state(db, ACTIVE)
    if marked is not None:
        return marked[1]
    f, t = s.faces, s.spaces
    live = sa.func.count(f.c.id).filter(f.c.skip_reason.is_(None), f.c.embedding.is_not(None))
    query = (
        sa.select(t.c.model, t.c.version, t.c.dim, t.c.metric)
        .select_from(t.outerjoin(f, f.c.space_id == t.c.id))
        .where(sa.or_(t.c.state.is_(None), t.c.state != BUILDING))
        .group_by(t.c.id, t.c.model, t.c.version, t.c.dim, t.c.metric)
        .order_by(live.desc(), t.c.id.desc())
        .limit(1)
    )
    with db.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else _space(row)


def mark(conn: sa.Connection, space_id: int, state: str | None) -> None:
    """Give space ``space_id`` ``state``; marking one active unmarks the others."""
    t = s.spaces
    if state == ACTIVE:
        conn.execute(t.update().where(t.c.state == ACTIVE).values(state=None))
    conn.execute(t.update().where(t.c.id == space_id).values(state=state))


def live_count(db: sa.Engine, space_id: int) -> int:
    f = s.faces
    query = sa.select(sa.func.count(f.c.id)).where(
        f.c.space_id == space_id, f.c.skip_reason.is_(None), f.c.embedding.is_not(None)
    )
    with db.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def reembed_progress(db: sa.Engine, from_id: int, to_id: int) -> tuple[int, int]:
    """(photos done, photos in all) of a switch from ``from_id`` to ``to_id``."""
    f = s.faces
    with db.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.count(sa.distinct(f.c.photo_id))).where(f.c.space_id == from_id)
        ).scalar()
        done = conn.execute(
            sa.select(sa.func.count(sa.distinct(f.c.photo_id))).where(f.c.space_id == to_id)
        ).scalar()
    return int(done or 0), int(total or 0)


def photos_to_reembed(
    db: sa.Engine, from_id: int, to_id: int, *, limit: int, after: int = 0
) -> list[PhotoToReembed]:
    """Up to ``limit`` photos (ids above ``after``, in order) with faces in ``from_id`` and
    none yet in ``to_id``, each with its old faces."""
    f, p = s.faces, s.photos
    done = sa.select(f.c.photo_id).where(f.c.space_id == to_id)
    photo_ids = (
        sa.select(f.c.photo_id)
        .where(f.c.space_id == from_id, f.c.photo_id > after, f.c.photo_id.not_in(done))
        .group_by(f.c.photo_id)
        .order_by(f.c.photo_id)
        .limit(limit)
    )
    query = (
        sa.select(p.c.id, p.c.uri, p.c.sha256, f.c.id.label("face_id"), f.c.x1, f.c.y1)
        .add_columns(f.c.x2, f.c.y2, f.c.expires_at)
        .join(f, f.c.photo_id == p.c.id)
        .where(f.c.space_id == from_id, p.c.id.in_(photo_ids))
        .order_by(p.c.id, f.c.id)
    )
    photos: dict[int, PhotoToReembed] = {}
    with db.connect() as conn:
        for r in conn.execute(query):
            face = StoredFace(int(r.face_id), Box(r.x1, r.y1, r.x2, r.y2), r.expires_at)
            known = photos.get(int(r.id))
            faces = (*known.faces, face) if known else (face,)
            photos[int(r.id)] = PhotoToReembed(int(r.id), r.uri, r.sha256, faces)
    return list(photos.values())


def add_faces(
    db: sa.Engine,
    photo_id: int,
    space_id: int,
    faces: list[tuple[FaceRecord, dt.datetime | None]],
    now: dt.datetime,
    carried: list[int] | None = None,
) -> list[int]:
    """Store re-embedded faces of one photo in one transaction; returns the ids to index.
    ``carried`` names the old face each one re-embeds: its person (and the faces' rejections
    from persons) pass to the new face, so names survive a model switch."""
    indexed: list[int] = []
    f, r = s.faces, s.person_rejects
    with db.begin() as conn:
        for n, (face, expires_at) in enumerate(faces):
            row = face_row(photo_id, space_id, face, now, expires_at)
            s.check_text(s.faces, row)
            old = carried[n] if carried is not None else None
            if old is not None:
                person = conn.execute(
                    sa.select(f.c.person_id, f.c.person_pinned).where(f.c.id == old)
                ).first()
                if person is not None:
                    row.update(person_id=person[0], person_pinned=bool(person[1]))
            inserted = conn.execute(s.faces.insert().values(**row)).inserted_primary_key
            assert inserted is not None
            face_id = int(inserted[0])
            if old is not None:
                for rejected in conn.execute(
                    sa.select(r.c.person_id).where(r.c.face_id == old)
                ).scalars():
                    conn.execute(r.insert().values(person_id=rejected, face_id=face_id))
            if face.skip_reason is None and face.embedding is not None:
                indexed.append(face_id)
    return indexed


def complete_switch(conn: sa.Connection, from_id: int, to_id: int) -> int:
    """Inside ``conn``'s transaction: delete every face of ``from_id`` and mark ``to_id``
    active. Returns how many faces were deleted."""
    f = s.faces
    deleted = conn.execute(f.delete().where(f.c.space_id == from_id)).rowcount
    mark(conn, from_id, None)
    mark(conn, to_id, ACTIVE)
    return int(deleted)


class SwitchCatalog:
    """Mixed into SqlCatalog: what a model switch (:mod:`countenance.reembed`) reads and
    writes. Needs ``_db``, ``space_id`` and ``_writing``."""

    _db: sa.Engine

    if TYPE_CHECKING:

        def space_id(self, space: EmbeddingSpace) -> int: ...

        def _writing(
            self, conn: sa.Connection | None
        ) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def mark_building(self, space: EmbeddingSpace) -> None:
        """Mark ``space`` the one a switch is filling: no search uses it until
        :meth:`complete_switch` makes it active.

        Example: ``catalog.mark_building(new_space)``.
        """
        space_id = self.space_id(space)
        with self._db.begin() as conn:
            mark(conn, space_id, BUILDING)

    def live_count(self, space: EmbeddingSpace) -> int:
        """How many faces of ``space`` are live (stored with an embedding, not skipped).

        Example: ``catalog.live_count(catalog.current_space())``.
        """
        return live_count(self._db, self.space_id(space))

    def reembed_progress(self, old: EmbeddingSpace, new: EmbeddingSpace) -> tuple[int, int]:
        """(photos done, photos in all) of a switch from ``old`` to ``new``: a photo is done
        once it has a face in ``new``.

        Example: ``done, total = catalog.reembed_progress(old, new)``.
        """
        return reembed_progress(self._db, self.space_id(old), self.space_id(new))

    def photos_to_reembed(
        self, old: EmbeddingSpace, new: EmbeddingSpace, *, limit: int, after: int = 0
    ) -> list[PhotoToReembed]:
        """Up to ``limit`` photos (ids above ``after``, in order) with faces in ``old`` and
        none yet in ``new``, each with its faces in ``old``.

        Example: ``batch = catalog.photos_to_reembed(old, new, limit=64, after=last_id)``.
        """
        return photos_to_reembed(
            self._db, self.space_id(old), self.space_id(new), limit=limit, after=after
        )

    def add_faces(
        self,
        photo_id: int,
        space: EmbeddingSpace,
        faces: list[tuple[FaceRecord, dt.datetime | None]],
        *,
        carried: list[int] | None = None,
    ) -> list[int]:
        """Store a stored photo's faces re-embedded into ``space`` (each with its expiry), in
        one transaction; returns the ids of the faces to index. ``carried``: the old face
        each re-embeds, whose person it keeps.

        Example: ``ids = catalog.add_faces(12, new_space, [(record, None)], carried=[40])``.
        """
        space_id = self.space_id(space)
        return add_faces(
            self._db, photo_id, space_id, faces, dt.datetime.now(dt.UTC), carried=carried
        )

    def complete_switch(
        self, old: EmbeddingSpace, new: EmbeddingSpace, *, conn: sa.Connection | None = None
    ) -> int:
        """Delete every face of ``old`` and make ``new`` the active space, in ``conn``'s
        transaction (the write core's, holding the switch's audit event) or one of its own;
        returns how many faces were deleted.

        Example::

            with core.change() as change:
                deleted = catalog.complete_switch(old, new, conn=change.conn)
                change.record(actor="dpo", action="model", details={"deleted": deleted})
        """
        from_id, to_id = self.space_id(old), self.space_id(new)
        with self._writing(conn) as c:
            return complete_switch(c, from_id, to_id)
