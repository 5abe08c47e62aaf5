"""A labelled folder of photos: ``manifest.csv`` with columns ``path,identity``, as
``../shared/faces`` and ``countenance eval`` use, and as ``models calibrate`` reads.

Example: ``read_manifest(Path("faces/lfw"))[0]`` is ``(Path("faces/lfw/A/A_0001.jpg"), "A")``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from countenance.errors import InvalidArgument


def read_manifest(directory: Path) -> list[tuple[Path, str]]:
    """``manifest.csv`` with columns ``path,identity``; paths relative to ``directory``."""
    path = directory / "manifest.csv"
    if not path.is_file():
        raise InvalidArgument(f"{path}: no manifest.csv (columns path,identity)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "identity"} <= set(reader.fieldnames):
            raise InvalidArgument(f"{path}: needs the columns path and identity")
        rows = [(directory / r["path"], r["identity"]) for r in reader]
    return sorted(rows, key=lambda r: str(r[0]))
