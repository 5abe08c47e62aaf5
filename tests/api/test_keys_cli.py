"""``countenance keys`` prints a key once and stores only its hash; ``serve`` starts the real
server on a loopback port, creating the first admin key when none exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import free_port
from tests.conftest import run_cli


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run_cli(data, "keys", "create", "--name", "alice", "--role", "auditor")
    key = created.stdout.strip()
    assert re.fullmatch(r"cnt_[A-Za-z0-9_-]{43}", key)
    listed = run_cli(data, "keys", "list", "--json").stdout
    assert "alice" in listed and "auditor" in listed and key not in listed
    again = run_cli(data, "keys", "create", "--name", "alice", "--role", "admin", ok=False)
    assert again.returncode == 1 and "exists" in again.stderr
    bad_role = run_cli(data, "keys", "create", "--name", "bob", "--role", "root", ok=False)
    assert bad_role.returncode == 2
    run_cli(data, "keys", "revoke", "alice")
    assert '"revoked_at": null' not in run_cli(data, "keys", "list", "--json").stdout
    audit = run_cli(data, "audit", "list", "--action", "key", "--json").stdout
    assert audit.count('"op": "create"') == 1 and '"op": "revoke"' in audit
    assert key not in audit


@pytest.mark.slow  # it loads the models at startup
def test_serve_creates_a_first_admin_key_and_answers(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "countenance", "--data", str(tmp_path / "data"), "serve"]
    command += ["--port", str(port), "--first-admin", "boss", "--log-level", "warning"]
    env = {**os.environ, "COUNTENANCE_CNN_FALLBACK": "false"}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        key = re.search(r"first admin key \(boss\): (cnt_\S+)", first)
        assert key is not None, first
        assert f"http://127.0.0.1:{port}/" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/sources").status_code == 401
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        assert httpx.get(f"{url}/v1/sources", headers=headers).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=60)
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert server.returncode in (0, -15)
