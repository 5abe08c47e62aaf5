"""The fetcher: the address guard (stub resolver, no connection outside 127.0.0.0/8), redirects,
size, type and magic checks, retries, conditional requests, robots.txt."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from countenance.errors import FetchRefused, NotModified
from countenance.sources.addresses import check_address
from countenance.sources.http import Fetcher, is_image_bytes
from tests.sources.loopback import PUBLIC_IP, GuardTransport, LoopbackServer, Route
from tests.sources.photos import noise_png

MakeFetcher = Callable[..., Fetcher]
PNG = noise_png(1)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "10.255.255.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "100.64.0.1",
        "::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "64:ff9b::0a00:0001",  # NAT64 of 10.0.0.1
    ],
)
def test_loopback_and_private_addresses_are_refused_without_the_flag(address: str) -> None:
    with pytest.raises(FetchRefused) as refused:
        check_address(address)
    assert refused.value.reason == "private_address"
    check_address(address, allow_private=True)  # the operator's explicit choice


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "::",
        "240.0.0.1",
    ],
)
def test_link_local_multicast_and_unspecified_are_refused_always(address: str) -> None:
    for allow in (False, True):
        with pytest.raises(FetchRefused):
            check_address(address, allow_private=allow)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    check_address(address)


@pytest.mark.parametrize(
    "host",
    [
        "internal.example",  # 10/8
        "corp.example",  # 172.16/12
        "home.example",  # 192.168/16
        "metadata.example",  # 169.254/16
        "mixed.example",  # one public and one private answer: refused, not picked around
        "mapped.example",  # ::ffff:10.0.0.1
        "local.example",  # 127.0.0.1
        "multicast.example",
        "127.0.0.1",
    ],
)
def test_names_resolving_to_private_ranges_are_refused_before_any_connection(
    host: str, make_fetcher: MakeFetcher, guard: GuardTransport
) -> None:
    fetcher = make_fetcher(respect_robots=False)
    with pytest.raises(FetchRefused) as refused:
        fetcher.fetch_image(f"http://{host}/photo.jpg", 1 << 20)
    assert refused.value.reason == "private_address"
    assert guard.hosts == []  # nothing was sent anywhere


def test_redirects_to_private_or_loopback_addresses_are_refused(
    server: LoopbackServer, make_fetcher: MakeFetcher, guard: GuardTransport
) -> None:
    server.add("/robots.txt", b"", status=404)
    server.add("/to-internal", status=302, headers={"Location": "http://internal.example/x.png"})
    server.add("/to-loopback", status=301, headers={"Location": server.url("/x.png")})
    server.add("/to-metadata", status=307, headers={"Location": "http://169.254.169.254/latest"})
    server.add("/x.png", PNG, headers={"Content-Type": "image/png"})
    fetcher = make_fetcher()  # no allow_private: public.example is "public"
    for path in ("/to-internal", "/to-loopback", "/to-metadata"):
        with pytest.raises(FetchRefused) as refused:
            fetcher.fetch_image(f"http://public.example:{server.port}{path}", 1 << 20)
        assert refused.value.reason == "private_address", path
    # only the public hop was ever requested; x.png never was
    assert set(guard.hosts) == {PUBLIC_IP}
    assert "/x.png" not in server.paths()
    # with the operator's flag, the loopback redirect is followed
    allowed = make_fetcher(allow_private=True)
    assert allowed.fetch_image(f"http://public.example:{server.port}/to-loopback", 1 << 20) == PNG


def test_redirect_loops_stop_at_the_hop_limit(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"", status=404)
    server.add("/a", status=302, headers={"Location": "/b"})
    server.add("/b", status=302, headers={"Location": "/a"})
    fetcher = make_fetcher(allow_private=True, max_redirects=4)
    with pytest.raises(FetchRefused) as refused:
        fetcher.fetch_image(server.url("/a"), 1 << 20)
    assert refused.value.reason == "too_many_redirects"
    assert len([p for p in server.paths() if p in ("/a", "/b")]) == 5


def test_huge_and_lying_responses_are_refused(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"", status=404)
    server.add("/big.png", PNG + b"\0" * 50_000, headers={"Content-Type": "image/png"})

    def endless(_: dict[str, str]) -> tuple[int, dict[str, str], Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            yield PNG
            for _ in range(10_000):  # 160 MB if nobody stopped reading
                yield b"\0" * 16_384

        return 200, {"Content-Type": "image/png"}, chunks()

    server.routes["/endless.png"] = Route(handler=endless)
    server.add(
        "/short-length.png",
        PNG + b"\0" * 50_000,
        headers={"Content-Type": "image/png", "Content-Length": str(len(PNG))},
    )
    server.add("/html.jpg", b"<html>hello</html>", headers={"Content-Type": "image/jpeg"})
    server.add("/page.png", PNG, headers={"Content-Type": "text/html"})
    server.add("/empty.png", b"", headers={"Content-Type": "image/png"})
    server.add("/missing.png", b"gone", status=404)
    fetcher = make_fetcher(allow_private=True)
    cap = len(PNG) + 1000
    expected = {
        "/big.png": "too_large",  # by Content-Length
        "/endless.png": "too_large",  # no length: cut while streaming
        "/html.jpg": "not_an_image",  # says image/jpeg, bytes are HTML
        "/page.png": "not_an_image",  # image bytes, says text/html
        "/empty.png": "empty",
        "/missing.png": "http_error",
    }
    for path, reason in expected.items():
        with pytest.raises(FetchRefused) as refused:
            fetcher.fetch_image(server.url(path), cap)
        assert refused.value.reason == reason, (path, refused.value)
    # a Content-Length shorter than the body: only the declared bytes are read
    assert fetcher.fetch_image(server.url("/short-length.png"), cap) == PNG


def test_retries_back_off_and_honour_retry_after(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"", status=404)
    answers = iter([(503, {"Retry-After": "2"}), (429, {}), (200, {"Content-Type": "image/png"})])

    def flaky(_: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        status, headers = next(answers)
        return status, headers, PNG if status == 200 else b"busy"

    server.routes["/flaky.png"] = Route(handler=flaky)
    slept: list[float] = []
    fetcher = make_fetcher(allow_private=True, sleep=slept.append, backoff_s=0.5)
    assert fetcher.fetch_image(server.url("/flaky.png"), 1 << 20) == PNG
    assert slept == [2.0, 1.0]  # Retry-After, then the back-off of the second try
    server.add("/slow-down.png", b"", status=503, headers={"Retry-After": "3600"})
    with pytest.raises(FetchRefused, match="asked to wait"):
        fetcher.fetch_image(server.url("/slow-down.png"), 1 << 20)
    server.add("/down.png", b"", status=500)
    with pytest.raises(FetchRefused, match="after 4 tries"):
        fetcher.fetch_image(server.url("/down.png"), 1 << 20)


def test_user_agent_and_conditional_requests(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"", status=404)
    url = server.add("/a.png", PNG, headers={"Content-Type": "image/png"}, etag='"v1"')

    class Cache:
        stored: tuple[str | None, str | None] | None = None
        touched = 0

        def validators(self, url: str) -> tuple[str | None, str | None] | None:
            return self.stored

        def record(self, url: str, **kw: object) -> None:
            self.stored = (kw["etag"], kw["last_modified"])  # type: ignore[assignment]

        def touch(self, url: str, status: int) -> None:
            self.touched += 1

    cache = Cache()
    fetcher = make_fetcher(allow_private=True, cache=cache)
    assert fetcher.fetch_image(url, 1 << 20) == PNG
    with pytest.raises(NotModified):
        fetcher.fetch_image(url, 1 << 20)
    sent = [e for e in server.log if e.path == "/a.png"]
    assert "If-None-Match" not in sent[0].headers
    assert sent[1].headers["If-None-Match"] == '"v1"' and sent[1].status == 304
    assert all(e.headers["User-Agent"].startswith("countenance-test/1") for e in server.log)
    assert cache.touched == 1


def test_robots_txt_is_honoured_and_unreachable_robots_means_nothing(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add(
        "/robots.txt",
        b"User-agent: *\nDisallow: /private/\n\nUser-agent: countenance-test\nDisallow: /nope/\n",
        headers={"Content-Type": "text/plain"},
    )
    server.add("/private/a.png", PNG, headers={"Content-Type": "image/png"})
    server.add("/nope/a.png", PNG, headers={"Content-Type": "image/png"})
    server.add("/ok.png", PNG, headers={"Content-Type": "image/png"})
    fetcher = make_fetcher(allow_private=True)
    assert fetcher.fetch_image(server.url("/ok.png"), 1 << 20) == PNG
    for path in ("/nope/a.png",):
        with pytest.raises(FetchRefused) as refused:
            fetcher.fetch_image(server.url(path), 1 << 20)
        assert refused.value.reason == "robots"
    assert "/nope/a.png" not in server.paths()
    assert server.paths().count("/robots.txt") == 1  # cached per origin


def test_a_failing_robots_txt_disallows_everything(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"oops", status=500)
    server.add("/a.png", PNG, headers={"Content-Type": "image/png"})
    fetcher = make_fetcher(allow_private=True, retries=1)
    with pytest.raises(FetchRefused) as refused:
        fetcher.fetch_image(server.url("/a.png"), 1 << 20)
    assert refused.value.reason == "robots"
    assert "/a.png" not in server.paths()


def test_x_robots_tag_noai_refuses_a_photo(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"", status=404)
    server.add("/a.png", PNG, headers={"Content-Type": "image/png", "X-Robots-Tag": "noimageai"})
    with pytest.raises(FetchRefused) as refused:
        make_fetcher(allow_private=True).fetch_image(server.url("/a.png"), 1 << 20)
    assert refused.value.reason == "robots_noai"


def test_magic_bytes() -> None:
    assert is_image_bytes(PNG)
    assert is_image_bytes(b"\xff\xd8\xff\xe0rest")
    assert is_image_bytes(b"RIFF\0\0\0\0WEBPVP8 ")
    assert not is_image_bytes(b"RIFF\0\0\0\0AVI ")
    assert not is_image_bytes(b"<svg xmlns=...")
    assert not is_image_bytes(b"")


def test_crawl_delay_and_min_interval_space_requests_to_one_host(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    server.add("/robots.txt", b"User-agent: *\nCrawl-delay: 2\n")
    server.add("/a.png", PNG, headers={"Content-Type": "image/png"})
    slept: list[float] = []
    fetcher = make_fetcher(allow_private=True, sleep=slept.append)
    fetcher.fetch_image(server.url("/a.png"), 1 << 20)
    fetcher.fetch_image(server.url("/a.png"), 1 << 20)
    assert len(slept) == 2 and all(1.5 < s <= 2.0 for s in slept)
    capped = make_fetcher(allow_private=True, sleep=slept.append, retry_after_max_s=0.5)
    slept.clear()
    capped.fetch_image(server.url("/a.png"), 1 << 20)
    assert slept and max(slept) <= 0.5  # a robots.txt cannot stall the ingest past the cap


def test_host_header_names_the_host_not_the_pinned_address() -> None:
    import httpx

    fetcher = Fetcher(user_agent="t")
    pinned = fetcher._request(httpx.URL("https://93.184.216.34/a.png"), "example.org", {})
    assert pinned.headers["Host"] == "example.org"
    assert pinned.extensions["sni_hostname"] == "example.org"
    v6 = fetcher._request(httpx.URL("http://[::1]:8080/a.png"), "::1", {})
    assert v6.headers["Host"] == "[::1]:8080" and "sni_hostname" not in v6.extensions


def test_per_host_limit_bounds_requests_in_flight(
    server: LoopbackServer, make_fetcher: MakeFetcher
) -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    server.add("/robots.txt", b"", status=404)
    lock = threading.Lock()
    now = {"in": 0, "max": 0}

    def slow(_: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with lock:
            now["in"] += 1
            now["max"] = max(now["max"], now["in"])
        time.sleep(0.1)
        with lock:
            now["in"] -= 1
        return 200, {"Content-Type": "image/png"}, PNG

    server.routes["/slow.png"] = Route(handler=slow)
    fetcher = make_fetcher(allow_private=True, per_host=2)
    with ThreadPoolExecutor(6) as pool:
        got = list(
            pool.map(lambda _: fetcher.fetch_image(server.url("/slow.png"), 1 << 20), range(6))
        )
    assert got == [PNG] * 6
    assert now["max"] == 2
