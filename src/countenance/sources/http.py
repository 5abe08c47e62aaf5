"""Fetching photos and pages over HTTP(S), politely and safely.

Safety: every host is resolved here, *every* address it resolves to is checked, and the
connection goes to the checked address (the URL is rewritten to the IP, with the original
``Host`` header and, for https, the original name as TLS SNI and certificate name), so a DNS
answer cannot change between the check and the connect (DNS rebinding). Redirects are followed
by hand, each hop checked the same way, up to a limit. Loopback, private (RFC 1918, ULA) and
shared (100.64/10) addresses are refused unless ``allow_private``; link-local (169.254/16, the
cloud metadata address), multicast, unspecified and reserved addresses are refused always.
No proxy from the environment is used (it would connect somewhere unchecked). Each host gets
its own connection pool, so a TLS connection made for one name never serves another.

Politeness: robots.txt of each origin is fetched once and honoured (4xx: all allowed;
5xx or unreachable: all disallowed, as RFC 9309 says), with its Crawl-delay; requests to one
host are spaced by ``min_interval_s`` and at most ``per_host`` run at once; a configurable
User-Agent names the operator's contact. Errors that may pass (connection errors, 5xx, 429)
are retried with exponential back-off, honouring Retry-After up to a cap.

Limits: a size cap checked against Content-Length and again while streaming, a deadline for
the whole fetch, ``image/*`` content type *and* image magic bytes, and ``X-Robots-Tag:
noai``/``noimageai`` honoured. Conditional re-fetch: with a :class:`FetchCache`, a URL whose
photo is stored is asked for with If-None-Match / If-Modified-Since; a 304 raises
:class:`NotModified`.

Example::

    fetcher = Fetcher.from_settings(settings, cache=catalog.fetch_cache())
    data = fetcher.fetch_image("https://photos.example.org/a.jpg", max_bytes=20_000_000)
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import threading
import time
import urllib.robotparser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin

import httpx

from countenance import imaging
from countenance.errors import FetchRefused, InvalidArgument, NotModified
from countenance.sources.addresses import Resolver, check_address, system_resolver

if TYPE_CHECKING:
    from countenance.config import Settings

log = logging.getLogger("countenance")

UrlCheck = Callable[[str], bool]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAGIC: tuple[tuple[bytes, int], ...] = (
    (b"\xff\xd8\xff", 0),  # JPEG
    (b"\x89PNG\r\n\x1a\n", 0),
    (b"GIF87a", 0),
    (b"GIF89a", 0),
    (b"WEBP", 8),  # RIFF....WEBP
    (b"BM", 0),
    (b"II*\x00", 0),  # TIFF, little-endian
    (b"MM\x00*", 0),  # TIFF, big-endian
)


class Cache(Protocol):
    """Where validators of past fetches are kept (see countenance.catalog.collect)."""

    def validators(self, url: str) -> tuple[str | None, str | None] | None: ...

    def record(
        self,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        sha256: str | None,
        status: int,
    ) -> None: ...

    def touch(self, url: str, status: int) -> None: ...


def is_image_bytes(data: bytes) -> bool:
    """Whether ``data`` starts like one of the image formats countenance decodes."""
    for magic, offset in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return offset == 0 or data[:4] == b"RIFF"
    return len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456"  # PNM


@dataclass
class _Host:
    """Politeness state of one host."""

    slots: threading.Semaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response body that passed every check."""

    url: str  # the final URL, after redirects
    body: bytes
    content_type: str
    headers: httpx.Headers


