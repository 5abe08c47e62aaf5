"""A manifest: a CSV or JSON Lines file with one row per photo and its provenance.

Columns (CSV header, or JSON keys): ``url`` *or* ``path`` (one of the two), and optionally
``page_url``, ``jurisdiction`` (ISO 3166, overrides EXIF GPS and the source's), ``licence``,
``consent_ref``, ``taken_at`` (ISO 8601) and ``minor`` (true/false: the photo shows a minor,
so its faces are never stored). All of it is stored with the photo.

``path`` is relative to the manifest's folder, and a path that leads outside that folder
(``../``, an absolute path elsewhere, a symlink out) is refused: whoever writes the manifest
names photos beside it, never arbitrary files of the machine that ingests it. To ingest
photos from elsewhere, put the manifest at their common root.

URLs are fetched lazily, when ingest reads each item, by a :class:`~countenance.sources.http.
Fetcher` with all its checks. A row that cannot be used (no url or path, a bad value) becomes
an item that fails with reason ``bad_row``, so the summary lists it and the batch goes on; an
unknown CSV column refuses the whole manifest (a misspelt ``page-url`` must not silently drop
provenance).

Example::

    # photos.csv:  url,page_url,licence
    #              https://photos.example.org/1.jpg,https://example.org/p/1,CC-BY-4.0
    with Fetcher.from_settings(settings) as fetcher:
        db.ingest(ManifestSource("photos.csv", fetcher=fetcher), source="press")
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countenance.errors import BadImage, InvalidArgument
from countenance.ports import Item
from countenance.sources.folder import FileItem
from countenance.sources.http import Fetcher, UrlCheck
from countenance.types import Provenance

COLUMNS = frozenset(
    {"url", "path", "page_url", "jurisdiction", "licence", "consent_ref", "taken_at", "minor"}
)
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}


@dataclass(frozen=True, slots=True)
class UrlItem:
    """A photo at a URL; :meth:`read` fetches it (see Fetcher.fetch_image), or takes it from
    the source's :class:`ReadAhead` when it has one."""

    url: str
    provenance: Provenance
    fetcher: Fetcher
    allow: UrlCheck | None = None  # asked about every redirect hop (a site's allow-list)
    ahead: ReadAhead | None = None
    index: int = -1  # in ``ahead``

    def read(self, max_bytes: int) -> bytes:
        if self.ahead is not None:
            return self.ahead.read(self.index, max_bytes)
        return self.fetch(max_bytes)

    def fetch(self, max_bytes: int) -> bytes:
        return self.fetcher.fetch_image(self.url, max_bytes, allow=self.allow)


