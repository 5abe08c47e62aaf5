"""The catalog's tables (SQLAlchemy Core) and its versioned migrations.

The catalog is the source of truth: every face keeps its embedding, so any vector index can
be rebuilt from it. Migrations are numbered, applied in order inside one transaction each,
and recorded in ``schema_migrations``; a database newer than this code is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

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
)
sa.Index("ix_photos_source", photos.c.source_id)

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
)
sa.Index("ix_faces_photo", faces.c.photo_id)
sa.Index("ix_faces_space_live", faces.c.space_id, faces.c.skip_reason)


def _v1_initial(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[sources, spaces, photos, faces])


Migration = tuple[int, str, Callable[[sa.Connection], None]]

# Append only: a released migration is never edited, a new one gets the next number.
MIGRATIONS: list[Migration] = [
    (1, "sources, spaces, photos, faces", _v1_initial),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
