"""Which source a path names: a manifest (``.csv``, ``.jsonl``), an archive (``.zip``, ``.tar``,
``.tar.gz``, ``.tgz``) or else a folder or single photo.

Example::

    src = open_path("photos.csv", settings, fetcher=fetcher)   # a ManifestSource
"""

from __future__ import annotations

import os
from pathlib import Path

from countenance.config import Settings
from countenance.ports import Source
from countenance.sources.archive import ArchiveSource, is_archive
from countenance.sources.folder import FolderSource
from countenance.sources.http import Fetcher
from countenance.sources.manifest import ManifestSource

MANIFEST_SUFFIXES = (".csv", ".jsonl")


def open_path(
    path: str | os.PathLike[str], settings: Settings, *, fetcher: Fetcher | None = None
) -> Source:
    """The source ``path`` names, by its suffix; a folder is always a folder."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        return ManifestSource(p, fetcher=fetcher, read_ahead=settings.fetch_read_ahead)
    if p.is_file() and is_archive(p):
        return ArchiveSource.from_settings(p, settings)
    return FolderSource(p)
