"""A real Milvus server for the contract and congruence suites (tests marked ``milvus_server``).

One standalone server of the ``milvus`` package (Milvus 2.3.5) per session, in a folder of its
own, stopped at the end. It listens on every interface, on fixed ports (19530 and eight more,
each moved to the next free one if taken), so it starts only in a network namespace that holds
nothing but loopback, as make test runs these tests::

    scripts/loopback-netns .venv/bin/python -m pytest -m milvus_server tests/contract

Anywhere else they skip, and fail under CI, where they must run.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

START_S = 60  # a start takes 6-10 s here, the first (unpacking the binaries) the longest
ATTEMPTS = 2
# Milvus reads settings from the environment too (queryCoord.checkInterval as
# QUERYCOORD_CHECKINTERVAL). Shorter periods than its defaults, for a server that holds a few
# thousand vectors: the query coordinator's checks (milliseconds; the targets', seconds), so
# that loading a new collection takes ~1.5 s rather than ~2.5 s, and the proxy's time tick
# (ms), which every strong read waits for. About a quarter off these suites.
FASTER = {
    "QUERYCOORD_CHECKINTERVAL": "100",
    "QUERYCOORD_CHECKCHANNELINTERVAL": "100",
    "QUERYCOORD_CHECKSEGMENTINTERVAL": "100",
    "QUERYCOORD_DISTPULLINTERVAL": "100",
    "QUERYCOORD_UPDATENEXTTARGETINTERVAL": "1",
    "QUERYCOORD_LEADERVIEWUPDATEINTERVAL": "1",
    "PROXY_TIMETICKINTERVAL": "50",
}


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _refuse(message: str) -> None:
    if _under_ci():
        pytest.fail(message)
    pytest.skip(message)


def loopback_only() -> bool:
    """Whether this process's network namespace holds only ``lo``: what the server binds is
    then out of reach from anywhere else. (/sys/class/net shows the namespace that mounted
    /sys, not this one, so the interfaces come from the kernel.)"""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a Milvus server running for the whole session."""
    if not loopback_only():
        _refuse(
            "a real Milvus server listens on every interface; run these tests in a "
            "loopback-only network namespace: scripts/loopback-netns .venv/bin/python -m "
            "pytest -m milvus_server"
        )
    if importlib.util.find_spec("milvus") is None:
        _refuse("the Milvus server package is missing: pip install -e '.[dev]'")
    from milvus import MilvusServer

    problems = []
    for _ in range(ATTEMPTS):
        # Now and then a start hangs before the proxy serves; a fresh one does not.
        base = tmp_path_factory.mktemp("milvus-server")
        server = MilvusServer(wait_for_started=False)
        server.set_base_dir(str(base))
        try:
            with mock.patch.dict(os.environ, FASTER):  # the server's environment, not ours
                server.start()
            # A port still taken (a server stopped a moment ago) moves it to the next one.
            uri = f"http://127.0.0.1:{server.listen_port}"
            problem = _not_ready(server, uri, base)
            if problem is None:
                yield uri
                return
            problems.append(problem)
        finally:
            server.stop()  # SIGTERM; SIGKILL after 1 s, then waits 3 s at most
    pytest.fail("\n\n".join(problems))


def _not_ready(server: Any, uri: str, base: Path) -> str | None:
    """None once a client gets an answer (the health check says OK before the proxy listens);
    else why not, with the end of the server's log, when it exits or the time is up."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    proc, start = server.server_proc, time.monotonic()
    while time.monotonic() - start < START_S and proc.poll() is None:
        try:
            client = MilvusClient(uri=uri, timeout=2)
        except MilvusException:
            time.sleep(0.2)
            continue
        try:
            client.list_collections()
            return None
        except MilvusException:
            time.sleep(0.2)
        finally:
            client.close()
    state = "not ready" if proc.poll() is None else f"exited with {proc.returncode}"
    log = base / "logs" / "milvus-stderr.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    return f"the Milvus server in {base} is {state} after {time.monotonic() - start:.0f} s:\n{tail}"
