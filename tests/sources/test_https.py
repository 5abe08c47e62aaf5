"""https with a pinned address: the connection goes to the checked IP, while TLS still names
and verifies the original host (SNI and certificate), against a loopback server with a
certificate made at test time."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from countenance.errors import FetchRefused
from countenance.sources.http import Fetcher
from tests.sources.conftest import RESOLVE
from tests.sources.loopback import GuardTransport, LoopbackServer, stub_resolver
from tests.sources.photos import noise_png


@pytest.fixture()
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=public.example",
            "-addext",
            "subjectAltName=DNS:public.example",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture()
def https_server(tls_files: tuple[Path, Path]) -> Iterator[LoopbackServer]:
    key, cert = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = LoopbackServer(tls=context).start()
    yield srv
    srv.stop()


def test_https_connects_to_the_checked_address_and_verifies_the_name(
    https_server: LoopbackServer, tls_files: tuple[Path, Path]
) -> None:
    png = noise_png(1)
    https_server.add("/robots.txt", b"", status=404)
    https_server.add("/a.png", png, headers={"Content-Type": "image/png"})
    trust = ssl.create_default_context(cafile=str(tls_files[1]))
    guards = []

    def fetcher() -> Fetcher:
        # a fetcher of its own per case: an injected transport is one connection pool for
        # every host (countenance's own transports are one per host name)
        guards.append(GuardTransport(https_server, verify=trust))
        return Fetcher(
            user_agent="countenance-test/1",
            min_interval_s=0.0,
            retries=0,
            resolver=stub_resolver(RESOLVE),
            transport=guards[-1],
        )

    with fetcher() as good:
        url = f"https://public.example:{https_server.port}/a.png"
        assert good.fetch_image(url, 1 << 20) == png
        assert https_server.log[-1].headers["Host"] == f"public.example:{https_server.port}"
    # the same address under another name: the certificate does not name it, so its
    # robots.txt cannot be read (nothing is fetched there) and the photo is never asked for
    with fetcher() as other:
        with pytest.raises(FetchRefused) as refused:
            other.fetch_image(f"https://other.example:{https_server.port}/a.png", 1 << 20)
        assert refused.value.reason == "robots"
        with pytest.raises(FetchRefused, match="certificate verify failed"):
            other.get(
                f"https://other.example:{https_server.port}/a.png",
                1 << 20,
                headers={},
                kind="robots",
            )
    assert len(https_server.log) == 2  # robots.txt and a.png of public.example only
    assert not any(g.violations for g in guards)
