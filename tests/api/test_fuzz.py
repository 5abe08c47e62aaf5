"""The API against its own OpenAPI document, fuzzed by schemathesis (issue 18): the real server
on a loopback port, a key of each role, every check on, bounded in examples and time. The bar:
no server error and no response that contradicts the document."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from countenance.catalog.keys import ROLES
from tests.conftest import need_faces

EXAMPLES = int(os.environ.get("COUNTENANCE_FUZZ_EXAMPLES", "8"))  # per operation and role
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")  # what JSON Schema cannot say of photos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "countenance"), "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COUNTENANCE_MODEL": "dlib", "COUNTENANCE_EMBED_VIEWS": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    cli(data, "sources", "add", "people", "--basis", "consent")
    cli(data, "ingest", str(need_faces("small_examples") / "joe_biden"), "--source", "people")
    keys = {
        role: json.loads(cli(data, "keys", "create", "--name", f"{role}-1", "--role", role,
                             "--json"))["key"]
        for role in ROLES
    }  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "countenance"), "--data", str(data), "serve", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "COUNTENANCE_MODEL": "dlib", "COUNTENANCE_EMBED_VIEWS": "1",
             "COUNTENANCE_SEARCH_RATE_PER_MINUTE": "0"},
        stdout=subprocess.DEVNULL,
        stderr=(data.parent / "server.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the server did not start: " + (data.parent / "server.log").read_text())
    yield url, keys
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    server: tuple[str, dict[str, str]], role: str
) -> None:
    url, keys = server
    done = subprocess.run(
        [str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
         "--header", f"Authorization: Bearer {keys[role]}",
         "--checks", "all",
         "--exclude-checks", "ignored_auth",  # one key per run: the others' routes answer 403
         "--max-examples", str(EXAMPLES), "--seed", "18",
         "--request-timeout", "60"],
        capture_output=True,
        text=True,
        timeout=1500,
    )  # fmt: skip
    counts = re.search(r"Test cases:\s*(.+)", done.stdout)
    print(f"schemathesis as {role}: {counts.group(1) if counts else '?'}")  # shown with -s
    tail = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail  # schemathesis exits non-zero on any failed check
