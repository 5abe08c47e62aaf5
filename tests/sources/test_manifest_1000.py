"""The issue's must-show, with the real models: a manifest of 1,000 URLs served on loopback is
ingested with every photo's page URL stored and shown in search results; a second run sends only
conditional requests, all answered 304, and stores nothing.

Of the 1,000 photos, 30 are real LFW photos of three people (so search has faces to find) and
970 are distinct synthetic photos with no face (cheap to analyse); all are fetched over HTTP
from a server on 127.0.0.1 that serves copies made in tmp_path at test time.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from countenance.catalog import schema as s
from countenance.sources.manifest import ManifestSource
from tests.conftest import need_faces
from tests.sources.loopback import GuardTransport, LoopbackServer
from tests.sources.photos import noise_png

pytestmark = pytest.mark.slow

PEOPLE = ("Colin_Powell", "Tony_Blair", "Laura_Bush")
PER_PERSON = 10


def _lfw(person: str) -> list[Path]:
    folder = need_faces("lfw", person)
    return sorted(folder.glob("*.jpg"))


def test_a_manifest_of_1000_urls_shows_page_urls_and_refetches_nothing(
    tmp_path: Path, engine: Any, server: LoopbackServer, guard: GuardTransport
) -> None:
    served = tmp_path / "served"  # copies made at test time, never in the repository
    served.mkdir()
    rows: list[dict[str, str]] = []
    page_of: dict[str, str] = {}
    probes: dict[str, Path] = {}
    for person in PEOPLE:
        photos = _lfw(person)
        assert len(photos) > PER_PERSON
        probes[person] = photos[PER_PERSON]  # held out: searched with, never ingested
        for n, path in enumerate(photos[:PER_PERSON]):
            data = path.read_bytes()
            (served / path.name).write_bytes(data)
            url = server.add(
                f"/img/{path.name}", data, headers={"Content-Type": "image/jpeg"}, etag=f'"{n}"'
            )
            page_of[url] = f"https://gallery.example/{person}/{n}"
            rows.append({"url": url, "page_url": page_of[url]})
    for n in range(1000 - len(rows)):
        url = server.add(
            f"/syn/{n}.png", noise_png(n), headers={"Content-Type": "image/png"}, etag=f'"s{n}"'
        )
        page_of[url] = f"https://gallery.example/synthetic/{n}"
        rows.append({"url": url, "page_url": page_of[url]})
    server.add("/robots.txt", b"User-agent: *\nAllow: /\n", headers={"Content-Type": "text/plain"})
    manifest = tmp_path / "photos.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["url", "page_url"])
        writer.writeheader()
        writer.writerows(rows)
    assert len(rows) == 1000

    engine.add_source("gallery", basis="consent", kind="manifest")
    fetch = {"allow_private": True, "min_interval_s": 0.0, "transport": guard}
    started = time.monotonic()
    with engine.fetcher(**fetch) as fetcher:
        src = ManifestSource(manifest, fetcher=fetcher, read_ahead=4)
        first = engine.ingest(src, source="gallery")
        src.close()
    first_s = time.monotonic() - started
    assert first.bad_files == {}, first.errors[:5]
    assert first.photos == 1000 and first.faces >= 27

    # every stored photo carries its page URL
    with engine.catalog.transaction() as conn:
        stored = dict(conn.execute(sa.select(s.photos.c.uri, s.photos.c.page_url)).all())
    assert stored == page_of

    # search shows the page each match was found on, and it is the right person's
    for person, probe in probes.items():
        result = engine.search(probe, actor="t", purpose="test", case="1").to_json()
        matches = [m for face in result["faces"] for m in face["matches"]]
        assert matches, person
        assert all(m["page_url"] == page_of[m["uri"]] for m in matches)
        best = max(matches, key=lambda m: m["similarity"])
        assert best["page_url"].startswith(f"https://gallery.example/{person}/")

    # the second run: conditional requests only, every one answered 304, nothing stored
    before = len(server.log)
    started = time.monotonic()
    with engine.fetcher(**fetch) as fetcher:
        second = engine.ingest(ManifestSource(manifest, fetcher=fetcher), source="gallery")
    second_s = time.monotonic() - started
    again = [e for e in server.log[before:] if e.path != "/robots.txt"]
    assert len(again) == 1000
    assert all(e.status == 304 and "If-None-Match" in e.headers for e in again)
    assert (second.photos, second.faces, second.unchanged) == (0, 0, 1000)
    assert engine.status().photos == 1000
    print(f"\nmanifest of 1,000 URLs: first run {first_s:.1f} s, second run {second_s:.1f} s")
