"""A folder of photos on local disk, walked recursively.

Symlinked folders are not descended into (no loops), and a symlinked file is read only when it
resolves to a file inside the folder: a link that leads outside is reported, never followed.

Example::

    for item in FolderSource("photos/").items():
        data = item.read(max_bytes=64 << 20)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from countenance.errors import BadImage, InvalidArgument
from countenance.imaging import read_file
from countenance.types import Provenance


@dataclass(frozen=True, slots=True)
class FileItem:
    """One file of a :class:`FolderSource`; ``provenance.uri`` is its absolute path."""

    path: Path
    root: Path
    provenance: Provenance

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    def read(self, max_bytes: int) -> bytes:
        if self.path.is_symlink():
            target = self.path.resolve()
            if not target.is_relative_to(self.root):
                raise BadImage(
                    f"{self.path}: symlink leads outside {self.root}; not followed",
                    reason="outside_source",
                )
        return read_file(self.path, max_bytes)


class FolderSource:
    """Every file under ``path`` (a folder, or a single file), in a stable sorted order."""

    kind = "folder"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InvalidArgument(f"{self.path}: no such file or folder")

    def items(self) -> Iterator[FileItem]:
        root = self.path.resolve()
        if root.is_file():
            yield FileItem(root, root.parent, Provenance(str(root)))
            return
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                yield FileItem(path, root, Provenance(str(path)))


class FileListSource:
    """Exactly the files listed, in the order given (for evaluation and scripted ingests)."""

    kind = "folder"

    def __init__(self, paths: list[Path], root: Path | None = None) -> None:
        self.paths = [Path(p).resolve() for p in paths]
        self.root = (root or Path("/")).resolve()

    def items(self) -> Iterator[FileItem]:
        for path in self.paths:
            yield FileItem(path, self.root, Provenance(str(path)))
