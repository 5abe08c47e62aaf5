"""Catalog rows of persons (faces grouped into one person), what people decided about them
(names, splits, "not this person"), watches and their alerts.

Every read that placing a face needs takes the open transaction (``conn``), because the
faces being placed are not committed yet; every write takes it too, so the write core's
audit event lands in the same transaction. ``SqlCatalog`` inherits these.

Example::

    with core.change() as change:
        person = catalog.new_person([40, 41], conn=change.conn)
        catalog.name_person(person, "Ada Lovelace", conn=change.conn)
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.governance import iso_utc
from countenance.errors import InvalidArgument, NotFound
from countenance.ports import Vectors
from countenance.types import EmbeddingSpace

_CHUNK = 900  # ids per IN (...): SQLite's bound on parameters


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _chunks_text(values: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(values), _CHUNK):
        yield list(values[i : i + _CHUNK])


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield [int(x) for x in ids[i : i + _CHUNK]]


class PeopleCatalog:
    """Mixed into SqlCatalog: needs ``_db`` and ``space_id``."""

    _db: sa.Engine

    if TYPE_CHECKING:

        def space_id(self, space: EmbeddingSpace) -> int: ...

        def _writing(
            self, conn: sa.Connection | None
        ) -> contextlib.AbstractContextManager[sa.Connection]: ...

    @contextlib.contextmanager
    def _using(self, conn: sa.Connection | None) -> Iterator[sa.Connection]:
        """Reads: in the open transaction (it sees what it wrote), else a connection."""
        if conn is not None:
            yield conn
        else:
            with self._db.connect() as own:
                yield own

    # what clustering reads ----------------------------------------------------------------

    def persons_of(
        self, face_ids: Sequence[int], *, conn: sa.Connection | None = None
    ) -> dict[int, int]:
        """The person of each of these faces that has one."""
        f = s.faces
        out: dict[int, int] = {}
        with self._using(conn) as c:
            for chunk in _chunks(list(face_ids)):
                rows = c.execute(
                    sa.select(f.c.id, f.c.person_id).where(
                        f.c.id.in_(chunk), f.c.person_id.is_not(None)
                    )
                )
                out.update({int(i): int(p) for i, p in rows})
        return out

    def person_vectors(
        self, space: EmbeddingSpace, person: int, *, conn: sa.Connection | None = None
    ) -> tuple[list[int], Vectors]:
        """The ids and stored vectors of a person's indexed faces in ``space``."""
        f = s.faces
        query = sa.select(f.c.id, f.c.embedding).where(
            f.c.person_id == person,
            f.c.space_id == self.space_id(space),
            f.c.skip_reason.is_(None),
            f.c.embedding.is_not(None),
        )
        with self._using(conn) as c:
            rows = c.execute(query.order_by(f.c.id)).all()
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(-1, space.dim)
        return [int(r[0]) for r in rows], vectors.astype(np.float32)

    def face_vectors(
        self, space: EmbeddingSpace, face_ids: Sequence[int], *, conn: sa.Connection | None = None
    ) -> dict[int, np.ndarray[Any, np.dtype[np.float32]]]:
        """The stored vectors of these faces (those with one)."""
        f = s.faces
        out: dict[int, np.ndarray[Any, np.dtype[np.float32]]] = {}
        with self._using(conn) as c:
            for chunk in _chunks(list(face_ids)):
                rows = c.execute(
                    sa.select(f.c.id, f.c.embedding).where(
                        f.c.id.in_(chunk), f.c.embedding.is_not(None)
                    )
                )
                for i, blob in rows:
                    out[int(i)] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        return out

    def person_rules(
        self, persons: Sequence[int], *, conn: sa.Connection | None = None
    ) -> dict[str, Any]:
        """For these persons: ``named`` (those with a name), ``pinned`` (those holding faces a
        person placed), ``apart`` (pairs split apart), ``rejects`` (face -> persons it was
        taken out of) and ``refuses`` (person -> persons its faces were taken out of)."""
        t, a, r, f = s.persons, s.persons_apart, s.person_rejects, s.faces
        named: set[int] = set()
        pinned: set[int] = set()
        apart: set[frozenset[int]] = set()
        rejects: dict[int, set[int]] = {}
        refuses: dict[int, set[int]] = {}
        with self._using(conn) as c:
            for chunk in _chunks(list(persons)):
                named.update(
                    int(i)
                    for i in c.execute(
                        sa.select(t.c.id).where(t.c.id.in_(chunk), t.c.name.is_not(None))
                    ).scalars()
                )
                pinned.update(
                    int(i)
                    for i in c.execute(
                        sa.select(f.c.person_id)
                        .where(f.c.person_id.in_(chunk), f.c.person_pinned.is_(sa.true()))
                        .distinct()
                    ).scalars()
                )
                for x, y in c.execute(
                    sa.select(a.c.a, a.c.b).where(sa.or_(a.c.a.in_(chunk), a.c.b.in_(chunk)))
                ):
                    apart.add(frozenset((int(x), int(y))))
                for person, face in c.execute(
                    sa.select(r.c.person_id, r.c.face_id).where(r.c.person_id.in_(chunk))
                ):
                    rejects.setdefault(int(face), set()).add(int(person))
                for holder, refused in c.execute(
                    sa.select(f.c.person_id, r.c.person_id)
                    .select_from(r.join(f, r.c.face_id == f.c.id))
                    .where(f.c.person_id.in_(chunk))
                ):
                    refuses.setdefault(int(holder), set()).add(int(refused))
        return {
            "named": named,
            "pinned": pinned,
            "apart": apart,
            "rejects": rejects,
            "refuses": refuses,
        }

    def new_person(
        self,
        face_ids: Sequence[int] = (),
        *,
        name: str | None = None,
        pinned: bool = False,
        conn: sa.Connection | None = None,
    ) -> int:
        """A new person holding these faces; its id."""
        now = _now()
        if name is not None:
            s.check_text(s.persons, {"name": name})
        with self._writing(conn) as c:
            result = c.execute(s.persons.insert().values(name=name, created_at=now, updated_at=now))
            key = result.inserted_primary_key
            assert key is not None
            person = int(key[0])
            self.assign_faces(face_ids, person, pinned=pinned, conn=c)
            return person

    def assign_faces(
        self,
        face_ids: Iterable[int],
        person: int | None,
        *,
        pinned: bool = False,
        conn: sa.Connection | None = None,
    ) -> int:
        """Put these faces in ``person`` (None: unassigned); how many moved."""
        f = s.faces
        moved = 0
        with self._writing(conn) as c:
            for chunk in _chunks(sorted({int(i) for i in face_ids})):
                moved += c.execute(
                    f.update()
                    .where(f.c.id.in_(chunk))
                    .values(person_id=person, person_pinned=pinned and person is not None)
                ).rowcount
        return moved

    def merge_person(self, person: int, into: int, *, conn: sa.Connection | None = None) -> None:
        """Move every face of ``person`` into ``into`` (its pins, rejections and splits
        with it) and delete ``person``."""
        f, r, a = s.faces, s.person_rejects, s.persons_apart
        with self._writing(conn) as c:
            c.execute(f.update().where(f.c.person_id == person).values(person_id=into))
            rejected = set(
                c.execute(sa.select(r.c.face_id).where(r.c.person_id == person)).scalars()
            )
            self.reject_faces(into, rejected, conn=c)
            for x, y in c.execute(
                sa.select(a.c.a, a.c.b).where(sa.or_(a.c.a == person, a.c.b == person))
            ).all():
                other = y if x == person else x
                if other != into:
                    self.keep_apart(into, int(other), conn=c)
            c.execute(s.persons.delete().where(s.persons.c.id == person))
            self._touch(c, into)

    # what people decide -------------------------------------------------------------------

    def name_person(
        self, person: int, name: str | None, *, conn: sa.Connection | None = None
    ) -> None:
        """Name a person (None: remove the name); its faces are pinned to it."""
        if name is not None:
            s.check_text(s.persons, {"name": name})
        with self._writing(conn) as c:
            self._require(c, person)
            c.execute(s.persons.update().where(s.persons.c.id == person).values(name=name))
            if name is not None:
                self.pin_person(person, conn=c)
            self._touch(c, person)

    def pin_person(self, person: int, *, conn: sa.Connection | None = None) -> None:
        f = s.faces
        with self._writing(conn) as c:
            c.execute(f.update().where(f.c.person_id == person).values(person_pinned=True))

    def hide_person(self, person: int, hidden: bool, *, conn: sa.Connection | None = None) -> None:
        with self._writing(conn) as c:
            self._require(c, person)
            c.execute(s.persons.update().where(s.persons.c.id == person).values(hidden=hidden))
            self._touch(c, person)

    def reject_faces(
        self, person: int, face_ids: Iterable[int], *, conn: sa.Connection | None = None
    ) -> None:
        """Remember that these faces are not ``person``."""
        r = s.person_rejects
        with self._writing(conn) as c:
            for face in sorted({int(i) for i in face_ids}):
                known = c.execute(
                    sa.select(sa.func.count()).where(r.c.person_id == person, r.c.face_id == face)
                ).scalar()
                if not known:
                    c.execute(r.insert().values(person_id=person, face_id=face))

    def keep_apart(self, a: int, b: int, *, conn: sa.Connection | None = None) -> None:
        """Remember that persons ``a`` and ``b`` are two people."""
        if a == b:
            raise InvalidArgument("a person cannot be kept apart from itself")
        lo, hi = sorted((int(a), int(b)))
        t = s.persons_apart
        with self._writing(conn) as c:
            known = c.execute(sa.select(sa.func.count()).where(t.c.a == lo, t.c.b == hi)).scalar()
            if not known:
                c.execute(t.insert().values(a=lo, b=hi))

    def delete_person(self, person: int, *, conn: sa.Connection | None = None) -> None:
        with self._writing(conn) as c:
            c.execute(s.persons.delete().where(s.persons.c.id == person))

    def drop_empty_persons(self, *, conn: sa.Connection | None = None) -> int:
        """Delete persons left with no face (after erasure, retention or a merge)."""
        f, t = s.faces, s.persons
        with self._writing(conn) as c:
            return int(
                c.execute(t.delete().where(~sa.exists().where(f.c.person_id == t.c.id))).rowcount
            )

    def unpin_clusters(self, *, conn: sa.Connection | None = None) -> int:
        """Before a re-clustering: every face no person placed becomes unassigned; persons
        left empty go. Returns how many faces were released."""
        f = s.faces
        with self._writing(conn) as c:
            released = c.execute(
                f.update()
                .where(f.c.person_id.is_not(None), f.c.person_pinned.is_(sa.false()))
                .values(person_id=None)
            ).rowcount
            self.drop_empty_persons(conn=c)
            return int(released)

    def pinned_faces(self, space: EmbeddingSpace) -> set[int]:
        """Ids of the faces of ``space`` a person placed in a person."""
        f = s.faces
        with self._db.connect() as c:
            return {
                int(i)
                for i in c.execute(
                    sa.select(f.c.id).where(
                        f.c.space_id == self.space_id(space),
                        f.c.person_pinned.is_(sa.true()),
                        f.c.person_id.is_not(None),
                    )
                ).scalars()
            }

    def _require(self, c: sa.Connection, person: int) -> None:
        found = c.execute(sa.select(s.persons.c.id).where(s.persons.c.id == person)).first()
        if found is None:
            raise NotFound(f"no person {person}")

    def _touch(self, c: sa.Connection, person: int) -> None:
        c.execute(s.persons.update().where(s.persons.c.id == person).values(updated_at=_now()))

    # what the edges show ------------------------------------------------------------------

    def list_persons(
        self,
        *,
        space: EmbeddingSpace,
        min_faces: int = 2,
        hidden: bool = False,
        named: bool | None = None,
        limit: int = 100,
        offset: int = 0,
        ids: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Persons with at least ``min_faces`` indexed faces, most faces first: id, name,
        hidden, faces, photos, sources, first and last seen (ingest times), cover face
        (their best-quality face)."""
        f, p, t, src = s.faces, s.photos, s.persons, s.sources
        live = sa.and_(f.c.space_id == self.space_id(space), f.c.skip_reason.is_(None))
        counts = (
            sa.select(
                f.c.person_id.label("person_id"),
                sa.func.count(f.c.id).label("faces"),
                sa.func.count(sa.distinct(f.c.photo_id)).label("photos"),
                sa.func.min(p.c.ingested_at).label("first_seen"),
                sa.func.max(p.c.ingested_at).label("last_seen"),
            )
            .select_from(f.join(p, f.c.photo_id == p.c.id))
            .where(live, f.c.person_id.is_not(None))
            .group_by(f.c.person_id)
            .subquery()
        )
        query = (
            sa.select(t.c.id, t.c.name, t.c.hidden, counts)
            .select_from(t.join(counts, counts.c.person_id == t.c.id))
            .where(counts.c.faces >= min_faces)
        )
        if not hidden:
            query = query.where(t.c.hidden.is_(sa.false()))
        if named is not None:
            query = query.where(t.c.name.is_not(None) if named else t.c.name.is_(None))
        if ids is not None:
            query = query.where(t.c.id.in_([int(i) for i in ids][:_CHUNK]))
        query = query.order_by(counts.c.faces.desc(), t.c.id).limit(limit).offset(offset)
        out: list[dict[str, Any]] = []
        with self._db.connect() as c:
            rows = c.execute(query).mappings().all()
            for row in rows:
                person = int(row["id"])
                sources = c.execute(
                    sa.select(src.c.name)
                    .distinct()
                    .select_from(
                        f.join(p, f.c.photo_id == p.c.id).join(src, p.c.source_id == src.c.id)
                    )
                    .where(live, f.c.person_id == person)
                    .order_by(src.c.name)
                ).scalars()
                cover = c.execute(
                    sa.select(f.c.id)
                    .where(live, f.c.person_id == person)
                    .order_by(f.c.quality.desc(), f.c.id)
                    .limit(1)
                ).scalar()
                out.append(
                    {
                        "id": person,
                        "name": row["name"],
                        "hidden": bool(row["hidden"]),
                        "faces": int(row["faces"]),
                        "photos": int(row["photos"]),
                        "sources": list(sources),
                        "first_seen": iso_utc(row["first_seen"]),
                        "last_seen": iso_utc(row["last_seen"]),
                        "cover_face_id": None if cover is None else int(cover),
                    }
                )
        return out

    def person_record(self, person: int, *, space: EmbeddingSpace) -> dict[str, Any]:
        """One person (as :meth:`list_persons` has it, whatever its size) and its faces:
        id, photo, box, quality, source, pinned."""
        found = self.list_persons(space=space, min_faces=0, hidden=True, ids=[person], limit=1)
        with self._db.connect() as c:
            if not found:
                row = c.execute(sa.select(s.persons).where(s.persons.c.id == person)).first()
                if row is None:
                    raise NotFound(f"no person {person}")
                found = [
                    {
                        "id": person,
                        "name": row.name,
                        "hidden": bool(row.hidden),
                        "faces": 0,
                        "photos": 0,
                        "sources": [],
                        "first_seen": None,
                        "last_seen": None,
                        "cover_face_id": None,
                    }
                ]
            f, p, src = s.faces, s.photos, s.sources
            rows = c.execute(
                sa.select(
                    f.c.id,
                    f.c.photo_id,
                    p.c.uri,
                    src.c.name,
                    f.c.x1,
                    f.c.y1,
                    f.c.x2,
                    f.c.y2,
                    f.c.quality,
                    f.c.person_pinned,
                    p.c.ingested_at,
                )
                .select_from(f.join(p, f.c.photo_id == p.c.id).join(src, p.c.source_id == src.c.id))
                .where(
                    f.c.person_id == person,
                    f.c.space_id == self.space_id(space),
                    f.c.skip_reason.is_(None),
                )
                .order_by(f.c.id)
            ).all()
        record = dict(found[0])
        record["face_list"] = [
            {
                "face_id": int(r[0]),
                "photo_id": int(r[1]),
                "uri": r[2],
                "source": r[3],
                "box": [int(r[4]), int(r[5]), int(r[6]), int(r[7])],
                "quality": round(float(r[8]), 4),
                "pinned": bool(r[9]),
                "ingested_at": iso_utc(r[10]),
            }
            for r in rows
        ]
        return record

    def person_counts(
        self, space: EmbeddingSpace, *, conn: sa.Connection | None = None
    ) -> dict[str, int]:
        """Faces assigned to a person and unassigned, among the indexed faces of ``space``."""
        f = s.faces
        live = sa.and_(f.c.space_id == self.space_id(space), f.c.skip_reason.is_(None))
        with self._using(conn) as c:
            assigned = c.execute(
                sa.select(sa.func.count()).where(live, f.c.person_id.is_not(None))
            ).scalar()
            total = c.execute(sa.select(sa.func.count()).where(live)).scalar()
        return {"assigned": int(assigned or 0), "unassigned": int((total or 0) - (assigned or 0))}

    def faces_persons(self, face_ids: Sequence[int]) -> dict[int, int | None]:
        """Each face's person (None: unassigned); unknown faces are absent."""
        f = s.faces
        out: dict[int, int | None] = {}
        with self._db.connect() as c:
            for chunk in _chunks(list(face_ids)):
                for i, p in c.execute(sa.select(f.c.id, f.c.person_id).where(f.c.id.in_(chunk))):
                    out[int(i)] = None if p is None else int(p)
        return out

    def faces_with_photos(self, space: EmbeddingSpace) -> list[tuple[int, str, int | None]]:
        """Every indexed face of ``space``: its id, its photo's SHA-256 and its person."""
        f, p = s.faces, s.photos
        with self._db.connect() as c:
            rows = c.execute(
                sa.select(f.c.id, p.c.sha256, f.c.person_id)
                .select_from(f.join(p, f.c.photo_id == p.c.id))
                .where(f.c.space_id == self.space_id(space), f.c.skip_reason.is_(None))
                .order_by(f.c.id)
            ).all()
        return [(int(i), str(d), None if q is None else int(q)) for i, d, q in rows]

    def photo_regions(
        self, space: EmbeddingSpace, *, sha256: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Stored photos (all, or those with these SHA-256) with every indexed face of
        ``space``: id, uri, sha256, width, height and ``faces`` (face id, box, person, name)."""
        f, p, t = s.faces, s.photos, s.persons
        query = (
            sa.select(
                p.c.id,
                p.c.uri,
                p.c.sha256,
                p.c.width,
                p.c.height,
                f.c.id,
                f.c.x1,
                f.c.y1,
                f.c.x2,
                f.c.y2,
                f.c.person_id,
                t.c.name,
            )
            .select_from(f.join(p, f.c.photo_id == p.c.id).outerjoin(t, f.c.person_id == t.c.id))
            .where(f.c.space_id == self.space_id(space), f.c.skip_reason.is_(None))
            .order_by(p.c.id, f.c.id)
        )
        out: dict[int, dict[str, Any]] = {}
        with self._db.connect() as c:
            chunks = [None] if sha256 is None else list(_chunks_text(list(sha256)))
            for chunk in chunks:
                q = query if chunk is None else query.where(p.c.sha256.in_(chunk))
                for r in c.execute(q):
                    photo = out.setdefault(
                        int(r[0]),
                        {
                            "id": int(r[0]),
                            "uri": r[1],
                            "sha256": r[2],
                            "width": int(r[3]),
                            "height": int(r[4]),
                            "faces": [],
                        },
                    )
                    photo["faces"].append(
                        {
                            "face_id": int(r[5]),
                            "box": (int(r[6]), int(r[7]), int(r[8]), int(r[9])),
                            "person": None if r[10] is None else int(r[10]),
                            "name": r[11],
                        }
                    )
        return list(out.values())

    def person_named(self, name: str, *, conn: sa.Connection | None = None) -> int | None:
        """The person with exactly this name (the lowest id if several), or None."""
        t = s.persons
        with self._using(conn) as c:
            found = c.execute(
                sa.select(t.c.id).where(t.c.name == name).order_by(t.c.id).limit(1)
            ).scalar()
        return None if found is None else int(found)
