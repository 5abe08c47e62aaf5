"""Files that hold personal data: written whole or not at all, readable by their owner only.

Example: ``write_private(Path("DATA/jobs/7.json"), b"{...}")``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """``data`` into ``path``, whole or not at all: a 0600 temporary file beside it (mkstemp
    makes it so), flushed to disk, then renamed over ``path``."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
