"""What collecting keeps in the catalog, on SQLite and PostgreSQL alike: per-photo provenance,
perceptual hashes and their lookup, the duplicate link's cascade, the fetch cache."""

from __future__ import annotations

import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.catalog.sql import PhotoRecord, SqlCatalog
from countenance.neardup import signature
from countenance.types import EmbeddingSpace, Provenance, SourceInfo
from tests.sources.photos import jpeg_of, scene_png

SPACE = EmbeddingSpace("test", "1", 4)


def _record(digest: str, data: bytes, duplicate_of: int | None = None) -> PhotoRecord:
    return PhotoRecord(
        sha256=digest,
        provenance=Provenance(
            f"https://x.example/{digest[:4]}.jpg",
            page_url="https://x.example/page",
            licence="CC0",
            consent_ref="form-1",
            taken_at="2024-05-01T00:00:00",
        ),
        width=1,
        height=1,
        format="-",
        bytes=len(data),
        faces=(),
        signature=signature(data),
        duplicate_of=duplicate_of,
    )


def test_provenance_hashes_links_and_fetch_cache(catalog_url: str) -> None:
    catalog = SqlCatalog.open(catalog_url)
    try:
        info = catalog.add_source(SourceInfo("s", lawful_basis="consent"))
        assert info.id is not None
        original = scene_png(1)
        copy = jpeg_of(original, 70)
        assert catalog.add_photo(info.id, SPACE, _record("a" * 64, original)) == []
        original_id = catalog.photo_id_of("a" * 64)
        assert original_id is not None
        sig = signature(copy)
        assert sig is not None
        assert catalog.near_duplicate_of(sig) == original_id
        other = signature(scene_png(2))
        assert other is not None and catalog.near_duplicate_of(other) is None
        catalog.add_photo(info.id, SPACE, _record("b" * 64, copy, duplicate_of=original_id))
        assert catalog.duplicate_count() == 1
        with catalog.transaction() as conn:
            row = conn.execute(sa.select(s.photos).where(s.photos.c.sha256 == "b" * 64)).first()
        assert row is not None
        assert (row.licence, row.consent_ref, row.taken_at) == (
            "CC0",
            "form-1",
            "2024-05-01T00:00:00",
        )
        assert row.duplicate_of == original_id and row.phash == sig.phash

        cache = catalog.fetch_cache()
        url = "https://x.example/a.jpg"
        cache.record(url, etag='"v1"', last_modified=None, sha256="a" * 64, status=200)
        assert cache.validators(url) == ('"v1"', None)
        cache.record(
            url,
            etag='"v2"',
            last_modified="Wed, 01 May 2024 00:00:00 GMT",
            sha256="a" * 64,
            status=200,
        )
        assert cache.validators(url) == ('"v2"', "Wed, 01 May 2024 00:00:00 GMT")
        cache.record(
            "https://x.example/evil",
            etag='"x"\r\nX: y',
            last_modified=None,
            sha256="a" * 64,
            status=200,
        )
        assert cache.validators("https://x.example/evil") is None  # never sent back
        cache.record(
            "https://x.example/gone", etag='"g"', last_modified=None, sha256="c" * 64, status=200
        )
        assert cache.validators("https://x.example/gone") is None  # its photo is not stored

        # the original goes (retired source): its copy goes with it, and so do its validators
        catalog.delete_photos(source_id=info.id)
        assert catalog.duplicate_count() == 0 and catalog.counts()["photos"] == 0
        assert cache.validators(url) is None
    finally:
        catalog.close()


def test_only_the_original_is_deleted_and_the_copy_cascades(catalog_url: str) -> None:
    catalog = SqlCatalog.open(catalog_url)
    try:
        a = catalog.add_source(SourceInfo("a", lawful_basis="consent"))
        b = catalog.add_source(SourceInfo("b", lawful_basis="consent"))
        assert a.id is not None and b.id is not None
        catalog.add_photo(a.id, SPACE, _record("a" * 64, scene_png(1)))
        original_id = catalog.photo_id_of("a" * 64)
        catalog.add_photo(b.id, SPACE, _record("b" * 64, scene_png(1), duplicate_of=original_id))
        catalog.add_photo(b.id, SPACE, _record("c" * 64, scene_png(3)))
        catalog.delete_photos(source_id=a.id)
        assert catalog.known_sha256(["a" * 64, "b" * 64, "c" * 64]) == {"c" * 64}
    finally:
        catalog.close()
