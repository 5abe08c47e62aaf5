"""Photos inside a ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz`` archive, read in place: nothing is
extracted to disk.

An archive is hostile until read. Refused whole, before anything is read: more entries than
``max_entries``, or a file that is not a readable archive. Refused per entry, with a clear
reason, while the rest is ingested:

- a name that is absolute (``/etc/x``, ``C:\\x``) or climbs (``..``): ``unsafe_path``;
- a symlink, hard link, device or FIFO (tar), a symlink or encrypted entry (zip): ``unsafe_entry``;
- a zip entry whose declared compression ratio is above ``max_ratio``, or which inflates past
  its compressed size times ``max_ratio`` while being read (a lying header): ``archive_bomb``;
- entries past ``max_total_bytes`` unpacked in all (for tar archives also past ``max_ratio``
  times the archive's size on disk, the only ratio a gzip stream has): ``archive_limit``.

A tar member list is read up to that budget and no further, so a gzip bomb costs at most the
budget's worth of decompression.

Example::

    for item in ArchiveSource("photos.zip").items():
        data = item.read(max_bytes=64 << 20)
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from countenance.errors import FetchRefused, InvalidArgument
from countenance.ports import Item
from countenance.sources.manifest import RefusedItem
from countenance.types import Provenance

if TYPE_CHECKING:
    from countenance.config import Settings

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_CHUNK = 1 << 16


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an archive by its suffix."""
    return str(path).lower().endswith(SUFFIXES)


def unsafe_name(name: str) -> bool:
    """Whether an entry name is absolute or climbs out of the archive.

    Example: ``unsafe_name("../../etc/passwd")`` is True; ``unsafe_name("a/b.jpg")`` is False.
    """
    n = name.replace("\\", "/")
    return n.startswith("/") or bool(re.match(r"^[A-Za-z]:", n)) or ".." in n.split("/")


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """One regular-file entry; ``provenance.uri`` is ``ARCHIVE!/NAME``."""

    source: ArchiveSource
    name: str
    provenance: Provenance
    index: int  # of the entry in the source's list (names may repeat)
    compressed: int  # zip: the entry's compressed size; tar: 0

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()

    def read(self, max_bytes: int) -> bytes:
        return self.source._read(self, max_bytes)


