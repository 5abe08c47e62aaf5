"""Fixtures of the collecting tests: a loopback web server, a guarded fetcher, synthetic
photos. Every socket these tests open in this process is checked: outside 127.0.0.0/8 the
test fails before connecting, whatever the code under test decided."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from countenance.sources.http import Fetcher
from tests.sources.loopback import PUBLIC_IP, GuardTransport, LoopbackServer, stub_resolver


@pytest.fixture(autouse=True)
def _no_connections_outside_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if ipaddress.ip_address(host.split("%")[0]) not in ipaddress.ip_network("127.0.0.0/8"):
                raise AssertionError(f"a test tried to connect to {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer().start()
    yield srv
    srv.stop()


@pytest.fixture()
def guard(server: LoopbackServer) -> Iterator[GuardTransport]:
    transport = GuardTransport(server)
    yield transport
    assert not transport.violations, transport.violations


RESOLVE = {
    "public.example": [PUBLIC_IP],
    "www.public.example": [PUBLIC_IP],
    "other.example": [PUBLIC_IP],
    "internal.example": ["10.0.0.5"],
    "corp.example": ["172.16.3.4"],
    "home.example": ["192.168.1.10"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": [PUBLIC_IP, "192.168.0.1"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "local.example": ["127.0.0.1"],
    "multicast.example": ["224.0.0.1"],
}


@pytest.fixture()
def make_fetcher(guard: GuardTransport) -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(**kw: Any) -> Fetcher:
        options: dict[str, Any] = {
            "user_agent": "countenance-test/1 (+mailto:test@example.org)",
            "min_interval_s": 0.0,
            "backoff_s": 0.01,
            "timeout_s": 5.0,
            "resolver": stub_resolver(RESOLVE),
            "transport": guard,
        }
        options.update(kw)
        fetcher = Fetcher(**options)
        made.append(fetcher)
        return fetcher

    yield make
    for f in made:
        f.close()
