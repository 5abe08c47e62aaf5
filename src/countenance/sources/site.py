"""A site the operator owns or is licensed to index, crawled breadth-first within bounds.

The crawl starts at one URL and never leaves the allow-listed domains: a domain ``D`` allows
``D`` itself and its subdomains (``www.D``, ``img.D``), nothing else (``notD`` or ``D.evil``
are other hosts). Every page and photo URL, and every redirect hop, is checked against the
list before it is requested. It fetches at most ``max_pages`` pages and follows links at most
``max_depth`` deep (the start page is depth 0).

It honours, besides everything the :class:`~countenance.sources.http.Fetcher` enforces
(robots.txt of every origin, private addresses, size and type limits):

- ``<meta name="robots" content="noai">`` or ``noimageai`` (also ``X-Robots-Tag`` on the page):
  the page's photos are not collected; on a photo's response, that photo is refused.
  ``noindex`` and ``none`` are read the same way: countenance is an index, and a page that
  asks not to be indexed has its photos left alone;
- ``nofollow`` in the same places: the page's links are not followed.

Pages are fetched while listing items (the crawl); photos only when ingest reads each one.
Photos are ``<img src>`` and ``srcset`` URLs and links whose path ends like a photo
(``<a href="full/1.jpg">``, never crawled as pages). Every photo's provenance names the page it
was first found on (``page_url``). Pages that fail
are logged and listed in :attr:`SiteSource.errors`; they never stop the crawl.

Example::

    with Fetcher.from_settings(settings) as fetcher:
        site = SiteSource("https://photos.example.org/", fetcher=fetcher,
                          allow_domains=["example.org"], max_pages=50, max_depth=2)
        db.ingest(site, source="our-archive")
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx

from countenance.errors import CountenanceError, InvalidArgument
from countenance.imaging import IMAGE_SUFFIXES
from countenance.ports import Item
from countenance.sources.http import Fetcher
from countenance.sources.manifest import ReadAhead
from countenance.types import Provenance

log = logging.getLogger("countenance")


def _host(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in ("http", "https"):
        return None
    return parsed.host.lower().rstrip(".") or None


def normalise_domain(domain: str) -> str:
    """``Example.ORG.`` -> ``example.org``; refuses what is not a plain host name."""
    host = _host(f"http://{domain.strip()}/")
    if not host or "/" in domain or "@" in domain or ":" in domain:
        raise InvalidArgument(f"--allow-domain {domain!r}: give a host name such as example.org")
    return host


def in_domains(url: str, domains: Iterable[str]) -> bool:
    """Whether ``url``'s host is one of ``domains`` or a subdomain of one.

    Example: ``in_domains("https://img.example.org/a.jpg", ["example.org"])`` is True.
    """
    host = _host(url)
    return host is not None and any(host == d or host.endswith("." + d) for d in domains)


class _Links(HTMLParser):
    """The links, images and robots directives of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[str] = []
        self.images: list[str] = []
        self.robots: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and a.get("href") and self.base is None:
            self.base = a["href"]
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "img":
            if a.get("src"):
                self.images.append(a["src"])
            for candidate in a.get("srcset", "").split(","):
                if candidate.strip():
                    self.images.append(candidate.strip().split()[0])
        elif tag == "meta" and a.get("name", "").lower() in ("robots", "countenance"):
            self.robots |= _directives(a.get("content", ""))


def _directives(value: str) -> set[str]:
    return {d.strip().lower() for d in value.replace(";", ",").split(",") if d.strip()}


class SiteSource:
    """Photos found by crawling one allow-listed site (see the module docstring)."""

    kind = "site"

    def __init__(
        self,
        start_url: str,
        *,
        fetcher: Fetcher,
        allow_domains: Iterable[str],
        max_pages: int = 200,
        max_depth: int = 3,
        read_ahead: int = 0,
    ) -> None:
        self.domains = tuple(normalise_domain(d) for d in allow_domains)
        if not self.domains:
            raise InvalidArgument("a site crawl needs at least one --allow-domain")
        if not in_domains(start_url, self.domains):
            raise InvalidArgument(f"{start_url}: not inside the allowed domains {self.domains}")
        if max_pages < 1 or max_depth < 0:
            raise InvalidArgument("max_pages must be at least 1 and max_depth at least 0")
        self.start_url = urldefrag(start_url)[0]
        self.fetcher = fetcher
        self.max_pages = max_pages
        self.max_depth = max_depth
        self.read_ahead = read_ahead
        self._ahead = ReadAhead(0)
        self.pages: list[str] = []  # pages fetched, in order
        self.errors: list[str] = []

    def close(self) -> None:
        """Stop fetching photos ahead."""
        self._ahead.close()

    def allowed(self, url: str) -> bool:
        return in_domains(url, self.domains)

    def items(self) -> Iterator[Item]:
        self._ahead.close()
        self._ahead = ahead = ReadAhead(self.read_ahead)
        queue: deque[tuple[str, int]] = deque([(self.start_url, 0)])
        queued = {self.start_url}
        photos: set[str] = set()
        while queue and len(self.pages) < self.max_pages:
            url, depth = queue.popleft()
            try:
                page = self.fetcher.fetch_page(url, allow=self.allowed)
            except CountenanceError as exc:
                self.errors.append(str(exc))
                log.info("page skipped: %s", exc)
                continue
            self.pages.append(page.url)
            parsed = _Links()
            try:
                parsed.feed(page.body.decode(_charset(page), "replace"))
                parsed.close()
            except Exception as exc:  # html.parser is lenient; a page it chokes on is skipped
                self.errors.append(f"{page.url}: unparsable HTML: {exc}")
                continue
            robots = parsed.robots | _directives(page.headers.get("x-robots-tag", ""))
            base = urljoin(page.url, parsed.base) if parsed.base else page.url
            if not robots & {"noai", "noimageai", "noindex", "none"}:
                linked = [h for h in parsed.links if _looks_like_photo(urljoin(base, h.strip()))]
                for src in [*parsed.images, *linked]:
                    photo = urldefrag(urljoin(base, src.strip()))[0]
                    if photo in photos or not self.allowed(photo):
                        continue
                    photos.add(photo)
                    yield ahead.add(
                        photo, Provenance(photo, page_url=page.url), self.fetcher, self.allowed
                    )
            if robots & {"nofollow", "none"} or depth >= self.max_depth:
                continue
            for href in parsed.links:
                link = urldefrag(urljoin(base, href.strip()))[0]
                if _looks_like_photo(link):
                    continue  # a link to a full-size photo is collected above, not crawled
                if link not in queued and self.allowed(link):
                    queued.add(link)
                    queue.append((link, depth + 1))


def _looks_like_photo(url: str) -> bool:
    path = urlsplit(url).path.lower()
    return any(path.endswith(suffix) for suffix in IMAGE_SUFFIXES)


def _charset(page: object) -> str:
    headers = getattr(page, "headers", {})
    ctype = headers.get("content-type", "") if headers else ""
    for part in ctype.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            try:
                "".encode(value.strip().strip('"'))
                return value.strip().strip('"')
            except LookupError:
                break
    return "utf-8"