class ReadAhead:
    """Fetches the next ``window`` photos of a source in threads while ingest analyses the one
    before: ingest reads items one at a time, in order, and would otherwise wait on the
    network for each. Every host's own limits (requests in flight, interval, robots.txt)
    still hold, since all fetches go through the one Fetcher. At most ``window`` photos wait
    in memory. An item read again, or out of order, is fetched directly.

    Example::

        ahead = ReadAhead(4)
        items = [ahead.add(url, provenance, fetcher) for url, provenance in rows]
        data = items[0].read(max_bytes)       # items 1..4 are on their way meanwhile
        ahead.close()
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._items: list[UrlItem] = []
        self._futures: dict[int, Future[bytes]] = {}
        self._next = 0  # the first index not yet submitted
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def add(
        self, url: str, provenance: Provenance, fetcher: Fetcher, allow: UrlCheck | None = None
    ) -> UrlItem:
        item = UrlItem(url, provenance, fetcher, allow, self if self.window > 0 else None)
        item = dataclasses.replace(item, index=len(self._items))
        self._items.append(item)
        return item

    def read(self, index: int, max_bytes: int) -> bytes:
        with self._lock:
            future = self._futures.pop(index, None)
            if future is None and index >= self._next:
                self._next = index
            if self._next <= index + self.window:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.window, "countenance-fetch")
                last = min(len(self._items), index + self.window + 1)
                for j in range(self._next, last):
                    self._futures[j] = self._pool.submit(self._items[j].fetch, max_bytes)
                self._next = max(self._next, last)
            if future is None:
                future = self._futures.pop(index, None)
        if future is None:  # read again, or out of order
            return self._items[index].fetch(max_bytes)
        return future.result()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            self._futures.clear()


@dataclass(frozen=True, slots=True)
class RefusedItem:
    """An item that cannot be collected; reading it raises BadImage with the reason."""

    provenance: Provenance
    message: str
    reason: str

    def read(self, max_bytes: int) -> bytes:
        raise BadImage(self.message, reason=self.reason)


class ManifestSource:
    """The rows of a ``.csv`` or ``.jsonl`` manifest, in file order."""

    kind = "manifest"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fetcher: Fetcher | None = None,
        read_ahead: int = 0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidArgument(f"{self.path}: no such manifest file")
        if self.path.suffix.lower() not in (".csv", ".jsonl"):
            raise InvalidArgument(f"{self.path}: a manifest is a .csv or .jsonl file")
        self.root = self.path.resolve().parent
        self.fetcher = fetcher
        self.read_ahead = read_ahead
        self._ahead = ReadAhead(0)

    def items(self) -> Iterator[Item]:
        self._ahead.close()
        self._ahead = ReadAhead(self.read_ahead)
        for line, row in self._rows():
            yield self._item(line, row)

    def close(self) -> None:
        """Stop fetching ahead (photos in flight are finished, queued ones dropped)."""
        self._ahead.close()

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as fh:
                if self.path.suffix.lower() == ".csv":
                    reader = csv.DictReader(fh)
                    unknown = set(reader.fieldnames or ()) - COLUMNS
                    if unknown:
                        raise InvalidArgument(
                            f"{self.path}: unknown column(s) {', '.join(sorted(unknown))};"
                            f" known: {', '.join(sorted(COLUMNS))}"
                        )
                    for row in reader:
                        yield reader.line_num, {k: v for k, v in row.items() if k is not None}
                    return
                for n, text in enumerate(fh, 1):
                    if not text.strip():
                        continue
                    try:
                        value = json.loads(text)
                    except json.JSONDecodeError as exc:
                        value = {"_error": f"not JSON: {exc}"}
                    yield n, value if isinstance(value, dict) else {"_error": "not an object"}
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InvalidArgument(f"{self.path}: cannot read manifest: {exc}") from exc

    def _item(self, line: int, row: dict[str, Any]) -> Item:
        where = f"{self.path.name}:{line}"
        try:
            return self._parse(where, row)
        except _BadRow as exc:
            return RefusedItem(Provenance(where), f"{where}: {exc}", "bad_row")

    def _parse(self, where: str, row: dict[str, Any]) -> Item:
        if "_error" in row:
            raise _BadRow(row["_error"])
        unknown = set(row) - COLUMNS
        if unknown:
            raise _BadRow(f"unknown key(s) {', '.join(sorted(unknown))}")
        text = {k: _text(k, v) for k, v in row.items()}
        url, path = text.get("url"), text.get("path")
        if bool(url) == bool(path):
            raise _BadRow("needs exactly one of url and path")
        page_url = text.get("page_url")
        if page_url and not page_url.lower().startswith(("http://", "https://")):
            raise _BadRow(f"page_url {page_url!r} is not an http(s) URL")
        provenance = Provenance(
            uri="",
            page_url=page_url,
            jurisdiction=text.get("jurisdiction"),
            minors=_flag(row.get("minor")),
            licence=text.get("licence"),
            consent_ref=text.get("consent_ref"),
            taken_at=_when(text.get("taken_at")),
        )
        if url:
            if not url.lower().startswith(("http://", "https://")):
                raise _BadRow(f"url {url!r} is not an http(s) URL")
            named = _with_uri(provenance, url)
            if self.fetcher is None:
                return RefusedItem(named, f"{where}: no fetcher to fetch {url}", "bad_row")
            return self._ahead.add(url, named, self.fetcher)
        assert path is not None
        resolved = (self.root / path).resolve()
        if not resolved.is_relative_to(self.root):
            return RefusedItem(
                _with_uri(provenance, path),
                f"{where}: {path} leads outside the manifest's folder {self.root}; refused",
                "outside_source",
            )
        return FileItem(self.root / path, self.root, _with_uri(provenance, str(resolved)))


class _BadRow(Exception):
    pass


def _text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if key == "minor" and isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, str):
        raise _BadRow(f"{key} must be text, not {type(value).__name__}")
    return value.strip() or None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = ("" if value is None else str(value)).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _BadRow(f"minor must be true or false, not {value!r}")


def _when(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError as exc:
        raise _BadRow(f"taken_at {value!r} is not an ISO 8601 date or time") from exc


def _with_uri(p: Provenance, uri: str) -> Provenance:
    return dataclasses.replace(p, uri=uri)