class ArchiveSource:
    """The regular files of an archive, in archive order."""

    kind = "archive"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int = 100_000,
        max_total_bytes: int = 16 * 1024**3,
        max_ratio: float = 200.0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidArgument(f"{self.path}: no such archive")
        if not is_archive(self.path):
            raise InvalidArgument(f"{self.path}: not a {', '.join(SUFFIXES)} archive")
        self.max_entries = max_entries
        self.max_total_bytes = max_total_bytes
        self.max_ratio = max_ratio
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._entries: list[zipfile.ZipInfo | tarfile.TarInfo] = []
        self._unpacked = 0  # bytes read so far, across entries

    @classmethod
    def from_settings(cls, path: str | os.PathLike[str], settings: Settings) -> ArchiveSource:
        return cls(
            path,
            max_entries=settings.archive_max_entries,
            max_total_bytes=settings.archive_max_total_bytes,
            max_ratio=settings.archive_max_ratio,
        )

    def close(self) -> None:
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()
        self._zip = self._tar = None

    def items(self) -> Iterator[Item]:
        if self.path.name.lower().endswith(".zip"):
            yield from self._zip_items()
        else:
            yield from self._tar_items()

    def _uri(self, name: str) -> str:
        return f"{self.path.resolve()}!/{name}"

    def _refused(self, name: str, message: str, reason: str) -> RefusedItem:
        return RefusedItem(
            Provenance(self._uri(name)), f"{self.path.name}!/{name}: {message}", reason
        )

    # zip --------------------------------------------------------------------------------------

    def _zip_items(self) -> Iterator[Item]:
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InvalidArgument(f"{self.path}: not a readable zip archive: {exc}") from exc
        if len(infos) > self.max_entries:
            raise InvalidArgument(
                f"{self.path}: {len(infos)} entries, more than {self.max_entries}; refused whole"
            )
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename
            mode = (info.external_attr >> 16) & 0o170000
            ratio = info.file_size / max(1, info.compress_size)
            if unsafe_name(name):
                yield self._refused(name, "absolute or '..' path; refused", "unsafe_path")
            elif mode == 0o120000 or info.flag_bits & 0x1:
                yield self._refused(name, "symlink or encrypted entry; refused", "unsafe_entry")
            elif ratio > self.max_ratio:
                yield self._refused(
                    name,
                    f"compression ratio {ratio:.0f} is above {self.max_ratio:.0f}"
                    " (a zip bomb?); refused",
                    "archive_bomb",
                )
            else:
                self._entries.append(info)
                yield ArchiveItem(
                    self,
                    name,
                    Provenance(self._uri(name)),
                    len(self._entries) - 1,
                    info.compress_size,
                )

    # tar --------------------------------------------------------------------------------------

    def _tar_items(self) -> Iterator[Item]:
        try:
            self._tar = tarfile.open(self.path, mode="r:*")  # noqa: SIM115 - kept open, closed by close()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidArgument(f"{self.path}: not a readable tar archive: {exc}") from exc
        budget = min(self.max_total_bytes, self.max_ratio * self.path.stat().st_size)
        declared = 0
        count = 0
        while True:
            try:
                member = self._tar.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                yield self._refused("...", f"archive unreadable from here on: {exc}", "corrupt")
                return
            if member is None:
                return
            count += 1
            if count > self.max_entries:
                raise InvalidArgument(
                    f"{self.path}: more than {self.max_entries} entries; refused whole"
                )
            name = member.name
            if member.isdir():
                continue
            if unsafe_name(name):
                yield self._refused(name, "absolute or '..' path; refused", "unsafe_path")
                continue
            if not member.isfile():
                yield self._refused(
                    name, "link, device or FIFO; only regular files are read", "unsafe_entry"
                )
                continue
            declared += member.size
            if declared > budget:
                # stop listing: reading further headers of a gzip stream means inflating
                # everything before them, which is what the budget is there to prevent
                yield self._refused(
                    name,
                    f"the archive unpacks to more than {budget:.0f} bytes (a bomb, or past"
                    " archive_max_total_bytes); this entry and the rest are refused",
                    "archive_limit",
                )
                return
            self._entries.append(member)
            yield ArchiveItem(self, name, Provenance(self._uri(name)), len(self._entries) - 1, 0)

    # reading ----------------------------------------------------------------------------------

    def _read(self, item: ArchiveItem, max_bytes: int) -> bytes:
        shown = f"{self.path.name}!/{item.name}"
        left = self.max_total_bytes - self._unpacked
        if left <= 0:
            raise FetchRefused(f"{shown}: past archive_max_total_bytes", "archive_limit")
        limit = min(max_bytes, left)
        bomb = self._zip is not None and item.compressed * self.max_ratio < limit
        if bomb:
            limit = int(item.compressed * self.max_ratio)
        try:
            with self._open(item) as fh:
                data = _read_up_to(fh, limit + 1)
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, KeyError) as exc:
            raise FetchRefused(f"{shown}: cannot read entry: {exc}", "corrupt") from exc
        self._unpacked += len(data)
        if len(data) > limit:
            if bomb:
                raise FetchRefused(
                    f"{shown}: inflates past {self.max_ratio:.0f} times its compressed size"
                    " (a zip bomb with a lying header); refused",
                    "archive_bomb",
                )
            reason = "too_large" if limit == max_bytes else "archive_limit"
            raise FetchRefused(f"{shown}: more than {limit} bytes unpacked; refused", reason)
        if not data:
            raise FetchRefused(f"{shown}: empty entry", "empty")
        return data

    def _open(self, item: ArchiveItem) -> IO[bytes]:
        entry = self._entries[item.index]
        if isinstance(entry, zipfile.ZipInfo):
            assert self._zip is not None
            return self._zip.open(entry)
        assert self._tar is not None
        fh = self._tar.extractfile(entry)
        if fh is None:
            raise KeyError(item.name)
        return fh


def _read_up_to(fh: IO[bytes], n: int) -> bytes:
    """At most ``n`` bytes, in chunks, so a lying size never allocates more."""
    chunks: list[bytes] = []
    size = 0
    while size < n:
        chunk = fh.read(min(_CHUNK, n - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
