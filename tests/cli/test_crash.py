"""kill -9 in the middle of an ingest, then the same command: one clean run's result."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import need_faces

pytestmark = pytest.mark.slow


def cli(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "countenance", "--data", str(data), *args]


def faces_in_catalog(data: Path) -> tuple[int, int]:
    db = data / "catalog.db"
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            photos = conn.execute("select count(*) from photos").fetchone()[0]
            faces = conn.execute("select count(*) from faces where skip_reason is null").fetchone()[
                0
            ]
        except sqlite3.OperationalError:
            return 0, 0
    return photos, faces


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_then_rerun_equals_one_clean_run(tmp_path: Path, workers: str) -> None:
    lfw = need_faces("lfw")
    folder = tmp_path / "photos"
    folder.mkdir()
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:25]
    for person in people:
        (folder / person.name).symlink_to(person)  # not followed: symlinked folders are skipped
    for person in people:
        for photo in sorted(person.iterdir()):
            (folder / f"{person.name}-{photo.name}").write_bytes(photo.read_bytes())
    n_photos = sum(1 for p in folder.iterdir() if p.is_file())

    clean = tmp_path / "clean"
    subprocess.run(cli(clean, "sources", "add", "s", "--basis", "consent"), check=True)
    subprocess.run(
        cli(clean, "ingest", str(folder), "--source", "s", "--workers", workers, "--json"),
        check=True,
        capture_output=True,
    )
    expected = faces_in_catalog(clean)
    assert expected[0] == n_photos

    crashed = tmp_path / "crashed"
    subprocess.run(cli(crashed, "sources", "add", "s", "--basis", "consent"), check=True)
    proc = subprocess.Popen(
        cli(crashed, "ingest", str(folder), "--source", "s", "--workers", workers),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while faces_in_catalog(crashed)[0] < n_photos // 3 and time.monotonic() < deadline:
        assert proc.poll() is None, "ingest ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: workers die with it
    proc.wait()
    partial = faces_in_catalog(crashed)
    assert 0 < partial[0] < n_photos, partial

    rerun = subprocess.run(
        cli(crashed, "ingest", str(folder), "--source", "s", "--workers", workers, "--json"),
        check=True,
        capture_output=True,
        text=True,
    )
    summary = json.loads(rerun.stdout)
    assert summary["unchanged"] == partial[0]
    assert faces_in_catalog(crashed) == expected
    status = json.loads(
        subprocess.run(
            cli(crashed, "status", "--json"), check=True, capture_output=True, text=True
        ).stdout
    )
    assert status["photos"] == expected[0]
    assert status["faces"] == status["indexed"] == expected[1]
