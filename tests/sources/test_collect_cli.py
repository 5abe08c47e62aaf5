"""`countenance ingest` for manifests, sites and archives, end to end in a subprocess: real models,
real photos served on 127.0.0.1 by this test's server (the only address the commands reach)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import need_faces, run_cli
from tests.sources.loopback import LoopbackServer
from tests.sources.photos import scene_png

pytestmark = pytest.mark.slow

ENV = {"COUNTENANCE_WORKERS": "1", "COUNTENANCE_FETCH_MIN_INTERVAL_S": "0"}
WHO = ("--actor", "t", "--purpose", "test", "--case", "1")


def run(data: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(data, *args, ok=ok, env=ENV)


def test_manifest_ingest_search_shows_page_urls_and_private_addresses_need_the_flag(
    tmp_path: Path, server: LoopbackServer
) -> None:
    biden = need_faces("small_examples", "joe_biden")
    photos = sorted(biden.glob("*.jpg"))[:2]
    server.add("/robots.txt", b"", status=404)
    lines = ["url,page_url,licence"]
    for n, path in enumerate(photos):
        url = server.add(
            f"/p/{n}.jpg", path.read_bytes(), headers={"Content-Type": "image/jpeg"}, etag=f'"{n}"'
        )
        lines.append(f"{url},https://news.example/story/{n},CC-BY-4.0")
    manifest = tmp_path / "list.csv"
    manifest.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    run(data, "sources", "add", "news", "--basis", "legitimate_interest")

    refused = json.loads(run(data, "ingest", str(manifest), "--source", "news", "--json").stdout)
    assert refused["bad_files"] == {"private_address": len(photos)}
    assert server.log == []  # refused before any request, robots.txt included

    args = ("ingest", str(manifest), "--source", "news", "--allow-private-addresses", "--json")
    first = json.loads(
        run(data, *args, "--user-agent", "acme-archive/2 (+ops@acme.example)").stdout
    )
    assert first["photos"] == len(photos) and first["faces"] >= 1
    assert all(e.headers["User-Agent"] == "acme-archive/2 (+ops@acme.example)" for e in server.log)
    hits = json.loads(run(data, "search", str(photos[0]), *WHO, "--json").stdout)
    matches = [m for face in hits["faces"] for m in face["matches"]]
    assert matches and all(m["page_url"].startswith("https://news.example/story/") for m in matches)

    before = len(server.log)
    again = json.loads(run(data, *args).stdout)
    assert (again["photos"], again["unchanged"]) == (0, len(photos))
    assert all(e.status == 304 for e in server.log[before:] if e.path.startswith("/p/"))


def test_site_and_archive_ingest_and_usage_errors(tmp_path: Path, server: LoopbackServer) -> None:
    server.add("/robots.txt", b"User-agent: *\nDisallow: /private/\n")
    server.add(
        "/",
        b'<html><body><img src="/a.png"><a href="/private/x.html">x</a></body></html>',
        headers={"Content-Type": "text/html"},
    )
    server.add("/a.png", scene_png(1), headers={"Content-Type": "image/png"})
    data = tmp_path / "data"
    run(data, "sources", "add", "site", "--basis", "consent")
    site = run(
        data,
        "ingest",
        server.url("/"),
        "--source",
        "site",
        "--site",
        "--allow-domain",
        "127.0.0.1",
        "--max-pages",
        "5",
        "--allow-private-addresses",
        "--json",
    )
    assert json.loads(site.stdout)["photos"] == 1 and "crawled 1 pages" in site.stderr
    assert not [p for p in server.paths() if p.startswith("/private/")]

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", scene_png(2))
        zf.writestr("../../evil.png", scene_png(3))
        zf.writestr("bomb.png", b"\0" * (10 << 20))
    packed = json.loads(run(data, "ingest", str(archive), "--source", "site", "--json").stdout)
    assert packed["photos"] == 1
    assert packed["bad_files"] == {"archive_bomb": 1, "unsafe_path": 1}

    url_without_site = run(data, "ingest", server.url("/"), "--source", "site", ok=False)
    assert url_without_site.returncode == 2 and "--site" in url_without_site.stderr
    missing = run(data, "ingest", str(tmp_path / "nope"), "--source", "site", ok=False)
    assert missing.returncode == 2
