"""The site crawler: stays inside its allow-list, never fetches what robots.txt forbids (asserted
on the server's request log), honours noai/noimageai and nofollow, stops at its limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from countenance.errors import InvalidArgument
from countenance.sources.http import Fetcher
from countenance.sources.site import SiteSource, in_domains
from tests.sources.loopback import LoopbackServer
from tests.sources.photos import open_fake_engine, scene_png

HTML = {"Content-Type": "text/html; charset=utf-8"}
PNG = {"Content-Type": "image/png"}


def _page(*, links: list[str] = (), images: list[str] = (), head: str = "") -> bytes:  # type: ignore[assignment]
    body = "".join(f'<a href="{h}">link</a>' for h in links)
    body += "".join(f'<img src="{s}" alt="">' for s in images)
    return f"<html><head>{head}</head><body>{body}</body></html>".encode()


def _site(server: LoopbackServer) -> str:
    port = server.port
    site = f"http://public.example:{port}"
    server.add(
        "/robots.txt",
        b"User-agent: *\nDisallow: /private/\n",
        headers={"Content-Type": "text/plain"},
    )
    server.add(
        "/",
        _page(
            links=[
                "/a.html",
                "/private/secret.html",
                f"http://other.example:{port}/outside.html",
                f"http://www.public.example:{port}/sub.html",
                "/noai.html",
                "/nofollow.html",
                "/to-outside",
                "mailto:someone@example.org",
                "/endless/0",
            ],
            images=["/img/1.png", "/private/p.png", f"http://other.example:{port}/ext.png"],
        ),
        headers=HTML,
    )
    server.add(
        "/a.html",
        _page(images=["img/2.png", "/img/1.png#dup"], links=["/img/4.png", "/huge.html"]),
        headers=HTML,
    )
    server.add("/huge.html", b"<html>" + b" " * 200_000 + b"</html>", headers=HTML)
    server.add("/sub.html", _page(images=["/img/3.png"]), headers=HTML)
    server.add(
        "/noai.html",
        _page(images=["/img/noai.png"], head='<meta name="robots" content="noimageai">'),
        headers=HTML,
    )
    server.add(
        "/nofollow.html",
        _page(links=["/hidden.html"], head='<meta name="robots" content="nofollow">'),
        headers=HTML,
    )
    server.add("/to-outside", status=302, headers={"Location": f"http://other.example:{port}/"})
    server.add("/private/secret.html", _page(images=["/img/secret.png"]), headers=HTML)
    server.add("/hidden.html", _page(images=["/img/hidden.png"]), headers=HTML)
    for n in (1, 2, 3, 4):
        server.add(f"/img/{n}.png", scene_png(n), headers=PNG)
    for name in ("noai", "secret", "hidden"):
        server.add(f"/img/{name}.png", scene_png(10), headers=PNG)
    server.prefixes["/endless/"] = lambda path: (
        200,
        HTML,
        _page(links=[f"/endless/{int(path.rsplit('/', 1)[1]) + 1}"]),
    )
    return site


def test_a_crawl_stays_inside_its_allow_list_and_robots_txt(
    tmp_path: Path, server: LoopbackServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    site = _site(server)
    # "public" addresses: no --allow-private-addresses needed
    fetcher = make_fetcher(max_page_bytes=100_000)
    crawl = SiteSource(
        site + "/",
        fetcher=fetcher,
        allow_domains=["public.example"],
        max_pages=8,
        max_depth=5,
    )
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("ours", basis="legitimate_interest", kind="site")
        summary = db.ingest(crawl, source="ours")
        assert (summary.photos, summary.faces) == (4, 4)
        rows = {
            m.uri: m.page_url
            for f in db.search(scene_png(2), actor="a", purpose="p", case="c").faces
            for m in f.matches
        }
    assert rows == {f"{site}/img/2.png": f"{site}/a.html"}
    port = server.port
    hosts = {e.headers.get("Host") for e in server.log}
    assert hosts == {f"public.example:{port}", f"www.public.example:{port}"}  # never other.example
    paths = server.paths()
    assert not [p for p in paths if p.startswith("/private/")]
    assert "/img/noai.png" not in paths and "/hidden.html" not in paths
    assert len(crawl.pages) == 8  # the endless chain stopped at --max-pages
    assert sum(1 for p in paths if p.startswith("/endless/")) <= 8
    assert any("outside the allowed domains" in e for e in crawl.errors)  # /to-outside
    assert any("huge.html" in e and "limit of 100000" in e for e in crawl.errors)
    assert "/img/4.png" in paths  # a linked photo is collected, not crawled as a page


def test_max_depth_bounds_the_crawl(
    server: LoopbackServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    site = _site(server)
    crawl = SiteSource(
        site + "/endless/0",
        fetcher=make_fetcher(),
        allow_domains=["public.example"],
        max_pages=100,
        max_depth=3,
    )
    assert list(crawl.items()) == []
    assert [p for p in server.paths() if p.startswith("/endless/")] == [
        f"/endless/{n}" for n in range(4)
    ]


def test_allow_list_rules() -> None:
    assert in_domains("https://example.org/a", ["example.org"])
    assert in_domains("https://img.example.org/a", ["example.org"])
    assert in_domains("https://EXAMPLE.org./a", ["example.org"])
    assert not in_domains("https://notexample.org/a", ["example.org"])
    assert not in_domains("https://example.org.evil.net/a", ["example.org"])
    assert not in_domains("ftp://example.org/a", ["example.org"])
    with pytest.raises(InvalidArgument):
        SiteSource("https://other.org/", fetcher=Fetcher(user_agent="t"), allow_domains=["a.org"])
    with pytest.raises(InvalidArgument):
        SiteSource("https://a.org/", fetcher=Fetcher(user_agent="t"), allow_domains=["a.org/x"])
