"""Files holding faces are readable by their owner only (issue 18): whatever the caller's
umask, the store's folders are 0700 and its files 0600 unless the operator sets ``umask``."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import need_faces


def cli(data: Path, *args: str, env: dict[str, str] | None = None) -> None:
    def loose() -> None:
        os.umask(0o022)  # a typical login shell's: others may read what is written

    done = subprocess.run(
        [sys.executable, "-m", "countenance", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=loose,
        env={
            **os.environ,
            "COUNTENANCE_MODEL": "dlib",
            "COUNTENANCE_EMBED_VIEWS": "1",
            **(env or {}),
        },
    )
    assert done.returncode == 0, done.stderr


def modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return out


def test_the_store_is_its_owners_only_under_a_loose_umask(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(need_faces("small_examples") / "joe_biden", photos)
    data = tmp_path / "data"
    cli(data, "sources", "add", "s", "--basis", "consent")
    cli(data, "ingest", str(photos), "--source", "s")
    found = modes(data)
    assert "catalog.db" in found and any(name.startswith("index/") for name in found)
    loose = {name: oct(mode) for name, mode in found.items() if mode & 0o077}
    assert loose == {}


def test_an_older_store_is_tightened_and_the_operator_may_share_with_a_group(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    cli(data, "sources", "add", "s", "--basis", "consent")
    (data / "catalog.db").chmod(0o644)  # as a store made before this was written
    data.chmod(0o755)
    cli(data, "sources", "list")
    assert stat.S_IMODE((data / "catalog.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    cli(shared, "sources", "add", "s", "--basis", "consent", env={"COUNTENANCE_UMASK": "027"})
    assert stat.S_IMODE((shared / "catalog.db").stat().st_mode) == 0o640