class Fetcher:
    """The one way countenance talks HTTP. Thread-safe; close it when done.

    ``transport`` replaces the network (tests pass one that refuses anything outside
    127.0.0.0/8), ``resolver`` replaces DNS, ``sleep`` replaces waiting. An injected
    transport is one connection pool for every host; without one, each host name gets its
    own, so a TLS connection made for one name never carries another's requests.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        allow_private: bool = False,
        cache: Cache | None = None,
        timeout_s: float = 20.0,
        deadline_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        retry_after_max_s: float = 60.0,
        min_interval_s: float = 0.5,
        per_host: int = 2,
        max_redirects: int = 5,
        max_page_bytes: int = 5 * 1024 * 1024,
        respect_robots: bool = True,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_host < 1 or retries < 0 or max_redirects < 0:
            raise InvalidArgument("per_host must be >= 1; retries and max_redirects >= 0")
        self.user_agent = user_agent
        self.robots_agent = (user_agent.split("/", 1)[0].split() or ["*"])[0]
        self.allow_private = allow_private
        self.cache = cache
        self.timeout = httpx.Timeout(timeout_s)
        self.deadline_s = deadline_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.retry_after_max_s = retry_after_max_s
        self.min_interval_s = min_interval_s
        self.per_host = per_host
        self.max_redirects = max_redirects
        self.max_page_bytes = max_page_bytes
        self.respect_robots = respect_robots
        self.resolve: Resolver = resolver or system_resolver
        self._transport = transport
        self._sleep = sleep
        self._clients: dict[str, httpx.Client] = {}
        self._hosts: dict[str, _Host] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._lock = threading.Lock()
        self._robots_lock = threading.Lock()
        self.requests = 0  # every request sent, for reports and tests

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> Fetcher:
        """A fetcher configured by ``settings``; keyword arguments override."""
        kwargs: dict[str, object] = {
            "user_agent": settings.user_agent,
            "timeout_s": settings.fetch_timeout_s,
            "deadline_s": settings.fetch_deadline_s,
            "retries": settings.fetch_retries,
            "backoff_s": settings.fetch_backoff_s,
            "retry_after_max_s": settings.fetch_retry_after_max_s,
            "min_interval_s": settings.fetch_min_interval_s,
            "per_host": settings.fetch_per_host,
            "max_redirects": settings.fetch_max_redirects,
            "max_page_bytes": settings.max_page_bytes,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # public ---------------------------------------------------------------------------------

    def fetch_image(self, url: str, max_bytes: int, *, allow: UrlCheck | None = None) -> bytes:
        """The photo at ``url``: refused (FetchRefused) unless it is an image by type and
        bytes, within ``max_bytes``, allowed by robots.txt and X-Robots-Tag; raises
        NotModified when the cache says it is stored and the server says it is unchanged."""
        # identity: photos are compressed already, and a gzip-encoded body is a bomb vector
        headers: dict[str, str] = {"Accept": "image/*", "Accept-Encoding": "identity"}
        known = self.cache.validators(url) if self.cache is not None else None
        if known is not None:
            etag, modified = known
            if etag:
                headers["If-None-Match"] = etag
            if modified:
                headers["If-Modified-Since"] = modified
        try:
            got = self.get(url, max_bytes, headers=headers, kind="image", allow=allow)
        except NotModified:
            if self.cache is not None:
                self.cache.touch(url, 304)
            raise
        if not is_image_bytes(got.body):
            raise FetchRefused(
                f"{url}: says {got.content_type or 'nothing'} but its bytes are not an image",
                reason="not_an_image",
            )
        if self.cache is not None:
            self.cache.record(
                url,
                etag=got.headers.get("etag"),
                last_modified=got.headers.get("last-modified"),
                sha256=imaging.sha256(got.body),
                status=200,
            )
        return got.body

    def fetch_page(self, url: str, *, allow: UrlCheck | None = None) -> Fetched:
        """An HTML page for the site crawler (``text/html``, at most ``max_page_bytes``)."""
        headers = {"Accept": "text/html"}
        return self.get(url, self.max_page_bytes, headers=headers, kind="page", allow=allow)

    def allowed_by_robots(self, url: str) -> bool:
        """Whether robots.txt of ``url``'s origin lets this user agent fetch it."""
        if not self.respect_robots:
            return True
        return self._robots_for(httpx.URL(url)).can_fetch(self.robots_agent, url)

    # the request loop -----------------------------------------------------------------------

    def get(
        self,
        url: str,
        max_bytes: int,
        *,
        headers: dict[str, str],
        kind: str = "image",
        allow: UrlCheck | None = None,
    ) -> Fetched:
        """GET ``url`` through every check, following redirects by hand; ``allow`` is asked
        about every hop before it is requested (the site crawler's allow-list)."""
        started = time.monotonic()
        current = url
        for _hop in range(self.max_redirects + 1):
            if allow is not None and not allow(current):
                raise FetchRefused(f"{current}: outside the allowed domains", "outside_allowlist")
            target, host = self._checked_url(current)
            if kind != "robots" and not self.allowed_by_robots(current):
                raise FetchRefused(f"{current}: disallowed by robots.txt", reason="robots")
            with self._send(target, host, headers, started) as response:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchRefused(f"{current}: redirect without a Location", "http_error")
                    current = urljoin(current, location)
                    continue
                if response.status_code == 304:
                    raise NotModified(f"{url}: not modified")
                if response.status_code != 200:
                    raise FetchRefused(
                        f"{current}: HTTP {response.status_code}",
                        reason=f"http_{response.status_code}" if kind == "robots" else "http_error",
                    )
                tags = response.headers.get("x-robots-tag", "").lower()
                if kind != "robots" and ("noai" in tags or "noimageai" in tags):
                    raise FetchRefused(f"{current}: X-Robots-Tag {tags}", reason="robots_noai")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                self._check_type(current, ctype, kind)
                body = self._read(response, current, max_bytes, started)
                return Fetched(current, body, ctype, response.headers)
        raise FetchRefused(f"{url}: more than {self.max_redirects} redirects", "too_many_redirects")

    def _checked_url(self, url: str) -> tuple[httpx.URL, str]:
        """``url`` with its host replaced by a checked address of it, and the host name."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise FetchRefused(f"{url!r}: not a URL: {exc}", reason="bad_url") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise FetchRefused(f"{url}: only http and https URLs are fetched", reason="bad_url")
        if parsed.userinfo:
            raise FetchRefused(f"{url}: credentials in URLs are refused", reason="bad_url")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self.resolve(parsed.host, port)
        if not addresses:
            raise FetchRefused(f"{parsed.host}: resolves to no address", reason="dns")
        for address in addresses:  # one bad answer taints the name: refuse, not pick
            try:
                check_address(address, allow_private=self.allow_private)
            except FetchRefused as exc:
                raise FetchRefused(f"{url}: {parsed.host} -> {exc}", reason=exc.reason) from None
        return parsed.copy_with(host=addresses[0]), parsed.host

    @contextlib.contextmanager
    def _send(
        self, target: httpx.URL, host: str, headers: dict[str, str], started: float
    ) -> Iterator[httpx.Response]:
        """Send one GET to a checked address, retrying what may pass; yields the response
        with its body unread."""
        attempt = 0
        while True:
            asked: float | None = None
            # the slot is held while the body streams: per_host bounds requests in flight
            with self._slot(host):
                request = self._request(target, host, headers)
                self.requests += 1
                try:
                    response = self._client(host).send(request, stream=True)
                except httpx.TransportError as exc:
                    response = None
                    error: Exception = exc
                if response is not None and response.status_code not in RETRY_STATUSES:
                    try:
                        yield response
                    finally:
                        response.close()
                    return
                if response is not None:
                    response.close()
                    error = FetchRefused(f"HTTP {response.status_code}", reason="http_error")
                    asked = _retry_after(response.headers.get("retry-after"))
            wait = self.backoff_s * (2**attempt)
            if asked is not None:
                if asked > self.retry_after_max_s:
                    raise FetchRefused(
                        f"{host}: asked to wait {asked:.0f} s, more than "
                        f"{self.retry_after_max_s:.0f} s",
                        reason="http_error",
                    )
                wait = max(wait, asked)
            attempt += 1
            out_of_time = time.monotonic() - started + wait > self.deadline_s
            if attempt > self.retries or out_of_time:
                reason = "http_error" if response is not None else "connect_error"
                raise FetchRefused(f"{host}: {error} (after {attempt} tries)", reason=reason)
            self._sleep(wait)

    def _request(self, target: httpx.URL, host: str, headers: dict[str, str]) -> httpx.Request:
        sent = dict(headers)
        sent["User-Agent"] = self.user_agent
        default_port = 443 if target.scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal
        sent["Host"] = name if target.port in (None, default_port) else f"{name}:{target.port}"
        extensions = {"timeout": self.timeout.as_dict()}
        if target.scheme == "https":
            extensions["sni_hostname"] = host  # type: ignore[assignment]
        return httpx.Request("GET", target, headers=sent, extensions=extensions)

    def _client(self, host: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                # one pool per host name: connections are keyed by address, and a TLS
                # session set up for one name must not carry another name's requests
                transport = self._transport or httpx.HTTPTransport(retries=0)
                client = httpx.Client(transport=transport, timeout=self.timeout, trust_env=False)
                self._clients[host] = client
            return client

    @contextlib.contextmanager
    def _slot(self, host: str) -> Iterator[None]:
        """Wait for a free slot of ``host`` and its minimum interval."""
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                state = self._hosts[host] = _Host(threading.Semaphore(self.per_host))
        with state.slots:
            with state.lock:
                interval = max(self.min_interval_s, self._crawl_delay(host))
                wait = state.last + interval - time.monotonic()
                if wait > 0:
                    self._sleep(wait)
                state.last = time.monotonic()
            yield

    def _check_type(self, url: str, ctype: str, kind: str) -> None:
        if kind == "image" and not (
            ctype.startswith("image/") or ctype in ("", "application/octet-stream")
        ):
            raise FetchRefused(f"{url}: content type {ctype}, not an image", "not_an_image")
        if kind == "page" and ctype not in ("text/html", "application/xhtml+xml"):
            raise FetchRefused(f"{url}: content type {ctype}, not an HTML page", "not_a_page")

    def _read(self, response: httpx.Response, url: str, max_bytes: int, started: float) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchRefused(
                f"{url}: {declared} bytes is more than the limit of {max_bytes}", "too_large"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:  # whatever Content-Length said
                    raise FetchRefused(f"{url}: more than {max_bytes} bytes", "too_large")
                if time.monotonic() - started > self.deadline_s:
                    raise FetchRefused(
                        f"{url}: not received within {self.deadline_s:.0f} s", "too_slow"
                    )
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise FetchRefused(f"{url}: transfer failed: {exc}", reason="truncated") from exc
        if not size:
            raise FetchRefused(f"{url}: empty response", reason="empty")
        return b"".join(chunks)

    # robots.txt -----------------------------------------------------------------------------

    def _robots_for(self, url: httpx.URL) -> urllib.robotparser.RobotFileParser:
        origin = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
        with self._lock:
            parser = self._robots.get(origin)
        if parser is not None:
            return parser
        with self._robots_lock:  # one fetch per origin, however many threads ask
            return self._fetch_robots(origin)

    def _fetch_robots(self, origin: str) -> urllib.robotparser.RobotFileParser:
        with self._lock:
            parser = self._robots.get(origin)
        if parser is not None:
            return parser
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            got = self.get(origin + "/robots.txt", self.max_page_bytes, headers={}, kind="robots")
            parser.parse(got.body.decode("utf-8", "replace").splitlines())
        except FetchRefused as exc:
            if exc.reason.startswith("http_4"):
                parser.allow_all = True  # type: ignore[attr-defined] # no robots.txt: no rules
            else:
                # unreachable or failing robots.txt: RFC 9309 says assume complete disallow
                log.info("robots.txt of %s unavailable (%s): nothing fetched there", origin, exc)
                parser.disallow_all = True  # type: ignore[attr-defined]
            parser.modified()
        with self._lock:
            self._robots[origin] = parser
        return parser

    def _crawl_delay(self, host: str) -> float:
        for origin, parser in list(self._robots.items()):
            if origin.split("://", 1)[1].split(":")[0] == host:
                delay = parser.crawl_delay(self.robots_agent)
                if delay is not None:
                    return min(float(delay), self.retry_after_max_s)
        return 0.0


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
