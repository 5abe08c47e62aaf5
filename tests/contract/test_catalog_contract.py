"""The catalog contract: SqlCatalog on SQLite and on PostgreSQL, through the same code.

Every test runs once per backend (the ``catalog_url`` fixture), and a congruence test loads
the same photos into both and compares what they hand back. SQLite-only behaviour (pragmas)
is tested in tests/unit/test_catalog.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from countenance.catalog import schema
from countenance.catalog.governance import as_utc
from countenance.catalog.sql import FaceRecord, PhotoRecord, SqlCatalog
from countenance.errors import BackendError, InvalidArgument, NotFound, PolicyDenied
from countenance.types import Box, EmbeddingSpace, Landmarks5, Provenance, SourceInfo

SPACE = EmbeddingSpace("test", "1", 8)
DEFAULT_BOX = Box(0, 0, 50, 60)
DIM = SPACE.dim


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[SqlCatalog]:
    cat = SqlCatalog.open(catalog_url)
    yield cat
    cat.close()


@pytest.fixture
def source_id(catalog: SqlCatalog) -> int:
    info = catalog.add_source(SourceInfo("family", lawful_basis="consent"))
    assert info.id is not None
    return info.id


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def face(
    box: Box = DEFAULT_BOX,
    embedding: np.ndarray | None = None,
    skip_reason: str | None = None,
    landmarks: Landmarks5 | None = None,
) -> FaceRecord:
    return FaceRecord(
        box=box,
        landmarks=landmarks,
        detector="hog",
        det_score=0.9,
        quality=0.8,
        sharpness=10.0,
        skip_reason=skip_reason,
        embedding=embedding,
    )


def photo(
    name: str,
    faces: tuple[FaceRecord, ...],
    page_url: str | None = None,
    jurisdiction: str | None = None,
) -> PhotoRecord:
    return PhotoRecord(
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        provenance=Provenance(f"/photos/{name}.jpg", page_url),
        width=640,
        height=480,
        format="JPEG",
        bytes=12345,
        faces=faces,
        jurisdiction=jurisdiction,
    )


def count_rows(catalog: SqlCatalog, table: sa.Table) -> int:
    with catalog._db.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


# schema -------------------------------------------------------------------------------------


def test_migrate_brings_fresh_db_to_current_version(catalog_url: str) -> None:
    bare = SqlCatalog(sa.create_engine(catalog_url))
    try:
        assert bare.schema_version() == 0
        assert bare.migrate() == schema.SCHEMA_VERSION
        assert bare.schema_version() == schema.SCHEMA_VERSION
        with bare._db.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
        assert {"schema_migrations", "sources", "spaces", "photos", "faces"} <= tables
    finally:
        bare.close()


def test_migrate_twice_is_a_noop_with_one_row_per_migration(catalog: SqlCatalog) -> None:
    catalog.add_source(SourceInfo("keep", lawful_basis="consent"))
    assert catalog.migrate() == schema.SCHEMA_VERSION
    assert catalog.migrate() == schema.SCHEMA_VERSION
    with catalog._db.connect() as conn:
        rows = conn.execute(
            sa.select(schema.schema_migrations.c.version, schema.schema_migrations.c.name).order_by(
                schema.schema_migrations.c.version
            )
        ).all()
    assert [(v, n) for v, n in rows] == [(v, n) for v, n, _ in schema.MIGRATIONS]
    # the data survived: re-running migrations did not recreate tables
    assert catalog.get_source("keep").lawful_basis == "consent"


def test_newer_schema_is_refused_on_open(catalog_url: str) -> None:
    cat = SqlCatalog.open(catalog_url)
    with cat._db.begin() as conn:
        conn.execute(
            schema.schema_migrations.insert().values(
                version=schema.SCHEMA_VERSION + 1,
                name="from the future",
                applied_at=sa.func.current_timestamp(),
            )
        )
    cat.close()
    with pytest.raises(BackendError, match="newer"):
        SqlCatalog.open(catalog_url)


# sources ------------------------------------------------------------------------------------


@pytest.mark.parametrize("basis", schema.LAWFUL_BASES)
def test_add_source_with_each_lawful_basis(catalog: SqlCatalog, basis: str) -> None:
    info = catalog.add_source(
        SourceInfo(
            f"src-{basis}",
            lawful_basis=basis,
            jurisdiction="DE",
            consent_ref="form-1",
            licence="CC-BY",
            retention_days=30,
        )
    )
    assert info.id is not None
    assert (info.name, info.lawful_basis, info.kind) == (f"src-{basis}", basis, "folder")
    assert (info.jurisdiction, info.consent_ref, info.licence) == ("DE", "form-1", "CC-BY")
    assert info.retention_days == 30
    assert info.created_at is not None and info.created_at.endswith("+00:00")
    assert catalog.get_source(f"src-{basis}") == info


def test_six_lawful_bases() -> None:
    assert len(schema.LAWFUL_BASES) == 6
    assert "consent" in schema.LAWFUL_BASES


@pytest.mark.parametrize("basis", ["", "none", "Consent", "scraped", None])
def test_source_without_lawful_basis_is_denied_and_not_stored(
    catalog: SqlCatalog, basis: str | None
) -> None:
    with pytest.raises(PolicyDenied, match="lawful basis"):
        catalog.add_source(SourceInfo("nope", lawful_basis=basis))  # type: ignore[arg-type]
    assert count_rows(catalog, schema.sources) == 0
    with pytest.raises(NotFound):
        catalog.get_source("nope")


def test_db_check_constraint_refuses_invalid_basis(catalog: SqlCatalog) -> None:
    with pytest.raises(sa.exc.IntegrityError), catalog._db.begin() as conn:
        conn.execute(
            schema.sources.insert().values(
                name="raw",
                kind="folder",
                lawful_basis="scraped",
                created_at=sa.func.current_timestamp(),
            )
        )
    assert count_rows(catalog, schema.sources) == 0


def test_duplicate_source_name_is_invalid(catalog: SqlCatalog) -> None:
    catalog.add_source(SourceInfo("dup", lawful_basis="consent"))
    with pytest.raises(InvalidArgument, match="already exists"):
        catalog.add_source(SourceInfo("dup", lawful_basis="contract"))
    assert catalog.get_source("dup").lawful_basis == "consent"
    assert count_rows(catalog, schema.sources) == 1


@pytest.mark.parametrize("days", [0, -1])
def test_non_positive_retention_is_invalid(catalog: SqlCatalog, days: int) -> None:
    with pytest.raises(InvalidArgument, match="retention_days"):
        catalog.add_source(SourceInfo("r", lawful_basis="consent", retention_days=days))
    assert count_rows(catalog, schema.sources) == 0


@pytest.mark.parametrize("name", ["", "x" * 201])
def test_bad_source_name_is_invalid(catalog: SqlCatalog, name: str) -> None:
    with pytest.raises(InvalidArgument):
        catalog.add_source(SourceInfo(name, lawful_basis="consent"))
    assert count_rows(catalog, schema.sources) == 0


def test_get_unknown_source_is_not_found(catalog: SqlCatalog) -> None:
    with pytest.raises(NotFound, match="ghost"):
        catalog.get_source("ghost")


def test_list_sources_counts_photos_and_live_faces(catalog: SqlCatalog) -> None:
    a = catalog.add_source(SourceInfo("a", lawful_basis="consent"))
    catalog.add_source(SourceInfo("b", lawful_basis="contract"))
    v = unit_vectors(3)
    assert a.id is not None
    catalog.add_photo(a.id, SPACE, photo("p1", (face(embedding=v[0]), face(embedding=v[1]))))
    catalog.add_photo(
        a.id, SPACE, photo("p2", (face(embedding=v[2]), face(skip_reason="too_small")))
    )
    listed = catalog.list_sources()
    assert [s.name for s in listed] == ["a", "b"]
    assert (listed[0].photos, listed[0].faces) == (2, 3)
    assert (listed[1].photos, listed[1].faces) == (0, 0)
    assert catalog.get_source("a").faces == 3


# photos and faces ---------------------------------------------------------------------------


def test_add_photo_stores_photo_and_faces_and_returns_indexable_ids(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(2)
    marks = Landmarks5(((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0)))
    rec = photo(
        "p",
        (
            face(Box(0, 0, 10, 10), v[0], landmarks=marks),
            face(Box(20, 20, 25, 25), None, skip_reason="too_small"),
            face(Box(40, 40, 60, 60), v[1]),
        ),
    )
    ids = catalog.add_photo(source_id, SPACE, rec)
    assert ids is not None and len(ids) == 2
    assert catalog.known_sha256([rec.sha256, "0" * 64]) == {rec.sha256}
    assert count_rows(catalog, schema.photos) == 1
    assert count_rows(catalog, schema.faces) == 3
    with catalog._db.connect() as conn:
        rows = conn.execute(
            sa.select(
                schema.faces.c.id, schema.faces.c.skip_reason, schema.faces.c.landmarks
            ).order_by(schema.faces.c.id)
        ).all()
        n_faces = conn.execute(sa.select(schema.photos.c.n_faces)).scalar()
    assert n_faces == 3
    assert [r[0] for r in rows if r[1] is None] == ids
    assert rows[0][2] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]


def test_same_sha256_twice_returns_none_and_stores_nothing(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(3)
    assert catalog.add_photo(source_id, SPACE, photo("p", (face(embedding=v[0]),)))
    before = catalog.counts()
    again = photo("p", (face(embedding=v[1]), face(embedding=v[2])))
    assert catalog.add_photo(source_id, SPACE, again) is None
    assert catalog.counts() == before
    assert count_rows(catalog, schema.faces) == 1


@pytest.mark.parametrize("shape", [(DIM + 1,), (DIM - 1,), (1, DIM)])
def test_wrong_dimension_rolls_back_the_whole_photo(
    catalog: SqlCatalog, source_id: int, shape: tuple[int, ...]
) -> None:
    good = unit_vectors(1)[0]
    bad = np.ones(shape, dtype=np.float32)
    rec = photo("p", (face(embedding=good), face(embedding=bad)))
    with pytest.raises(InvalidArgument):
        catalog.add_photo(source_id, SPACE, rec)
    assert count_rows(catalog, schema.photos) == 0
    assert count_rows(catalog, schema.faces) == 0
    assert catalog.known_sha256([rec.sha256]) == set()
    # the same bytes can be stored once fixed: nothing half-written blocks them
    fixed = photo("p", (face(embedding=good),))
    assert catalog.add_photo(source_id, SPACE, fixed) is not None


def test_unknown_source_id_is_an_error_not_a_duplicate(catalog: SqlCatalog) -> None:
    rec = photo("orphan", (face(embedding=unit_vectors(1)[0]),))
    with pytest.raises((BackendError, NotFound, InvalidArgument)):
        catalog.add_photo(9999, SPACE, rec)


def test_unknown_source_id_stores_nothing(catalog: SqlCatalog) -> None:
    rec = photo("orphan", (face(embedding=unit_vectors(1)[0]),))
    with contextlib.suppress(BackendError, NotFound, InvalidArgument):
        catalog.add_photo(9999, SPACE, rec)
    # the foreign key keeps the orphan out whatever add_photo reports
    assert count_rows(catalog, schema.photos) == 0
    assert count_rows(catalog, schema.faces) == 0


# embeddings ---------------------------------------------------------------------------------


@pytest.fixture
def ten_faces(catalog: SqlCatalog, source_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten live faces over four photos, plus two skipped ones; returns (ids, vectors)."""
    v = unit_vectors(10, seed=7)
    layout = [[0, 1, 2], [3], [4, 5, 6, 7], [8, 9]]
    all_ids: list[int] = []
    for n, group in enumerate(layout):
        faces = tuple(face(Box(0, 0, 10 + i, 10 + i), v[i]) for i in group)
        faces += (face(skip_reason="blurry"),) if n % 2 else ()
        ids = catalog.add_photo(source_id, SPACE, photo(f"p{n}", faces))
        assert ids is not None
        all_ids.extend(ids)
    return np.asarray(all_ids, dtype=np.int64), v


