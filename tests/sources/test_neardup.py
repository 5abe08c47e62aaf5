"""Near-duplicates: linked to the stored original, never embedded again, reported by status,
and gone when the original goes. Migration 6 on an older catalog."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.sql import SqlCatalog
from countenance.neardup import bands, hamming, same_photo, signature
from tests.sources.photos import jpeg_of, noise_png, open_fake_engine, scene_png
from tests.unit.fakes import block_photo

RED, GREEN = (200, 30, 30), (30, 200, 30)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def test_copies_match_and_different_photos_do_not() -> None:
    scene = scene_png(1)
    sig = signature(scene)
    assert sig is not None
    for copy in (jpeg_of(scene, 60), jpeg_of(scene, 90, scale=0.5), jpeg_of(scene, 90, 2.0)):
        other = signature(copy)
        assert other is not None and same_photo(sig, other)
    for different in (scene_png(2), noise_png(3)):
        other = signature(different)
        assert other is not None and not same_photo(sig, other)
    # squares alike in shape, not in colour or size: alike by hash, told apart by colour
    red = signature(block_photo(RED))
    assert red is not None
    for different in (block_photo(GREEN), block_photo(RED, size=100)):
        other = signature(different)
        assert other is not None and not same_photo(red, other)
    assert signature(block_photo(None)) is None  # flat: nothing to hash
    assert signature(b"not an image") is None


def test_bands_and_hamming() -> None:
    assert hamming(-1, 0) == 64 and hamming(5, 4) == 1
    assert bands(-1) == (0xFFFF,) * 4
    assert bands(0x0001_0002_0003_0004) == (1, 2, 3, 4)


def _write(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def test_a_near_duplicate_is_linked_not_embedded_and_goes_with_its_original(
    tmp_path: Path,
) -> None:
    red = scene_png(1)
    _write(tmp_path / "a", "red.png", red)
    _write(tmp_path / "a", "green.png", scene_png(2))
    _write(tmp_path / "b", "red-copy.jpg", jpeg_of(red, 70))
    _write(tmp_path / "b", "red-small.jpg", jpeg_of(red, 90, scale=0.5))
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("a", basis="consent")
        db.add_source("b", basis="consent")
        first = db.ingest(tmp_path / "a", source="a")
        assert (first.photos, first.faces, first.near_duplicates) == (2, 2, 0)
        second = db.ingest(tmp_path / "b", source="b")
        assert (second.photos, second.faces, second.near_duplicates) == (2, 0, 2)
        st = db.status()
        assert (st.photos, st.faces, st.duplicates) == (4, 2, 2)
        assert st.to_json()["duplicates"] == 2
        (face,) = db.search(red, **WHO).faces
        assert len(face.matches) == 1  # the original's face only: nothing embedded twice
        also = face.matches[0].to_json()["also_at"]
        assert sorted(Path(a).name for a in also) == ["red-copy.jpg", "red-small.jpg"]
        # subject access lists where the copies were found, in the JSON and the HTML page
        written = db.export(red, tmp_path / "access", actor="dpo", purpose="Art. 15", case="SAR-1")
        (held,) = json.loads(Path(written["json"]).read_text())["faces"]
        assert sorted(Path(a).name for a in held["also_at"]) == ["red-copy.jpg", "red-small.jpg"]
        page = Path(written["html"]).read_text()
        assert "red-copy.jpg" in page and "red-small.jpg" in page
        # erasing the original's face takes its copies' rows with it (and their provenance)
        db.erase(photo_id=face.matches[0].photo_id, reason="test", actor="dpo")
        st = db.status()
        assert (st.photos, st.duplicates) == (1, 0)
        # a later run meets the copies again and ingests them afresh, through the full gate
        again = db.ingest(tmp_path / "b", source="b")
        assert (again.photos, again.near_duplicates) == (2, 1)


def test_near_duplicates_within_one_run_and_retirement(tmp_path: Path) -> None:
    red = scene_png(1)
    _write(tmp_path / "a", "1-red.png", red)
    _write(tmp_path / "a", "2-red-copy.jpg", jpeg_of(red, 70))
    _write(tmp_path / "b", "red-copy2.jpg", jpeg_of(red, 50))
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("a", basis="consent")
        db.add_source("b", basis="consent")
        run = db.ingest(tmp_path / "a", source="a")
        assert (run.photos, run.faces, run.near_duplicates) == (2, 1, 1)
        assert db.ingest(tmp_path / "b", source="b").near_duplicates == 1
        db.retire_source("a")
        st = db.status()
        assert (st.photos, st.duplicates) == (0, 0)  # b's copy went with a's original


def test_migration_6_upgrades_an_older_catalog(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    # a catalog as version 4 left it: the photos table without migration 6's columns
    legacy = sa.MetaData()
    for table in s.metadata.sorted_tables:
        if table.name == "fetch_cache":
            continue
        columns = [
            sa.Column(
                c.name,
                c.type,
                primary_key=c.primary_key,
                nullable=c.nullable,
                server_default=c.server_default,
            )
            for c in table.columns
            if c.name not in _V6_COLUMNS
        ]
        sa.Table(table.name, legacy, *columns)
    with old.begin() as conn:
        legacy.create_all(conn)
        now = dt.datetime.now(dt.UTC)
        for version, name, _ in s.MIGRATIONS[:4]:
            conn.execute(
                s.schema_migrations.insert().values(version=version, name=name, applied_at=now)
            )
        conn.execute(s.audit_head.insert().values(id=1, seq=0, hash="0" * 64))
    old.dispose()
    catalog = SqlCatalog.open(url)
    assert catalog.schema_version() == s.SCHEMA_VERSION  # 6 and what came after
    with catalog.transaction() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("photos")}
        assert columns >= _V6_COLUMNS
        conn.execute(sa.text("PRAGMA foreign_keys=ON"))
        conn.execute(
            sa.text(
                "INSERT INTO sources (id, name, kind, lawful_basis, minors, created_at)"
                " VALUES (1, 's', 'folder', 'consent', 0, '2026-01-01')"
            )
        )
        for photo_id, dup in ((1, None), (2, 1)):
            conn.execute(
                s.photos.insert().values(
                    id=photo_id,
                    source_id=1,
                    sha256=str(photo_id) * 64,
                    uri="x",
                    width=1,
                    height=1,
                    format="-",
                    bytes=1,
                    n_faces=0,
                    ingested_at=dt.datetime.now(dt.UTC),
                    duplicate_of=dup,
                )
            )
        conn.execute(s.photos.delete().where(s.photos.c.id == 1))
        left = conn.execute(sa.select(sa.func.count()).select_from(s.photos)).scalar()
        assert left == 0  # the added column kept its ON DELETE CASCADE
    catalog.close()


_V6_COLUMNS = {
    "licence",
    "consent_ref",
    "taken_at",
    "phash",
    "phash_b0",
    "phash_b1",
    "phash_b2",
    "phash_b3",
    "phash_rgb",
    "duplicate_of",
}


@pytest.mark.timeout(120)  # the bug this guards against was an endless loop
def test_a_copy_whose_original_fails_in_the_same_run_is_analysed_itself(tmp_path: Path) -> None:
    from countenance.config import Settings
    from countenance.engine import Engine
    from countenance.vision.pipeline import FacePipeline
    from tests.unit.fakes import FakeDetector, FakeEmbedder

    class ChokesOnSmall(FakeDetector):
        def detect(self, rgb):  # type: ignore[no-untyped-def]
            if rgb.shape[1] == 160:
                raise RuntimeError("the model chokes on this one")
            return super().detect(rgb)

    scene = scene_png(1)
    _write(tmp_path / "a", "1-original.png", scene)  # 160 px: analysis fails
    _write(tmp_path / "a", "2-copy.jpg", jpeg_of(scene, 90, scale=2.0))
    _write(tmp_path / "a", "3-copy.jpg", jpeg_of(scene, 80, scale=2.0))
    pipeline = FacePipeline(ChokesOnSmall(), FakeEmbedder(), min_face_px=20, min_sharpness=0.0)
    with Engine(Settings(data_dir=tmp_path / "data", workers=1), pipeline=pipeline) as db:
        db.add_source("a", basis="consent")
        run = db.ingest(tmp_path / "a", source="a")
    assert run.bad_files == {"analysis_failed": 1}
    # the first copy stands in for the failed original; the second links to it
    assert (run.photos, run.faces, run.near_duplicates) == (2, 1, 1)
