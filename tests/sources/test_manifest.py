"""Manifests: parsing, hostile rows, provenance stored with each photo, the policy gate per row,
and conditional re-fetch, over the fake face pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.errors import InvalidArgument
from countenance.sources.http import Fetcher
from countenance.sources.manifest import FileItem, ManifestSource, RefusedItem, UrlItem
from tests.sources.loopback import LoopbackServer
from tests.sources.photos import open_fake_engine
from tests.unit.fakes import block_photo

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def test_csv_rows_become_items_with_provenance(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(block_photo(RED))
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "url,path,page_url,jurisdiction,licence,consent_ref,taken_at,minor\n"
        "https://x.example/1.jpg,,https://x.example/p/1,DE,CC-BY-4.0,form-7,2024-05-01T10:00:00Z,\n"
        ",photos/a.png,,,,,,yes\n"
        ",,,,,,,\n"  # neither url nor path
        "https://x.example/2.jpg,photos/a.png,,,,,,\n"  # both
        ",../outside.png,,,,,,\n"  # escapes the manifest's folder
        ",/etc/passwd,,,,,,\n"
        "ftp://x.example/3.jpg,,,,,,,\n"
        "https://x.example/4.jpg,,javascript:alert(1),,,,,\n"
        "https://x.example/5.jpg,,,,,,yesterday,\n"
        "https://x.example/6.jpg,,,,,,,maybe\n"
    )
    items = list(ManifestSource(manifest, fetcher=Fetcher(user_agent="t")).items())
    first = items[0]
    assert isinstance(first, UrlItem)
    p = first.provenance
    assert (p.uri, p.page_url, p.jurisdiction, p.licence, p.consent_ref) == (
        "https://x.example/1.jpg",
        "https://x.example/p/1",
        "DE",
        "CC-BY-4.0",
        "form-7",
    )
    assert p.taken_at == "2024-05-01T10:00:00+00:00" and not p.minors
    assert isinstance(items[1], FileItem) and items[1].provenance.minors
    reasons = [i.reason for i in items[2:] if isinstance(i, RefusedItem)]
    assert reasons == ["bad_row", "bad_row", "outside_source", "outside_source"] + ["bad_row"] * 4


def test_unknown_columns_refuse_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text("url,page-url\nhttps://x.example/1.jpg,https://x.example/\n")
    with pytest.raises(InvalidArgument, match="page-url"):
        list(ManifestSource(manifest).items())


def test_jsonl_rows(tmp_path: Path) -> None:
    manifest = tmp_path / "list.jsonl"
    rows = [
        {"url": "https://x.example/1.jpg", "minor": True, "licence": "CC0"},
        {"url": "https://x.example/2.jpg", "colour": "red"},
        ["not", "an", "object"],
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n\n")
    items = list(ManifestSource(manifest, fetcher=Fetcher(user_agent="t")).items())
    assert items[0].provenance.minors and items[0].provenance.licence == "CC0"
    assert [getattr(i, "reason", None) for i in items[1:]] == ["bad_row"] * 3


def _photos(db_url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(s.photos).order_by(s.photos.c.id)).mappings().all()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def test_manifest_ingest_stores_provenance_gates_each_row_and_refetches_only_changes(
    tmp_path: Path, server: LoopbackServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    server.add("/robots.txt", b"", status=404)
    png = {"Content-Type": "image/png"}
    server.add("/red.png", block_photo(RED), headers=png, etag='"r1"')
    server.add("/green.png", block_photo(GREEN), headers=png, etag='"g1"')
    server.add("/blue.png", block_photo(BLUE), headers=png)  # no validators
    server.add("/ca.png", block_photo((90, 90, 20)), headers=png, etag='"c1"')
    server.add("/kid.png", block_photo((20, 90, 90)), headers=png, etag='"k1"')
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "url,page_url,jurisdiction,licence,minor\n"
        f"{server.url('/red.png')},https://news.example/red,,CC-BY-4.0,\n"
        f"{server.url('/green.png')},https://news.example/green,,,\n"
        f"{server.url('/blue.png')},https://news.example/blue,,,\n"
        f"{server.url('/ca.png')},https://news.example/ca,CA,,\n"  # an excluded jurisdiction
        f"{server.url('/kid.png')},https://news.example/kid,,,true\n"  # a minor
        f"{server.url('/missing.png')},https://news.example/missing,,,\n"
    )
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("news", basis="legitimate_interest", kind="manifest")
        db.exclude("CA", reason="test", actor="dpo")
        with db.fetcher(allow_private=True, min_interval_s=0.0) as fetcher:
            first = db.ingest(ManifestSource(manifest, fetcher=fetcher), source="news")
        assert (first.photos, first.faces, first.excluded, first.minors) == (4, 3, 1, 1)
        assert first.bad_files == {"http_error": 1}
        hit = db.search(block_photo(RED, size=110), **WHO).faces[0].matches[0]
        assert hit.page_url == "https://news.example/red"
        assert hit.to_json()["page_url"] == "https://news.example/red"
        assert hit.uri == server.url("/red.png")
        rows = {r["uri"]: r for r in _photos(f"sqlite:///{tmp_path / 'data' / 'catalog.db'}")}
        assert rows[server.url("/red.png")]["licence"] == "CC-BY-4.0"
        assert (
            rows[server.url("/kid.png")]["minors"] and rows[server.url("/kid.png")]["n_faces"] == 0
        )
        assert server.url("/ca.png") not in rows

        before = len(server.log)
        with db.fetcher(allow_private=True, min_interval_s=0.0) as fetcher:
            again = db.ingest(ManifestSource(manifest, fetcher=fetcher), source="news")
        assert (again.photos, again.faces) == (0, 0)
        assert again.unchanged == 4  # red, green, kid by 304; blue (no ETag) by its SHA-256
        second = {e.path: e for e in server.log[before:]}
        for path in ("/red.png", "/green.png", "/kid.png"):
            assert second[path].status == 304 and "If-None-Match" in second[path].headers
        # an excluded photo was never stored, so it is asked for in full again, and refused again
        assert "If-None-Match" not in second["/ca.png"].headers and again.excluded == 1


def test_a_photo_fetched_but_never_stored_is_fetched_in_full_again(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.add("/robots.txt", b"", status=404)
    server.add("/red.png", block_photo(RED), headers={"Content-Type": "image/png"}, etag='"r1"')
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"url\n{server.url('/red.png')}\n")
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("news", basis="consent")
        with db.fetcher(allow_private=True, min_interval_s=0.0) as fetcher:
            # a crash between fetch and store: the cache knows the URL, the catalog not the photo
            fetcher.fetch_image(server.url("/red.png"), 1 << 20)
            summary = db.ingest(ManifestSource(manifest, fetcher=fetcher), source="news")
        assert summary.photos == 1
        assert "If-None-Match" not in server.log[-1].headers


def test_read_ahead_fetches_in_threads_and_keeps_order_and_errors(
    tmp_path: Path, server: LoopbackServer
) -> None:
    from tests.sources.photos import scene_png

    server.add("/robots.txt", b"", status=404)
    lines = ["url,page_url"]
    for n in range(12):
        path = f"/{n}.png"
        if n != 5:  # 5 is missing: its error must reach the summary, in its place
            server.add(path, scene_png(n), headers={"Content-Type": "image/png"}, etag=f'"{n}"')
        lines.append(f"{server.url(path)},https://x.example/{n}")
    manifest = tmp_path / "list.csv"
    manifest.write_text("\n".join(lines) + "\n")
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        with db.fetcher(allow_private=True, min_interval_s=0.0, per_host=3) as fetcher:
            src = ManifestSource(manifest, fetcher=fetcher, read_ahead=4)
            summary = db.ingest(src, source="s")
            src.close()
        assert (summary.photos, summary.bad_files) == (11, {"http_error": 1})
        assert summary.errors[0]["photo"] == server.url("/5.png")
        assert server.paths().count("/robots.txt") == 1
        rows = _photos(f"sqlite:///{tmp_path / 'data' / 'catalog.db'}")
        assert [r["page_url"] for r in rows] == [
            f"https://x.example/{n}" for n in range(12) if n != 5
        ]