def test_live_face_ids_are_the_indexable_ones(
    catalog: SqlCatalog, ten_faces: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, _ = ten_faces
    live = catalog.live_face_ids(SPACE)
    assert live.dtype == np.int64
    assert sorted(live.tolist()) == sorted(ids.tolist())
    assert count_rows(catalog, schema.faces) == 12


def test_embeddings_round_trip_exactly_in_batches(
    catalog: SqlCatalog, ten_faces: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, v = ten_faces
    batches = list(catalog.embeddings(SPACE, batch=3))
    assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
    got_ids = np.concatenate([b[0] for b in batches])
    got_vecs = np.concatenate([b[1] for b in batches])
    assert got_ids.dtype == np.int64 and got_vecs.dtype == np.float32
    assert got_vecs.shape == (10, DIM)
    assert len(set(got_ids.tolist())) == 10
    by_id = dict(zip(ids.tolist(), v, strict=True))
    for fid, vec in zip(got_ids.tolist(), got_vecs, strict=True):
        np.testing.assert_array_equal(vec, by_id[fid])


def test_embeddings_for_given_ids_only(
    catalog: SqlCatalog, ten_faces: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, v = ten_faces
    pick = ids[[1, 4, 9]]
    got = list(catalog.embeddings(SPACE, ids=np.append(pick, 10_000)))
    got_ids = np.concatenate([b[0] for b in got])
    got_vecs = np.concatenate([b[1] for b in got])
    assert sorted(got_ids.tolist()) == sorted(pick.tolist())
    by_id = dict(zip(ids.tolist(), v, strict=True))
    for fid, vec in zip(got_ids.tolist(), got_vecs, strict=True):
        np.testing.assert_array_equal(vec, by_id[fid])
    assert list(catalog.embeddings(SPACE, ids=np.asarray([], dtype=np.int64))) == []


def test_embeddings_of_another_space_are_separate(
    catalog: SqlCatalog, ten_faces: tuple[np.ndarray, np.ndarray]
) -> None:
    other = EmbeddingSpace("test", "2", DIM)
    assert list(catalog.embeddings(other)) == []
    assert catalog.live_face_ids(other).size == 0


def test_face_rows_give_uri_source_and_box(catalog: SqlCatalog, source_id: int) -> None:
    v = unit_vectors(2)
    rec = photo(
        "p",
        (face(Box(1, 2, 30, 40), v[0]), face(Box(5, 6, 7, 8), v[1])),
        page_url="https://example.org/page",
    )
    ids = catalog.add_photo(source_id, SPACE, rec)
    assert ids is not None
    rows = catalog.face_rows([*ids, 424242])
    assert set(rows) == set(ids)
    first = rows[ids[0]]
    assert first.face_id == ids[0]
    assert first.photo_uri == "/photos/p.jpg"
    assert first.page_url == "https://example.org/page"
    assert first.source == "family"
    assert first.box == Box(1, 2, 30, 40)
    assert rows[ids[1]].box == Box(5, 6, 7, 8)
    assert rows[ids[1]].photo_id == first.photo_id


def test_face_rows_omit_skipped_faces(catalog: SqlCatalog, source_id: int) -> None:
    rec = photo("p", (face(skip_reason="blurry"),))
    assert catalog.add_photo(source_id, SPACE, rec) == []
    with catalog._db.connect() as conn:
        skipped_id = conn.execute(sa.select(schema.faces.c.id)).scalar()
    assert catalog.face_rows([skipped_id]) == {}


def test_principal_faces_pick_the_largest_whole_face_per_photo(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(5)
    a = photo(
        "a",
        (
            face(Box(5, 5, 15, 15), v[0]),  # area 100
            face(Box(5, 5, 35, 10), v[1]),  # area 150: the largest whole face
            face(Box(0, 5, 60, 60), v[3]),  # larger, but cut by the photo's left edge
            face(Box(5, 5, 100, 100), skip_reason="blurry"),  # larger, but not live
        ),
    )
    b = photo("b", (face(Box(0, 0, 4, 4), v[2]),))  # only a partial face: it is the principal
    c = photo("c", (face(Box(1, 1, 99, 99), skip_reason="too_small"),))
    ids_a = catalog.add_photo(source_id, SPACE, a)
    ids_b = catalog.add_photo(source_id, SPACE, b)
    assert catalog.add_photo(source_id, SPACE, c) == []
    assert ids_a is not None and ids_b is not None
    got = catalog.principal_faces(SPACE, [a.sha256, b.sha256, c.sha256, "f" * 64])
    assert set(got) == {a.sha256, b.sha256}
    assert got[a.sha256][0] == ids_a[1]
    np.testing.assert_array_equal(got[a.sha256][1], v[1])
    assert got[a.sha256][1].dtype == np.float32
    assert got[b.sha256][0] == ids_b[0]
    np.testing.assert_array_equal(got[b.sha256][1], v[2])


def test_counts_and_skipped_by_reason(catalog: SqlCatalog, source_id: int) -> None:
    assert catalog.counts() == {"sources": 1, "photos": 0, "faces": 0, "skipped": 0}
    assert catalog.skipped_by_reason() == {}
    v = unit_vectors(3)
    catalog.add_photo(
        source_id,
        SPACE,
        photo("p1", (face(embedding=v[0]), face(skip_reason="blurry"))),
    )
    catalog.add_photo(
        source_id,
        SPACE,
        photo(
            "p2",
            (
                face(embedding=v[1]),
                face(embedding=v[2]),
                face(skip_reason="too_small"),
                face(skip_reason="blurry"),
            ),
        ),
    )
    catalog.add_photo(source_id, SPACE, photo("p3", ()))
    assert catalog.counts() == {"sources": 1, "photos": 3, "faces": 3, "skipped": 3}
    assert catalog.skipped_by_reason() == {"blurry": 2, "too_small": 1}


# spaces -------------------------------------------------------------------------------------


def test_space_id_is_stable_and_distinct(catalog_url: str) -> None:
    cat = SqlCatalog.open(catalog_url)
    other = EmbeddingSpace("test", "2", DIM)
    wider = EmbeddingSpace("test", "1", 16)
    a = cat.space_id(SPACE)
    assert cat.space_id(SPACE) == a
    b, c = cat.space_id(other), cat.space_id(wider)
    assert len({a, b, c}) == 3
    assert sorted(cat.spaces(), key=lambda s: s.key) == sorted(
        [SPACE, other, wider], key=lambda s: s.key
    )
    cat.close()
    # a fresh catalog (empty cache) finds the same rows instead of adding new ones
    again = SqlCatalog.open(catalog_url)
    try:
        assert (again.space_id(wider), again.space_id(SPACE), again.space_id(other)) == (c, a, b)
        assert count_rows(again, schema.spaces) == 3
    finally:
        again.close()


def test_spaces_empty_on_fresh_catalog(catalog: SqlCatalog) -> None:
    assert catalog.spaces() == []


# migrations from an older catalog -----------------------------------------------------------

# what migrations 3 and 4 add to the tables that migration 1 creates
LATER_COLUMNS = [
    ("sources", "retired_at"),
    ("sources", "minors"),
    ("photos", "expires_at"),
    ("photos", "jurisdiction"),
    ("photos", "minors"),
]


def version_2_catalog(url: str) -> sa.Engine:
    """A catalog as version 2 of the schema left it, holding one source and one photo."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema.metadata.create_all(conn, tables=[schema.schema_migrations])
        for version, name, apply in schema.MIGRATIONS[:2]:
            apply(conn)
            conn.execute(
                schema.schema_migrations.insert().values(
                    version=version, name=name, applied_at=dt.datetime.now(dt.UTC)
                )
            )
        # migration 1 creates its tables as they are now: take away what 3 and 4 added
        conn.execute(sa.text("DROP INDEX ix_photos_expires"))
        conn.execute(sa.text("DROP INDEX ix_photos_jurisdiction"))
        for table, column in LATER_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(
            sa.text(
                "INSERT INTO sources (name, kind, lawful_basis, created_at) "
                "VALUES ('old', 'folder', 'consent', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO photos (source_id, sha256, uri, width, height, format, bytes, "
                "n_faces, ingested_at) SELECT id, :sha, '/old.jpg', 1, 1, 'JPEG', 1, 0, "
                "CURRENT_TIMESTAMP FROM sources"
            ),
            {"sha": "0" * 64},
        )
    return engine


def test_a_version_2_catalog_is_migrated_in_place(catalog_url: str) -> None:
    old = SqlCatalog(version_2_catalog(catalog_url))
    try:
        assert old.schema_version() == 2
        assert old.migrate() == schema.SCHEMA_VERSION
        with old._db.connect() as conn:
            inspector = sa.inspect(conn)
            for table, column in LATER_COLUMNS:
                assert column in {c["name"] for c in inspector.get_columns(table)}
            indexes = {i["name"] for i in inspector.get_indexes("photos")}
            assert {"ix_photos_expires", "ix_photos_jurisdiction"} <= indexes
            assert {"exclusions", "suppressions"} <= set(inspector.get_table_names())
            # the rows already there took the boolean server default
            assert conn.execute(sa.text("SELECT count(*) FROM photos WHERE NOT minors")).scalar()
        source = old.get_source("old")
        assert (source.minors, source.retired_at, source.photos) == (False, None, 1)
        with pytest.raises(sa.exc.IntegrityError), old._db.begin() as conn:
            conn.execute(sa.text("UPDATE sources SET minors = NULL"))  # added NOT NULL
        assert source.id is not None
        rec = photo("new", (face(embedding=unit_vectors(1)[0]),), jurisdiction="FR")
        assert old.add_photo(source.id, SPACE, rec) is not None
        assert old.migrate() == schema.SCHEMA_VERSION
    finally:
        old.close()


# what PostgreSQL refuses, both refuse --------------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [
        SourceInfo("nul\x00name", lawful_basis="consent"),
        SourceInfo("ref", lawful_basis="consent", consent_ref="form\x00"),
        SourceInfo("cc", lawful_basis="consent", jurisdiction="X" * 11),
        SourceInfo("kind", lawful_basis="consent", kind="x" * 21),
    ],
    ids=["nul-name", "nul-consent-ref", "long-jurisdiction", "long-kind"],
)
def test_text_a_column_cannot_hold_is_invalid_for_a_source(
    catalog: SqlCatalog, info: SourceInfo
) -> None:
    with pytest.raises(InvalidArgument):
        catalog.add_source(info)
    assert count_rows(catalog, schema.sources) == 0


def test_text_a_column_cannot_hold_is_invalid_for_a_photo(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(2)
    long_format = dataclasses.replace(photo("p", (face(embedding=v[0]),)), format="x" * 11)
    long_detector = dataclasses.replace(face(embedding=v[1]), detector="d" * 41)
    nul_uri = dataclasses.replace(photo("r", ()), provenance=Provenance("/a\x00b.jpg"))
    for rec in (long_format, photo("q", (face(embedding=v[0]), long_detector)), nul_uri):
        with pytest.raises(InvalidArgument):
            catalog.add_photo(source_id, SPACE, rec)
    assert count_rows(catalog, schema.photos) == count_rows(catalog, schema.faces) == 0
    with pytest.raises(InvalidArgument):
        catalog.add_exclusion("CA", None, actor="a" * 201)
    with pytest.raises(InvalidArgument):
        catalog.space_id(EmbeddingSpace("m" * 101, "1", DIM))


# times --------------------------------------------------------------------------------------


def test_times_are_instants_whatever_their_zone(catalog: SqlCatalog, source_id: int) -> None:
    noon = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
    paris, tokyo = dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=9))
    ids = catalog.add_photo(
        source_id, SPACE, photo("p", (face(embedding=unit_vectors(1)[0]),)), noon.astimezone(paris)
    )
    assert ids is not None
    details = catalog.face_details(ids)[ids[0]]
    assert as_utc(details["expires_at"]) == noon
    assert abs(as_utc(details["ingested_at"]) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    # a second before noon, told in Tokyo, nothing has expired; at noon as naive UTC, it has
    before = (noon - dt.timedelta(seconds=1)).astimezone(tokyo)
    assert catalog.delete_photos(expired_at=before)[0] == 0
    n, face_ids = catalog.delete_photos(expired_at=noon.replace(tzinfo=None))
    assert (n, face_ids.tolist()) == (1, ids)


def test_dates_read_back_as_utc(catalog: SqlCatalog) -> None:
    catalog.add_source(SourceInfo("s", lawful_basis="consent"))
    catalog.retire_source("s")
    catalog.add_exclusion("CA", "no biometrics", actor="admin")
    retired = catalog.get_source("s").retired_at
    assert retired is not None and retired.endswith("+00:00")
    assert catalog.exclusions()[0]["created_at"].endswith("+00:00")


# governance operations ----------------------------------------------------------------------


def test_exclusions_and_the_photos_they_cover(catalog: SqlCatalog, source_id: int) -> None:
    v = unit_vectors(4)
    ids = {}
    for name, cc, vec in [("ca", "CA", v[0]), ("qc", "CA-QC", v[1]), ("il", "US-IL", v[2])]:
        got = catalog.add_photo(source_id, SPACE, photo(name, (face(embedding=vec),), None, cc))
        assert got is not None
        ids[name] = got
    assert catalog.add_photo(source_id, SPACE, photo("nowhere", (face(embedding=v[3]),)))
    catalog.add_exclusion("US-IL", None, actor="admin")
    catalog.add_exclusion("CA", "no biometrics", actor="admin")
    with pytest.raises(InvalidArgument, match="already excluded"):
        catalog.add_exclusion("CA", None, actor="someone")
    listed = catalog.exclusions()
    assert [(e["code"], e["reason"], e["actor"]) for e in listed] == [
        ("CA", "no biometrics", "admin"),
        ("US-IL", None, "admin"),
    ]
    n, face_ids = catalog.delete_photos_in("CA")
    assert (n, sorted(face_ids.tolist())) == (2, sorted(ids["ca"] + ids["qc"]))
    assert catalog.counts()["photos"] == 2
    assert catalog.remove_exclusion("US-IL") and not catalog.remove_exclusion("US-IL")
    assert [e["code"] for e in catalog.exclusions()] == ["CA"]


def test_delete_faces_keeps_a_photo_until_its_last_face(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(2)
    rec = photo("p", (face(embedding=v[0]), face(embedding=v[1])))
    ids = catalog.add_photo(source_id, SPACE, rec)
    assert ids is not None
    photo_id = catalog.face_rows(ids)[ids[0]].photo_id
    assert sorted(catalog.live_faces_of(photo_id=photo_id).tolist()) == sorted(ids)
    assert sorted(catalog.live_faces_of(source_id=source_id).tolist()) == sorted(ids)
    assert catalog.delete_faces([ids[0], 10_000]) == (1, [])
    with catalog._db.connect() as conn:
        assert conn.execute(sa.select(schema.photos.c.n_faces)).scalar() == 1
    assert catalog.delete_faces(np.asarray([ids[1]], dtype=np.int64)) == (1, [rec.sha256])
    assert catalog.counts() == {"sources": 1, "photos": 0, "faces": 0, "skipped": 0}


def test_suppression_templates_round_trip_exactly(catalog: SqlCatalog) -> None:
    empty = catalog.suppression_templates(SPACE)
    assert [a.shape for a in empty] == [(0,), (0, DIM), (0,)]
    one, two = unit_vectors(1, seed=1), unit_vectors(2, seed=2)
    a = catalog.add_suppression(SPACE, one[0], 0.5, "erased", actor="admin")
    b = catalog.add_suppression(SPACE, two, 0.6, "opted out", actor="admin")
    ids, vectors, edges = catalog.suppression_templates(SPACE)
    assert sorted(ids.tolist()) == sorted([a, b, b])
    order = np.argsort(ids, kind="stable")
    np.testing.assert_array_equal(vectors[order], np.concatenate([one, two]))
    np.testing.assert_allclose(edges[order], [0.5, 0.6, 0.6])
    assert catalog.suppression_templates(EmbeddingSpace("test", "2", DIM))[0].size == 0


# what the server shows ------------------------------------------------------------------------


def test_photo_record_holds_the_photo_its_source_and_every_face(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(1)
    rec = photo("p", (face(Box(1, 2, 30, 40), v[0]), face(Box(5, 6, 7, 8), skip_reason="blurry")))
    rec = dataclasses.replace(rec, jurisdiction="FR")
    ids = catalog.add_photo(source_id, SPACE, rec, None)
    assert ids is not None
    photo_id, box = catalog.face_photo(ids[0])
    assert box == Box(1, 2, 30, 40)
    shown = catalog.photo_record(photo_id)
    ingested = shown.pop("ingested_at")
    assert abs(dt.datetime.fromisoformat(ingested) - dt.datetime.now(dt.UTC)) < dt.timedelta(
        minutes=1
    )
    assert ingested.endswith("+00:00")
    faces = shown.pop("faces")
    assert shown == {
        "id": photo_id,
        "uri": "/photos/p.jpg",
        "page_url": None,
        "width": 640,
        "height": 480,
        "jurisdiction": "FR",
        "source": "family",
    }
    assert [(f["box"], f["quality"], f["skip_reason"]) for f in faces] == [
        ([1, 2, 30, 40], 0.8, None),
        ([5, 6, 7, 8], 0.8, "blurry"),
    ]
    assert faces[0]["face_id"] == ids[0] and faces[1]["face_id"] > ids[0]
    assert catalog.face_photo(faces[1]["face_id"])[0] == photo_id  # a skipped face too
    assert catalog.photo_dates({photo_id, 10_000}) == {photo_id: ingested}
    assert catalog.photo_dates(set()) == {}


def test_a_photo_or_face_that_is_gone_is_not_found(catalog: SqlCatalog, source_id: int) -> None:
    ids = catalog.add_photo(source_id, SPACE, photo("p", (face(embedding=unit_vectors(1)[0]),)))
    assert ids is not None
    photo_id, _ = catalog.face_photo(ids[0])
    catalog.delete_faces(ids)
    with pytest.raises(NotFound, match="no photo"):
        catalog.photo_record(photo_id)
    with pytest.raises(NotFound, match="no face"):
        catalog.face_photo(ids[0])
    assert catalog.photo_dates([photo_id]) == {}


def test_stored_uris_are_those_under_the_prefix_only(catalog: SqlCatalog, source_id: int) -> None:
    for uri in ("/up_1/a.jpg", "/upX1/b.jpg", "/up_1/sub/c.jpg", "/up_10/d.jpg", "/other.jpg"):
        rec = dataclasses.replace(photo(uri, ()), provenance=Provenance(uri))
        catalog.add_photo(source_id, SPACE, rec)
    # "_" is a LIKE wildcard: /upX1/ matches the pattern but is not under the folder
    assert catalog.stored_uris("/up_1/") == {"/up_1/a.jpg", "/up_1/sub/c.jpg"}
    assert catalog.stored_uris("/nowhere/") == set()


def test_the_audit_log_and_key_store_live_in_the_catalog(catalog: SqlCatalog) -> None:
    audit = catalog.audit_log()
    key, info = catalog.key_store(audit).create("alice", "investigator", actor="admin")
    found = catalog.key_store().authenticate(key)  # its own audit log by default
    assert found is not None and found.id == info.id
    catalog.key_store().revoke("alice", actor="dpo")
    assert [(e.actor, e.details["op"]) for e in audit.events(action="key")] == [
        ("admin", "create"),
        ("dpo", "revoke"),
    ]
    assert audit.verify().ok and audit.head()[0] == 2


# a model switch -------------------------------------------------------------------------------

WIDE = EmbeddingSpace("wide", "1", 12)


def test_a_switch_fills_the_new_space_photo_by_photo_then_completes(
    catalog: SqlCatalog, source_id: int
) -> None:
    v = unit_vectors(3)
    expiry = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    for name, faces in [("a", (face(Box(1, 1, 9, 9), v[0]), face(embedding=v[1]))), ("b", ())]:
        catalog.add_photo(source_id, SPACE, photo(name, faces), expiry if name == "a" else None)
    catalog.add_photo(source_id, SPACE, photo("c", (face(embedding=v[2]),)))
    catalog.activate(SPACE)
    catalog.mark_building(WIDE)
    assert catalog.current_space() == SPACE  # a space being built is never searched
    assert catalog.reembed_progress(SPACE, WIDE) == (0, 2)  # "b" has no face to re-embed
    todo = catalog.photos_to_reembed(SPACE, WIDE, limit=10)
    assert [(p.uri, len(p.faces)) for p in todo] == [("/photos/a.jpg", 2), ("/photos/c.jpg", 1)]
    first = todo[0]
    assert first.sha256 == photo("a", ()).sha256
    assert first.faces[0].box == Box(1, 1, 9, 9)
    assert first.faces[0].expires_at is not None and as_utc(first.faces[0].expires_at) == expiry
    assert catalog.photos_to_reembed(SPACE, WIDE, limit=1, after=first.photo_id)[0].uri == (
        "/photos/c.jpg"
    )
    wide = unit_vectors(2, seed=5, dim=WIDE.dim)
    new = [
        (face(Box(1, 1, 9, 9), wide[0]), first.faces[0].expires_at),
        (face(skip_reason="minor"), None),
        (face(embedding=wide[1]), None),
    ]
    ids = catalog.add_faces(first.photo_id, WIDE, new)
    assert len(ids) == 2 and catalog.live_count(WIDE) == 2 and catalog.live_count(SPACE) == 3
    assert catalog.reembed_progress(SPACE, WIDE) == (1, 2)
    assert [p.uri for p in catalog.photos_to_reembed(SPACE, WIDE, limit=10)] == ["/photos/c.jpg"]
    got = {i: x for b_ids, b in catalog.embeddings(WIDE) for i, x in zip(b_ids, b, strict=True)}
    np.testing.assert_array_equal(np.stack([got[i] for i in ids]), wide)
    with pytest.raises(RuntimeError), catalog.transaction() as conn:
        assert catalog.complete_switch(SPACE, WIDE, conn=conn) == 3
        raise RuntimeError("the audit event failed")  # rolled back: nothing of it stays
    assert catalog.current_space() == SPACE and catalog.live_count(SPACE) == 3
    assert catalog.complete_switch(SPACE, WIDE) == 3  # every face of the old space
    assert catalog.current_space() == WIDE
    assert (catalog.live_count(SPACE), catalog.live_count(WIDE)) == (0, 2)
    assert catalog.photo_record(first.photo_id)["faces"][1]["skip_reason"] == "minor"


# congruence: the same story told to SQLite and PostgreSQL -----------------------------------


def _undated(record: dict[str, Any]) -> dict[str, Any]:
    assert record["ingested_at"].endswith("+00:00")
    return {**record, "ingested_at": None}


def story(catalog: SqlCatalog) -> dict[str, Any]:
    """Sources, photos, faces, exclusions, erasures and suppressions; then everything the
    catalog hands back, but the times it wrote (checked as UTC instants, then dropped)."""
    v = unit_vectors(12, seed=11)
    marks = Landmarks5(((1.5, 2.25), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.125)))
    now = dt.datetime.now(dt.UTC)
    family = catalog.add_source(
        SourceInfo("family", "consent", consent_ref="form-7", retention_days=30)
    )
    news = catalog.add_source(SourceInfo("news", "legitimate_interest", jurisdiction="US"))
    old = catalog.add_source(SourceInfo("old", "contract", licence="CC-BY", minors=True))
    assert family.id and news.id and old.id
    layout: list[tuple[int, str, str | None, tuple[FaceRecord, ...]]] = [
        (family.id, "f1", "FR", (face(Box(1, 2, 30, 40), v[0], landmarks=marks),)),
        (family.id, "f2", None, (face(embedding=v[1]), face(skip_reason="blurry"))),
        (news.id, "n1", "US-IL", (face(Box(0, 0, 9, 9), v[2]), face(Box(5, 5, 60, 70), v[3]))),
        (news.id, "n2", "CA-QC", (face(embedding=v[4]), face(skip_reason="too_small"))),
        (news.id, "n3", "CA", (face(embedding=v[5]),)),
        (old.id, "o1", None, (face(embedding=v[6]), face(embedding=v[7]))),
        (old.id, "o2", "DE", ()),
    ]
    added = {}
    for source_id, name, cc, faces in layout:
        expires = now + dt.timedelta(days=30) if source_id == family.id else None
        added[name] = catalog.add_photo(source_id, SPACE, photo(name, faces, None, cc), expires)
    added["again"] = catalog.add_photo(family.id, SPACE, photo("f1", ()))
    digests = [photo(name, ()).sha256 for _, name, _, _ in layout]
    before = {
        "sources": catalog.list_sources(),
        "counts": catalog.counts(),
        "skipped": catalog.skipped_by_reason(),
        "live": sorted(catalog.live_face_ids(SPACE).tolist()),
        "embeddings": [(i.tolist(), x.tobytes()) for i, x in catalog.embeddings(SPACE, batch=4)],
        "principal": {
            d: (fid, x.tobytes()) for d, (fid, x) in catalog.principal_faces(SPACE, digests).items()
        },
        "rows": catalog.face_rows(range(1, 20)),
        "records": {i: _undated(catalog.photo_record(i)) for i in range(1, 8)},
        "face photos": {i: catalog.face_photo(i) for i in range(1, 11)},
        "dated": sorted(catalog.photo_dates(range(1, 20))),
        "uris": catalog.stored_uris("/photos/"),
    }
    details = catalog.face_details(range(1, 20))
    for row in details.values():
        for key in ("ingested_at", "expires_at"):
            if row[key] is not None:
                assert abs(as_utc(row[key]) - now) < dt.timedelta(days=31)
                row[key] = "a time"
    catalog.add_exclusion("CA", "no biometrics", actor="admin")
    deleted = {
        "in CA": catalog.delete_photos_in("CA"),
        "faces": catalog.delete_faces([1, 3, 4]),
        "old source": catalog.delete_photos(source_id=old.id),
        "expired": catalog.delete_photos(expired_at=now + dt.timedelta(days=31)),
    }
    catalog.retire_source("old")
    catalog.add_suppression(SPACE, v[8:10], 0.55, "erased", actor="admin")
    ids, vectors, edges = catalog.suppression_templates(SPACE)
    after = {
        "sources": [
            dataclasses.replace(s, created_at=None, retired_at=s.retired_at and "retired")
            for s in catalog.list_sources()
        ],
        "counts": catalog.counts(),
        "live": sorted(catalog.live_face_ids(SPACE).tolist()),
        "exclusions": [{**e, "created_at": None} for e in catalog.exclusions()],
        "suppressions": (ids.tolist(), vectors.tobytes(), edges.tolist()),
        "spaces": catalog.spaces(),
    }
    for info in before["sources"]:
        assert info.created_at is not None and info.created_at.endswith("+00:00")
    before["sources"] = [dataclasses.replace(s, created_at=None) for s in before["sources"]]
    return {
        "added": added,
        "before": before,
        "details": details,
        "deleted": {k: (n, sorted(np.asarray(x).tolist())) for k, (n, x) in deleted.items()},
        "after": after,
    }


def test_sqlite_and_postgresql_tell_the_same_story(tmp_path: Path, postgres_url: str) -> None:
    told = {}
    for name, url in [("sqlite", f"sqlite:///{tmp_path / 'c.db'}"), ("postgres", postgres_url)]:
        catalog = SqlCatalog.open(url)
        try:
            told[name] = story(catalog)
        finally:
            catalog.close()
    assert told["sqlite"]["added"]["again"] is None
    for part in told["sqlite"]:
        assert told["postgres"][part] == told["sqlite"][part], part


def test_concurrent_rate_slots_let_exactly_the_limit_through(catalog: SqlCatalog) -> None:
    """The slot is written before it is counted: 12 reservations at once under a limit of 5
    leave exactly 5, on either database; another actor has a minute of its own."""
    import datetime as dt
    from concurrent.futures import ThreadPoolExecutor

    from countenance.errors import RateLimited

    now = dt.datetime.now(dt.UTC)

    def reserve(_: int) -> bool:
        try:
            catalog.reserve_rate_slot("alice", 5, now)
        except RateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=12) as pool:
        granted = list(pool.map(reserve, range(12)))
    assert granted.count(True) == 5
    assert catalog.reserve_rate_slot("bob", 5, now) == 1
    later = now + dt.timedelta(minutes=2)  # the minute has passed: alice may search again
    assert catalog.reserve_rate_slot("alice", 5, later) == 1
