"""A Ray cluster on loopback for the distributed-ingest tests: the one CI started
(COUNTENANCE_TEST_RAY_ADDRESS, with COUNTENANCE_TEST_RAY_CLIENT for Ray Client), or one this
session starts with scripts/ray-test-cluster and stops at its end."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

ADDRESS_VAR = "COUNTENANCE_TEST_RAY_ADDRESS"
CLIENT_VAR = "COUNTENANCE_TEST_RAY_CLIENT"
SCRIPT = REPO / "scripts" / "ray-test-cluster"


@dataclass(frozen=True)
class RayCluster:
    address: str  # 127.0.0.1:PORT, the GCS: for a driver on this machine
    client: str  # ray://127.0.0.1:PORT, Ray Client


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    if importlib.util.find_spec("ray") is None:
        _missing("ray is not installed: pip install 'countenance[cluster]'")
    address, client = os.environ.get(ADDRESS_VAR), os.environ.get(CLIENT_VAR)
    if address and client:
        yield RayCluster(address, client)
        return
    # a short path: Ray's Unix sockets live under it, and their names are limited to 107 bytes
    where = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    shutil.rmtree(where)
    try:
        started = subprocess.run(
            [str(SCRIPT), "start", str(where)], capture_output=True, text=True, timeout=120
        )
        if started.returncode != 0:
            _missing(f"no Ray cluster could start here: {started.stderr.strip()[-2000:]}")
        port = (where / "client.port").read_text().strip()
        yield RayCluster(started.stdout.strip(), f"ray://127.0.0.1:{port}")
    finally:
        subprocess.run([str(SCRIPT), "stop", str(where)], timeout=60, check=False)
