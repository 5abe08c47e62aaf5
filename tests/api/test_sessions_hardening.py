"""Browser sessions and response headers, hardened after an outside probe (issue 18): the
signing key is never empty or partial, cookies are itsdangerous tokens that stop working
at sign-out (across a restart too) and when their key is revoked, cookies are Secure behind
a trusted TLS proxy, nothing personal is cacheable, and a 405 says what is allowed."""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from countenance.api.auth import (
    REVOKED_FILE,
    SECRET_BYTES,
    SESSION_COOKIE,
    SESSION_SECONDS,
    RevokedSessions,
    Sessions,
    server_secret,
)
from countenance.errors import BackendError
from tests.api.conftest import auth


class Server:
    """A store in ``data`` with one key per role, and an app over it that can be restarted
    (closed and opened again on the same folder, as after a server restart)."""

    def __init__(self, data: Path, pipeline: Any) -> None:
        from countenance.config import Settings
        from countenance.engine import Engine

        self.data, self.pipeline = data, pipeline
        self.settings = Settings(data_dir=data, workers=1)
        engine = Engine(self.settings, pipeline=pipeline)
        store = engine.catalog.key_store(engine.audit)
        self.keys = {
            role: store.create(f"{role}-1", role, actor="test")[0]
            for role in ("admin", "ingest", "investigator", "auditor")
        }
        engine.close()
        self.client: Any = None
        self.engine: Any = None

    def start(self, **overrides: Any) -> Any:
        import dataclasses

        from fastapi.testclient import TestClient

        from countenance.engine import Engine
        from countenance.server import create_app

        self.stop()
        settings = dataclasses.replace(self.settings, **overrides)
        self.engine = Engine(settings, pipeline=self.pipeline)
        self.client = TestClient(create_app(settings, engine=self.engine, load_models=False))
        self.client.__enter__()
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.engine.close()
            self.client = self.engine = None


@pytest.fixture()
def server(tmp_path: Path, pipeline: Any) -> Iterator[Server]:
    s = Server(tmp_path / "data", pipeline)
    yield s
    s.stop()


