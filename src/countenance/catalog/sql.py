"""The SQL catalog over SQLAlchemy Core.

Example::

    catalog = SqlCatalog.open("sqlite:///data/catalog.db")
    catalog.add_source(SourceInfo("family", lawful_basis="consent"))
    print(catalog.counts())
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from countenance.catalog import collect, spaces
from countenance.catalog import schema as s
from countenance.catalog.audit import AuditLog
from countenance.catalog.governance import GovernanceCatalog, as_utc, iso_utc
from countenance.catalog.keys import KeyStore
from countenance.catalog.people import PeopleCatalog
from countenance.catalog.spaces import SwitchCatalog
from countenance.catalog.views import ViewCatalog
from countenance.catalog.watches import WatchCatalog
from countenance.errors import BackendError, InvalidArgument, NotFound, PolicyDenied
from countenance.neardup import Signature
from countenance.ports import Ids, Vectors
from countenance.types import (
    Box,
    EmbeddingSpace,
    Landmarks5,
    Metric,
    Provenance,
    SourceInfo,
    retention_days,
    source_name,
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class FaceRecord:
    """A face about to be stored; ``embedding`` is None when ``skip_reason`` is set."""

    box: Box
    landmarks: Landmarks5 | None
    detector: str
    det_score: float
    quality: float
    sharpness: float
    skip_reason: str | None
    embedding: Vectors | None


@dataclass(frozen=True, slots=True)
class PhotoRecord:
    """A photo about to be stored with its faces."""

    sha256: str
    provenance: Provenance
    width: int
    height: int
    format: str
    bytes: int
    faces: tuple[FaceRecord, ...]
    jurisdiction: str | None = None
    minors: bool = False
    signature: Signature | None = None  # perceptual hash and thumbnail (countenance.neardup)
    duplicate_of: int | None = None  # id of the stored photo this one nearly duplicates


@dataclass(frozen=True, slots=True)
class FaceRow:
    """What search needs to show about a stored face."""

    face_id: int
    photo_id: int
    photo_uri: str
    page_url: str | None
    source: str
    box: Box


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the single writer; NORMAL is durable at each checkpoint
    # and cannot corrupt the database on a crash (at worst the last commits roll back).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
    # Datetimes are read back in the session's zone, which is the server's unless set, and
    # naive ones are taken in it; UTC makes both what they are on SQLite (naive = UTC).
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    cur = dbapi_conn.cursor()
    cur.execute("SET TIME ZONE 'UTC'")
    cur.close()
    dbapi_conn.autocommit = autocommit


class SqlCatalog(GovernanceCatalog, SwitchCatalog, ViewCatalog, PeopleCatalog, WatchCatalog):
    """Sources, photos and faces in one SQL database, with real transactions.

    It is the only holder of the database: every statement runs in one of its methods (or
    those of the audit log, key store and fetch cache it hands out). A write takes an
    optional ``conn`` to run inside an open :meth:`transaction`.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._db = engine
        self._space_ids: dict[EmbeddingSpace, int] = {}

    @classmethod
    def open(cls, url: str) -> SqlCatalog:
        """Connect to ``url`` and bring its schema up to date."""
        try:
            engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise BackendError(f"cannot open catalog {url!r}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        elif engine.dialect.name == "postgresql":
            sa.event.listen(engine, "connect", _postgres_session)
        catalog = cls(engine)
        catalog.migrate()
        return catalog

    @classmethod
    def sqlite(cls, path: Path) -> SqlCatalog:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls.open(f"sqlite:///{path}")

    def close(self) -> None:
        self._db.dispose()

    def audit_log(self) -> AuditLog:
        """The hash-chained audit log kept in this catalog's database.

        Example: ``catalog.audit_log().verify().ok``.
        """
        return AuditLog(self._db)

    def key_store(self, audit: AuditLog | None = None) -> KeyStore:
        """The server's API keys, kept in this catalog's database; creating and revoking a
        key is recorded in ``audit`` (by default this catalog's audit log).

        Example: ``key, info = catalog.key_store(audit).create("alice", "investigator",
        actor="admin")``.
        """
        return KeyStore(self._db, audit if audit is not None else self.audit_log())

    # schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._db.connect() as conn:
            if not sa.inspect(conn).has_table("schema_migrations"):
                return 0
            version = conn.execute(sa.select(sa.func.max(s.schema_migrations.c.version)))
            return int(version.scalar() or 0)

    def migrate(self) -> int:
        """Apply every migration newer than the database; returns the version reached."""
        try:
            with self._db.begin() as conn:
                s.metadata.create_all(conn, tables=[s.schema_migrations])
            current = self.schema_version()
            if current > s.SCHEMA_VERSION:
                raise BackendError(
                    f"catalog schema version {current} is newer than this countenance "
                    f"({s.SCHEMA_VERSION}); upgrade countenance"
                )
            for version, name, apply in s.MIGRATIONS:
                if version <= current:
                    continue
                with self._db.begin() as conn:
                    apply(conn)
                    conn.execute(
                        s.schema_migrations.insert().values(
                            version=version, name=name, applied_at=utcnow()
                        )
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise BackendError(f"catalog migration failed: {exc}") from exc
        return s.SCHEMA_VERSION

    # sources ------------------------------------------------------------------------------

    def add_source(self, info: SourceInfo, *, conn: sa.Connection | None = None) -> SourceInfo:
        """Declare a source. Refused without one of the lawful bases in LAWFUL_BASES, with a
        name that is not a :func:`~countenance.types.source_name`, or a retention out of
        range; a name differing from another only in case is taken for that other."""
        source_name(info.name)
        retention_days(info.retention_days)
        if info.lawful_basis not in s.LAWFUL_BASES:
            raise PolicyDenied(
                f"source {info.name!r} must declare a lawful basis, one of: "
                + ", ".join(s.LAWFUL_BASES)
            )
        if info.minors and info.adults_only:
            raise InvalidArgument("a source cannot both hold minors and declare it holds none")
        values = {
            "name": info.name,
            "kind": info.kind,
            "lawful_basis": info.lawful_basis,
            "jurisdiction": info.jurisdiction,
            "consent_ref": info.consent_ref,
            "licence": info.licence,
            "retention_days": info.retention_days,
            "minors": info.minors,
            "adults_only": info.adults_only,
            "created_at": utcnow(),
        }
        s.check_text(s.sources, values)
        t = s.sources
        with self._writing(conn) as c:
            same = sa.func.lower(t.c.name) == info.name.lower()
            existing = c.execute(sa.select(t.c.name).where(same)).scalar()
            if existing is not None:
                raise InvalidArgument(f"source {existing!r} already exists")
            c.execute(t.insert().values(**values))
            return self._sources(c, name=info.name)[0]

    def get_source(self, name: str) -> SourceInfo:
        for info in self.list_sources(name=name):
            return info
        raise NotFound(f"no source named {name!r}; add it with `countenance sources add`")

    def list_sources(self, name: str | None = None) -> list[SourceInfo]:
        with self._db.connect() as conn:
            return self._sources(conn, name=name)

    def _sources(self, conn: sa.Connection, *, name: str | None = None) -> list[SourceInfo]:
        t, p, f = s.sources, s.photos, s.faces
        n_photos = sa.select(sa.func.count()).where(p.c.source_id == t.c.id).scalar_subquery()
        n_faces = (
            sa.select(sa.func.count())
            .select_from(f.join(p, f.c.photo_id == p.c.id))
            .where(p.c.source_id == t.c.id, f.c.skip_reason.is_(None))
            .scalar_subquery()
        )
        query = sa.select(t, n_photos.label("n_photos"), n_faces.label("n_faces")).order_by(
            t.c.name
        )
        if name is not None:
            query = query.where(t.c.name == name)
        rows = conn.execute(query).mappings().all()
        return [
            SourceInfo(
                name=r["name"],
                lawful_basis=r["lawful_basis"],
                kind=r["kind"],
                jurisdiction=r["jurisdiction"],
                consent_ref=r["consent_ref"],
                licence=r["licence"],
                retention_days=r["retention_days"],
                created_at=iso_utc(r["created_at"]),
                retired_at=iso_utc(r["retired_at"]),
                minors=bool(r["minors"]),
                adults_only=bool(r["adults_only"]),
                id=r["id"],
                photos=r["n_photos"],
                faces=r["n_faces"],
            )
            for r in rows
        ]

    # spaces -------------------------------------------------------------------------------

    def space_id(self, space: EmbeddingSpace) -> int:
        """The row id of ``space``, created on first use."""
        if space in self._space_ids:
            return self._space_ids[space]
        key = {
            "model": space.model,
            "version": space.version,
            "dim": space.dim,
            "metric": space.metric.value,
        }
        t = s.spaces
        s.check_text(t, key)
        where = sa.and_(*(t.c[k] == v for k, v in key.items()))
        with self._db.begin() as conn:
            found = conn.execute(sa.select(t.c.id).where(where)).scalar()
            if found is None:
                found = _pk(conn.execute(t.insert().values(**key)))
        self._space_ids[space] = int(found)
        return int(found)

    def current_space(self) -> EmbeddingSpace | None:
        """The space searches use (see :func:`countenance.catalog.spaces.active_space`)."""
        return spaces.active_space(self._db)

    def activate(self, space: EmbeddingSpace) -> None:
        """Mark ``space`` the one searches use (a new store's, or after a switch)."""
        space_id = self.space_id(space)
        with self._db.begin() as conn:
            spaces.mark(conn, space_id, spaces.ACTIVE)

    def spaces(self) -> list[EmbeddingSpace]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(s.spaces)).mappings().all()
        return [
            EmbeddingSpace(r["model"], r["version"], r["dim"], Metric(r["metric"])) for r in rows
        ]

    # photos and faces -----------------------------------------------------------------------

    def known_sha256(self, digests: Iterable[str]) -> set[str]:
        """Which of ``digests`` are already stored."""
        wanted = list(set(digests))
        found: set[str] = set()
        with self._db.connect() as conn:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                rows = conn.execute(
                    sa.select(s.photos.c.sha256).where(s.photos.c.sha256.in_(chunk))
                )
                found.update(r[0] for r in rows)
        return found

    def add_photo(
        self,
        source_id: int,
        space: EmbeddingSpace,
        photo: PhotoRecord,
        expires_at: dt.datetime | None = None,
        *,
        conn: sa.Connection | None = None,
    ) -> list[int] | None:
        """Store a photo and its faces (in ``conn``'s transaction, or one of its own);
        returns the ids of the faces to index, or None when a photo with these bytes is
        already stored."""
        space_id = self.space_id(space)
        now = utcnow()
        values = {
            "source_id": source_id,
            "sha256": photo.sha256,
            "uri": photo.provenance.uri,
            "page_url": photo.provenance.page_url,
            "width": photo.width,
            "height": photo.height,
            "format": photo.format,
            "bytes": photo.bytes,
            "n_faces": len(photo.faces),
            "ingested_at": now,
            # SQLite keeps a datetime's wall time and drops its zone: store UTC everywhere
            "expires_at": None if expires_at is None else as_utc(expires_at),
            "jurisdiction": photo.jurisdiction,
            "minors": photo.minors,
            **collect.photo_extras(photo),
        }
        s.check_text(s.photos, values)
        try:
            with self._writing(conn) as c:
                known = sa.select(s.photos.c.id).where(s.photos.c.sha256 == photo.sha256)
                if c.execute(known).first() is not None:  # a failed insert would end c's tx
                    return None
                photo_id = _pk(c.execute(s.photos.insert().values(**values)))
                rows = []
                for face in photo.faces:
                    if face.embedding is not None and face.embedding.shape != (space.dim,):
                        raise InvalidArgument(
                            f"embedding of shape {face.embedding.shape} is not in {space.key}"
                        )
                    row = spaces.face_row(photo_id, space_id, face, now, values["expires_at"])
                    s.check_text(s.faces, row)
                    rows.append(row)
                # one multi-row INSERT ... RETURNING for all the photo's faces, ids in order
                insert = s.faces.insert().returning(s.faces.c.id, sort_by_parameter_order=True)
                face_ids = c.execute(insert, rows).scalars().all() if rows else []
                indexed = [
                    int(face_id)
                    for face_id, face in zip(face_ids, photo.faces, strict=True)
                    if face.skip_reason is None and face.embedding is not None
                ]
        except sa.exc.IntegrityError as exc:
            # only the driver's message, not the statement (which names sha256 too)
            reason = str(exc.orig).lower()
            if "sha256" in reason and ("unique" in reason or "duplicate" in reason):
                return None
            raise BackendError(f"catalog write failed: {exc.orig}") from exc
        return indexed

    def _live(self, space_id: int) -> sa.ColumnElement[bool]:
        f = s.faces
        return sa.and_(
            f.c.space_id == space_id, f.c.skip_reason.is_(None), f.c.embedding.is_not(None)
        )

    def live_face_ids(self, space: EmbeddingSpace) -> Ids:
        """Ids of every face that should be in the vector index of ``space``."""
        query = sa.select(s.faces.c.id).where(self._live(self.space_id(space)))
        with self._db.connect() as conn:
            ids = conn.execute(query).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def embeddings(
        self, space: EmbeddingSpace, ids: Ids | None = None, batch: int = 20_000
    ) -> Iterator[tuple[Ids, Vectors]]:
        """The stored vectors of live faces (all, or those in ``ids``), in batches."""
        f = s.faces
        live = self._live(self.space_id(space))
        if ids is not None:
            wanted = [int(i) for i in ids]
            for i in range(0, len(wanted), 900):
                yield from self._embedding_rows(
                    sa.select(f.c.id, f.c.embedding).where(live, f.c.id.in_(wanted[i : i + 900])),
                    space,
                )
            return
        last = 0
        while True:
            query = (
                sa.select(f.c.id, f.c.embedding)
                .where(live, f.c.id > last)
                .order_by(f.c.id)
                .limit(batch)
            )
            got = list(self._embedding_rows(query, space))
            if not got:
                return
            yield got[0]
            last = int(got[0][0][-1])

    def _embedding_rows(
        self, query: sa.Select[Any], space: EmbeddingSpace
    ) -> Iterator[tuple[Ids, Vectors]]:
        with self._db.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(-1, space.dim)
        yield ids, vectors.astype(np.float32)

    def face_rows(self, face_ids: Iterable[int]) -> dict[int, FaceRow]:
        """Photo, source and box of each live face in ``face_ids`` (unknown ids are absent)."""
        f, p, t = s.faces, s.photos, s.sources
        wanted = [int(i) for i in face_ids]
        out: dict[int, FaceRow] = {}
        with self._db.connect() as conn:
            for i in range(0, len(wanted), 900):
                query = (
                    sa.select(
                        f.c.id,
                        f.c.photo_id,
                        p.c.uri,
                        p.c.page_url,
                        t.c.name,
                        f.c.x1,
                        f.c.y1,
                        f.c.x2,
                        f.c.y2,
                    )
                    .select_from(f.join(p, f.c.photo_id == p.c.id).join(t, p.c.source_id == t.c.id))
                    .where(f.c.id.in_(wanted[i : i + 900]), f.c.skip_reason.is_(None))
                )
                for r in conn.execute(query):
                    out[int(r[0])] = FaceRow(
                        int(r[0]), int(r[1]), r[2], r[3], r[4], Box(r[5], r[6], r[7], r[8])
                    )
        return out

    def principal_faces(
        self, space: EmbeddingSpace, digests: Iterable[str]
    ) -> dict[str, tuple[int, Vectors]]:
        """For each photo (by SHA-256), its principal indexed face, ``(face_id, vector)``, by
        the rule of :meth:`Box.principal_key` (largest whole face, else largest face).

        Photos with no indexed face are absent.
        """
        f, p = s.faces, s.photos
        wanted = list(set(digests))
        best: dict[str, tuple[tuple[bool, int], int, bytes]] = {}
        with self._db.connect() as conn:
            for i in range(0, len(wanted), 900):
                query = (
                    sa.select(
                        p.c.sha256,
                        p.c.width,
                        p.c.height,
                        f.c.id,
                        f.c.x1,
                        f.c.y1,
                        f.c.x2,
                        f.c.y2,
                        f.c.embedding,
                    )
                    .select_from(f.join(p, f.c.photo_id == p.c.id))
                    .where(p.c.sha256.in_(wanted[i : i + 900]), self._live(self.space_id(space)))
                )
                for digest, w, h, face_id, x1, y1, x2, y2, blob in conn.execute(query):
                    key = Box(x1, y1, x2, y2).principal_key(w, h)
                    if digest not in best or key > best[digest][0]:
                        best[digest] = (key, int(face_id), blob)
        return {
            d: (fid, np.frombuffer(blob, dtype="<f4").astype(np.float32))
            for d, (_, fid, blob) in best.items()
        }

    def any_expired(self, at: dt.datetime) -> bool:
        """Whether any photo's retention has ended by ``at``."""
        p = s.photos
        query = sa.select(p.c.id).where(p.c.expires_at.is_not(None), p.c.expires_at <= as_utc(at))
        with self._db.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def delete_photos(
        self,
        *,
        source_id: int | None = None,
        expired_at: dt.datetime | None = None,
        conn: sa.Connection | None = None,
    ) -> tuple[int, Ids]:
        """Delete the photos of a source, or those expired at ``expired_at``, with their
        faces, in one transaction; returns (photos deleted, ids of their faces)."""
        p, f = s.photos, s.faces
        if (source_id is None) == (expired_at is None):
            raise InvalidArgument("delete_photos needs exactly one of source_id, expired_at")
        if expired_at is not None:
            where = sa.and_(p.c.expires_at.is_not(None), p.c.expires_at <= as_utc(expired_at))
        else:
            where = p.c.source_id == source_id
        with self._writing(conn) as c:
            photo_ids = c.execute(sa.select(p.c.id).where(where)).scalars().all()
            face_ids: list[int] = []
            for i in range(0, len(photo_ids), 900):
                chunk = photo_ids[i : i + 900]
                face_ids += (
                    c.execute(sa.select(f.c.id).where(f.c.photo_id.in_(chunk))).scalars().all()
                )
                c.execute(f.delete().where(f.c.photo_id.in_(chunk)))
                c.execute(p.delete().where(p.c.id.in_(chunk)))
        return len(photo_ids), np.asarray(face_ids, dtype=np.int64)

    def copies_of(self, photo_ids: Iterable[int], *, limit: int | None) -> dict[int, list[str]]:
        """Where near-duplicates of each photo were found (see catalog.collect.copies_of)."""
        return collect.copies_of(self._db, photo_ids, limit=limit)

    def duplicate_count(self) -> int:
        return collect.duplicate_count(self._db)

    def near_duplicate_of(self, signature: Signature) -> int | None:
        return collect.near_duplicate_of(self._db, signature)

    def photo_id_of(self, sha256: str) -> int | None:
        return collect.photo_id_of(self._db, sha256)

    def fetch_cache(self) -> collect.FetchCache:
        """What the HTTP fetcher remembers of each URL it fetched (ETag, Last-Modified), so
        a re-run asks only for what changed (see :class:`countenance.catalog.collect.FetchCache`).

        Example: ``Fetcher.from_settings(settings, cache=catalog.fetch_cache())``.
        """
        return collect.FetchCache(self._db)

    def retire_source(self, name: str, *, conn: sa.Connection | None = None) -> None:
        """Mark a source retired: it takes no more photos. Its photos are deleted apart."""
        with self._writing(conn) as c:
            c.execute(
                s.sources.update().where(s.sources.c.name == name).values(retired_at=utcnow())
            )

    def counts(self) -> dict[str, int]:
        """Numbers of sources, photos, faces (indexable), skipped faces."""
        f = s.faces
        with self._db.connect() as conn:
            n_sources = conn.execute(sa.select(sa.func.count()).select_from(s.sources)).scalar()
            n_photos = conn.execute(sa.select(sa.func.count()).select_from(s.photos)).scalar()
            n_faces = conn.execute(
                sa.select(sa.func.count()).where(f.c.skip_reason.is_(None))
            ).scalar()
            n_skipped = conn.execute(
                sa.select(sa.func.count()).where(f.c.skip_reason.is_not(None))
            ).scalar()
        return {
            "sources": int(n_sources or 0),
            "photos": int(n_photos or 0),
            "faces": int(n_faces or 0),
            "skipped": int(n_skipped or 0),
        }

    def skipped_by_reason(self) -> dict[str, int]:
        f = s.faces
        query = (
            sa.select(f.c.skip_reason, sa.func.count())
            .where(f.c.skip_reason.is_not(None))
            .group_by(f.c.skip_reason)
        )
        with self._db.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(query)}


def _pk(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])
