"""The catalog's tables (SQLAlchemy Core) and its versioned migrations.

The catalog is the source of truth: every face keeps its embedding, so any vector index can
be rebuilt from it. Migrations are numbered, applied in order inside one transaction each,
and recorded in ``schema_migrations``; a database newer than this code is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from countenance.errors import InvalidArgument

LAWFUL_BASES = (
    "consent",
    "contract",
    "legal_obligation",
    "vital_interest",
    "public_task",
    "legitimate_interest",
)

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("lawful_basis", sa.String(40), nullable=False),
    sa.Column("jurisdiction", sa.String(10)),
    sa.Column("consent_ref", sa.Text),
    sa.Column("licence", sa.Text),
    sa.Column("retention_days", sa.Integer),
    # a retired source keeps its row (the audit log names it) but holds no photos
    sa.Column("retired_at", sa.DateTime(timezone=True)),
    # declared to contain minors: its photos are recorded, their faces never stored
    sa.Column("minors", sa.Boolean, nullable=False, server_default=sa.false()),
    # the operator declares it holds no minors: its faces are not age-estimated
    sa.Column("adults_only", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        "lawful_basis IN (" + ", ".join(f"'{b}'" for b in LAWFUL_BASES) + ")",
        name="ck_sources_lawful_basis",
    ),
)

spaces = sa.Table(
    "spaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("version", sa.String(40), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(20), nullable=False),
    # active: the space searches use (one at a time); building: being filled by a model
    # switch (countenance models use); NULL: neither (migration 7)
    sa.Column("state", sa.String(10)),
    sa.UniqueConstraint("model", "version", "dim", "metric", name="uq_spaces"),
)

photos = sa.Table(
    "photos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("page_url", sa.Text),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("format", sa.String(10), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("n_faces", sa.Integer, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    # ISO 3166 code where the photo was taken: an override, EXIF GPS, or the source's
    sa.Column("jurisdiction", sa.String(10)),
    sa.Column("minors", sa.Boolean, nullable=False, server_default=sa.false()),
    # per-photo provenance a manifest may state (migration 6)
    sa.Column("licence", sa.Text),
    sa.Column("consent_ref", sa.Text),
    sa.Column("taken_at", sa.String(40)),  # ISO 8601 as stated
    # 64-bit perceptual hash (signed) and its four 16-bit bands, indexed for the lookup of
    # near-duplicates (see countenance.neardup)
    sa.Column("phash", sa.BigInteger),
    *(sa.Column(f"phash_b{i}", sa.Integer) for i in range(4)),
    sa.Column("phash_rgb", sa.LargeBinary),  # 4 x 4 RGB thumbnail confirming a hash match
    # a near-duplicate of this stored photo: no faces of its own; it goes when its original
    # goes (a copy never outlives what it copies, see countenance.catalog.collect)
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE")),
    sqlite_autoincrement=True,
)
sa.Index("ix_photos_source", photos.c.source_id)
sa.Index("ix_photos_jurisdiction", photos.c.jurisdiction)
sa.Index("ix_photos_expires", photos.c.expires_at)
for _i in range(4):
    sa.Index(f"ix_photos_phash_b{_i}", photos.c[f"phash_b{_i}"])
sa.Index("ix_photos_duplicate_of", photos.c.duplicate_of)

faces = sa.Table(
    "faces",
    metadata,
    # FAISS ids are int64; face ids are these row ids
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("space_id", sa.Integer, sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("x1", sa.Integer, nullable=False),
    sa.Column("y1", sa.Integer, nullable=False),
    sa.Column("x2", sa.Integer, nullable=False),
    sa.Column("y2", sa.Integer, nullable=False),
    sa.Column("landmarks", sa.JSON),
    sa.Column("detector", sa.String(40), nullable=False),
    sa.Column("det_score", sa.Float, nullable=False),
    sa.Column("quality", sa.Float, nullable=False),
    sa.Column("sharpness", sa.Float, nullable=False),
    # set when the face was not indexed (too_small, blurry, ...); then embedding is NULL
    sa.Column("skip_reason", sa.String(40)),
    sa.Column("embedding", sa.LargeBinary),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    # the person the face belongs to (countenance.people), NULL: unassigned (migration 10)
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="SET NULL")),
    # placed there by a person (named, merged, split): clustering never moves it
    sa.Column("person_pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    # an erased face's id is never given to another face: the audit log names face ids
    sqlite_autoincrement=True,
)
sa.Index("ix_faces_photo", faces.c.photo_id)
sa.Index("ix_faces_person", faces.c.person_id)
sa.Index("ix_faces_space_live", faces.c.space_id, faces.c.skip_reason)


# Persons (countenance.people): groups of faces believed to be one person, formed by
# clustering; a name is given by a person and survives re-clustering and model switches.
persons = sa.Table(
    "persons",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

# "This face is not this person": clustering never puts the face back in the person.
person_rejects = sa.Table(
    "person_rejects",
    metadata,
    sa.Column(
        "person_id",
        sa.Integer,
        sa.ForeignKey("persons.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "face_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("faces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)
sa.Index("ix_person_rejects_face", person_rejects.c.face_id)

# Two persons split apart by a person: clustering never merges them again (a < b).
persons_apart = sa.Table(
    "persons_apart",
    metadata,
    sa.Column("a", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("b", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True),
    sa.CheckConstraint("a < b", name="ck_persons_apart_order"),
)
sa.Index("ix_persons_apart_b", persons_apart.c.b)

# Watches: an investigator asks to be told when a person's face is ingested again. The
# template is kept until the watch expires, then purged with it.
watches = sa.Table(
    "watches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.Integer, sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("template", sa.LargeBinary, nullable=False),
    sa.Column("min_similarity", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("case_ref", sa.String(200)),
    sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="SET NULL")),
    sa.Column("probe_sha256", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)
sa.Index("ix_watches_expires", watches.c.expires_at)

# Alerts: a face ingested after a watch began that matches its template.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "watch_id", sa.Integer, sa.ForeignKey("watches.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "face_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        # an erased (or expired) face takes its alerts with it
        sa.ForeignKey("faces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("photo_sha256", sa.String(64), nullable=False),
    sa.Column("similarity", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),  # the webhook answered 2xx
    sa.Column("delivery_error", sa.Text),
    sqlite_autoincrement=True,
)
sa.Index("ix_alerts_watch", alerts.c.watch_id)


# Append-only and hash-chained: each event holds the hash of the one before (see
# countenance.catalog.chain). Rows are never updated or deleted by countenance.
audit_events = sa.Table(
    "audit_events",
    metadata,
    # ids must grow with seq: verify reads a smaller id after a larger one as rows swapped
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, unique=True),  # 1, 2, 3 ... no gaps
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("purpose", sa.Text),
    sa.Column("case_ref", sa.String(200)),
    sa.Column("probe_sha256", sa.String(64)),
    sa.Column("details", sa.JSON),
    sa.Column("result_face_ids", sa.JSON),
    sa.Column("prev_hash", sa.String(64), nullable=False),  # 64 zeros before event 1
    sa.Column("hash", sa.String(64), nullable=False),
)
sa.Index("ix_audit_events_at", audit_events.c.at)
sa.Index("ix_audit_events_actor", audit_events.c.actor)

# One row (id 1): seq and hash of the latest event, written in the same transaction as each
# append. It anchors the chain's end, so that removing the last events is detected too, and
# its row lock serialises concurrent appenders.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
)


exclusions = sa.Table(
    "exclusions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # a country (CA) or a subdivision (US-IL); a country covers its subdivisions
    sa.Column("code", sa.String(10), nullable=False, unique=True),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    # the template of a person who was erased or opted out: the only thing kept of them,
    # for the one purpose of refusing their faces at ingest and in search results
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("space_id", sa.Integer, sa.ForeignKey("spaces.id"), nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
    sa.Column("min_similarity", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# API keys (countenance.catalog.keys): only a SHA-256 of each key is kept; the name is the
# audit actor of every request made with it.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)


# Searches' rate-limit slots: a search reserves one before it runs (countenance.governance.policy),
# so concurrent searches cannot all pass a limit that counts finished ones.
rate_slots = sa.Table(
    "rate_slots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_rate_slots_actor_at", "actor", "at"),
)


# What each URL answered when last fetched, so a re-run asks only for what changed
# (If-None-Match / If-Modified-Since). Keyed by the URL as the source named it.
fetch_cache = sa.Table(
    "fetch_cache",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("url_sha256", sa.String(64), nullable=False, unique=True),  # URLs can be long
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("sha256", sa.String(64)),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)


TEXT_LIMIT = 8192  # characters of an unsized text column (a URI, a reference, a reason)


def check_text(table: sa.Table, values: Mapping[str, Any]) -> None:
    """Refuse a string longer than its column (an unsized one: ``TEXT_LIMIT``), holding a NUL
    character, or not encodable as UTF-8 (a lone surrogate).

    PostgreSQL refuses the first three (a DataError mid-transaction), SQLite stores them:
    checked here, both backends refuse them alike and before any write.
    """
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise InvalidArgument(f"{name} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{name} is not valid text (a lone surrogate)") from None
        length = getattr(table.c[name].type, "length", None) or TEXT_LIMIT
        if len(value) > length:
            raise InvalidArgument(f"{name} must have at most {length} characters")


def _v1_initial(conn: sa.Connection) -> None:
    # persons first: faces refer to them (migration 10 adds them to older databases)
    metadata.create_all(conn, tables=[sources, spaces, photos, persons, faces])


def _v2_audit(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[audit_events, audit_head])
    conn.execute(audit_head.insert().values(id=1, seq=0, hash="0" * 64))


def _add_columns(conn: sa.Connection, table: sa.Table, *names: str) -> None:
    """ALTER TABLE ... ADD COLUMN for each of ``names`` the table lacks.

    Migration 1 creates tables from their current definitions, so a database created after a
    column was added already has it; older databases get it here.
    """
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"
        default = column.server_default
        if isinstance(default, sa.DefaultClause) and isinstance(default.arg, sa.ClauseElement):
            ddl += f" DEFAULT {default.arg.compile(dialect=conn.dialect)}"
        if not column.nullable:
            ddl += " NOT NULL"
        conn.execute(sa.text(ddl))


def _v3_retention(conn: sa.Connection) -> None:
    _add_columns(conn, sources, "retired_at")
    _add_columns(conn, photos, "expires_at")
    for index in photos.indexes:
        if index.name == "ix_photos_expires":
            index.create(conn, checkfirst=True)


def _v4_governance(conn: sa.Connection) -> None:
    _add_columns(conn, sources, "minors")
    _add_columns(conn, photos, "jurisdiction", "minors")
    for index in photos.indexes:
        if index.name == "ix_photos_jurisdiction":
            index.create(conn, checkfirst=True)
    metadata.create_all(conn, tables=[exclusions, suppressions])


def _v5_api_keys(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[api_keys])


def _v6_collect(conn: sa.Connection) -> None:
    _add_columns(
        conn, photos, "licence", "consent_ref", "taken_at", "phash", "phash_b0", "phash_b1"
    )
    _add_columns(conn, photos, "phash_b2", "phash_b3", "phash_rgb")
    present = {c["name"] for c in sa.inspect(conn).get_columns("photos")}
    if "duplicate_of" not in present:
        # by hand: _add_columns writes no REFERENCES clause, and the cascade is the point
        # (SQLite allows REFERENCES in ADD COLUMN when the default is NULL)
        conn.execute(
            sa.text(
                "ALTER TABLE photos ADD COLUMN duplicate_of INTEGER"
                " REFERENCES photos (id) ON DELETE CASCADE"
            )
        )
    for index in photos.indexes:
        if index.name and (
            index.name.startswith("ix_photos_phash") or index.name == "ix_photos_duplicate_of"
        ):
            index.create(conn, checkfirst=True)
    metadata.create_all(conn, tables=[fetch_cache])


def _v7_space_state(conn: sa.Connection) -> None:
    _add_columns(conn, spaces, "state")


def _v8_adults_only(conn: sa.Connection) -> None:
    _add_columns(conn, sources, "adults_only")


def _v9_rate_slots(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[rate_slots])


def _v10_people(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[persons, person_rejects, persons_apart, watches, alerts])
    present = {c["name"] for c in sa.inspect(conn).get_columns("faces")}
    if "person_id" not in present:  # with its foreign key, which _add_columns does not write
        conn.execute(
            sa.text(
                "ALTER TABLE faces ADD COLUMN person_id INTEGER"
                " REFERENCES persons(id) ON DELETE SET NULL"
            )
        )
    _add_columns(conn, faces, "person_pinned")
    for index in faces.indexes:
        if index.name == "ix_faces_person":
            index.create(conn, checkfirst=True)


Migration = tuple[int, str, Callable[[sa.Connection], None]]

# Append only: a released migration is never edited, a new one gets the next number.
MIGRATIONS: list[Migration] = [
    (1, "sources, spaces, photos, faces", _v1_initial),
    (2, "audit log", _v2_audit),
    (3, "source retirement, photo expiry", _v3_retention),
    (4, "jurisdictions, exclusions, suppressions, minors", _v4_governance),
    (5, "api keys", _v5_api_keys),
    (6, "photo provenance, perceptual hashes, near-duplicates, fetch cache", _v6_collect),
    (7, "the active space, and one being built by a model switch", _v7_space_state),
    (8, "sources declared to hold no minors", _v8_adults_only),
    (9, "search rate-limit slots, reserved before a search runs", _v9_rate_slots),
    (10, "persons, their names and splits; watches and alerts", _v10_people),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