def sign_in(client: Any, key: str) -> Any:
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    # set by hand: a Secure cookie (behind a trusted proxy) is not sent back over http
    client.cookies.set("countenance_login_csrf", form.cookies["countenance_login_csrf"])
    done = client.post("/login", data={"key": key, "csrf": token.group(1)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return done


def signed_in(client: Any, cookie: str) -> bool:
    """Whether ``cookie`` opens a page that needs a session (else: sent to sign in)."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    answer = client.get("/sources", follow_redirects=False)
    assert answer.status_code in (200, 303), answer.text
    return bool(answer.status_code == 200)


def csrf_of(client: Any) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/sources").text)
    assert found is not None
    return found.group(1)


# the signing key ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["", "\n", "00" * (SECRET_BYTES - 1), "not hex at all", "ab" * 40 + "z"],
    ids=["empty", "newline", "short", "not-hex", "bad-digit"],
)
def test_a_short_or_invalid_server_secret_is_refused_at_start(server: Server, content: str) -> None:
    """An empty key signed forgeable sessions: hmac(b"", ...) was accepted as an admin."""
    path = server.data / "server-secret"
    path.write_text(content)
    with pytest.raises(BackendError) as refused:
        server.start()
    message = str(refused.value)
    assert str(path) in message and "delete" in message and "signed out" in message
    assert path.read_text() == content  # refused, never overwritten


def test_a_new_server_secret_is_random_whole_and_private(tmp_path: Path) -> None:
    secret = server_secret(tmp_path)
    path = tmp_path / "server-secret"
    assert len(secret) >= SECRET_BYTES and len(set(secret)) > 8
    assert bytes.fromhex(path.read_text().strip()) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["server-secret"]  # no temporary left
    assert server_secret(tmp_path) == secret  # kept: sessions survive a restart


def test_a_full_disk_at_first_start_leaves_no_empty_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(BackendError, match="server-secret"):
        server_secret(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither an empty key nor a temporary file
    monkeypatch.undo()
    assert len(server_secret(tmp_path)) >= SECRET_BYTES  # space freed: the next start works


# the cookie --------------------------------------------------------------------------------


def test_the_session_cookie_is_an_itsdangerous_token_that_expires(server: Server) -> None:
    client = server.start()
    cookie = sign_in(client, server.keys["admin"]).cookies[SESSION_COOKIE]
    secret = server_secret(server.data)
    payload = URLSafeTimedSerializer(secret, salt=Sessions.SALT).loads(cookie)
    assert set(payload) == {"sid", "k", "csrf"}
    assert signed_in(client, cookie)
    assert not signed_in(client, cookie[:-2] + ("AA" if cookie[-2:] != "AA" else "BB"))

    class Then(TimestampSigner):  # signs as a session's lifetime and a minute ago
        def get_timestamp(self) -> int:
            return int(time.time()) - SESSION_SECONDS - 60

    stale = URLSafeTimedSerializer(secret, salt=Sessions.SALT, signer=Then).dumps(payload)
    assert not signed_in(client, stale)
    empty_key = URLSafeTimedSerializer(b"", salt=Sessions.SALT).dumps(payload)
    assert not signed_in(client, empty_key)


def test_a_session_cookie_stops_working_at_sign_out_even_after_a_restart(
    server: Server,
) -> None:
    client = server.start()
    cookie = sign_in(client, server.keys["admin"]).cookies[SESSION_COOKIE]
    other = sign_in(client, server.keys["admin"]).cookies[SESSION_COOKIE]
    assert signed_in(client, cookie)
    out = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert out.status_code == 303
    assert not signed_in(client, cookie)  # a copy of the cookie is refused by the server
    assert signed_in(client, other)  # the same key's other session is still signed in
    revoked = server.data / REVOKED_FILE
    assert stat.S_IMODE(revoked.stat().st_mode) == 0o600

    client = server.start()  # a restart remembers the sign-out
    assert not signed_in(client, cookie)
    assert signed_in(client, other)


def test_expired_revocations_are_pruned_at_start(tmp_path: Path) -> None:
    path = tmp_path / REVOKED_FILE
    now = time.time()
    path.write_text(f"old {int(now) - 10}\nlive {int(now) + 600}\ngarbage\n")
    revoked = RevokedSessions(path)
    assert "live" in revoked and "old" not in revoked and "garbage" not in revoked
    assert path.read_text().split() == ["live", str(int(now) + 600)]
    revoked.add("new", now + 60)
    assert "new" in RevokedSessions(path)


def test_revoking_the_key_ends_its_sessions(server: Server) -> None:
    client = server.start()
    cookie = sign_in(client, server.keys["investigator"]).cookies[SESSION_COOKIE]
    assert signed_in(client, cookie)
    server.engine.catalog.key_store(server.engine.audit).revoke("investigator-1", actor="test")
    assert not signed_in(client, cookie)


# the Secure flag -----------------------------------------------------------------------------


def _cookie_header(answer: Any, name: str) -> str:
    return next(h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{name}="))


def test_cookies_are_secure_behind_a_trusted_proxy(server: Server) -> None:
    client = server.start()  # plain http, no proxy: not Secure (it would never be sent back)
    assert "secure" not in _cookie_header(sign_in(client, server.keys["admin"]), SESSION_COOKIE)
    client = server.start(trusted_proxy="127.0.0.1")  # the proxy speaks TLS to the browser
    login = client.get("/login")
    assert "secure" in _cookie_header(login, "countenance_login_csrf").lower()
    answer = sign_in(client, server.keys["admin"])
    assert "secure" in _cookie_header(answer, SESSION_COOKIE).lower()
    client.cookies.set(SESSION_COOKIE, answer.cookies[SESSION_COOKIE])
    out = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert "secure" in _cookie_header(out, SESSION_COOKIE).lower()


def test_serve_trusted_proxy_believes_the_proxy_and_is_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from click.testing import CliRunner

    import countenance.server
    from countenance.cli import cli

    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(kw, app=app))
    monkeypatch.setattr(
        countenance.server, "create_app", lambda settings, **_kw: ran.update(settings=settings)
    )
    mask = os.umask(0o077)
    try:
        runner = CliRunner()
        helped = runner.invoke(cli, ["serve", "--help"])
        assert "--trusted-proxy" in helped.output and "Secure" in helped.output
        data = str(tmp_path / "data")
        done = runner.invoke(cli, ["--data", data, "serve", "--trusted-proxy", "10.0.0.5"])
        assert done.exit_code == 0, done.output
    finally:
        os.umask(mask)
    assert ran["settings"].trusted_proxy == "10.0.0.5"
    assert ran["forwarded_allow_ips"] == "10.0.0.5"


# headers -------------------------------------------------------------------------------------


def test_personal_answers_are_never_cached_static_assets_may_be(server: Server) -> None:
    client = server.start()
    admin = auth(server.keys["admin"])
    assert client.post(
        "/v1/sources", json={"name": "s", "lawful_basis": "consent"}, headers=admin
    ).is_success
    answers = {
        "GET /v1/sources": client.get("/v1/sources", headers=admin),
        "GET /v1/status": client.get("/v1/status", headers=admin),
        "GET /v1/audit": client.get("/v1/audit", headers=admin),
        "401 /v1/sources": client.get("/v1/sources"),
        "404 /v1/photos/1": client.get("/v1/photos/1", headers=admin),
        "GET /login": client.get("/login"),
        "GET /search (signed out)": client.get("/search", follow_redirects=False),
    }
    sign_in(client, server.keys["admin"])
    answers["GET /sources"] = client.get("/sources")
    answers["GET /audit"] = client.get("/audit")
    for what, answer in answers.items():
        assert answer.headers.get("cache-control") == "no-store", what
    for asset in ("/static/style.css", "/static/app.js"):
        answer = client.get(asset)
        assert answer.status_code == 200 and "no-store" not in answer.headers.get(
            "cache-control", ""
        ), asset


def test_a_405_says_which_methods_the_path_allows(server: Server) -> None:
    client = server.start()
    admin = auth(server.keys["admin"])
    answer = client.put("/v1/sources", headers=admin)
    assert answer.status_code == 405
    assert answer.json()["error"]["code"]  # still the one error body
    allowed = {m.strip() for m in answer.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed and "PUT" not in allowed
    assert client.delete("/v1/status", headers=admin).headers["allow"] == "GET"
    assert client.post("/static/app.js").headers["allow"] == "GET, HEAD"
