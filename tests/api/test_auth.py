"""Keys and roles: every /v1 route refuses a request without a valid key (401), each role
is refused what it may not do (403), and a key past its rate limit is told to wait (429)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.conftest import auth


def _v1_routes(client: Any) -> list[tuple[str, str]]:
    """Every /v1 route, from the app's own OpenAPI document (so a new route is covered)."""
    paths = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, methods in paths.items()
        if path.startswith("/v1")
        for method in methods
    ]


def test_every_v1_route_answers_401_without_a_key(api: Any) -> None:
    client, _keys = api
    routes = _v1_routes(client)
    assert len(routes) >= 15
    for method, path in routes:
        for headers in (
            {},
            {"Authorization": "Bearer cnt_not-a-key"},
            {"Authorization": "Basic x"},
        ):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("role", "method", "path", "kwargs"),
    [
        ("investigator", "POST", "/v1/sources", {"json": {"name": "s", "lawful_basis": "consent"}}),
        ("investigator", "DELETE", "/v1/sources/s", {}),
        ("investigator", "POST", "/v1/erasures", {"data": {"reason": "r", "face_id": "1"}}),
        ("investigator", "GET", "/v1/audit", {}),
        ("auditor", "POST", "/v1/search", {"data": {"purpose": "p", "case": "c"}}),
        ("auditor", "POST", "/v1/sources", {"json": {"name": "s", "lawful_basis": "consent"}}),
        ("auditor", "POST", "/v1/policy/exclusions", {"json": {"code": "CA"}}),
        ("ingest", "POST", "/v1/search", {"data": {"purpose": "p", "case": "c"}}),
        ("ingest", "GET", "/v1/audit", {}),
        ("ingest", "POST", "/v1/erasures", {"data": {"reason": "r", "face_id": "1"}}),
    ],
)
def test_roles_are_refused_what_they_may_not_do(
    api: Any, role: str, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    client, keys = api
    if "data" in kwargs and "search" in path:
        kwargs = {**kwargs, "files": {"photo": ("p.jpg", b"x", "image/jpeg")}}
    response = client.request(method, path, headers=auth(keys[role]), **kwargs)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_auditor_reads_and_verifies_the_audit_log_and_sees_key_events(api: Any) -> None:
    client, keys = api
    events = client.get("/v1/audit", headers=auth(keys["auditor"])).json()["events"]
    assert [e["details"]["name"] for e in events if e["action"] == "key"] == [
        "admin-1",
        "ingest-1",
        "investigator-1",
        "auditor-1",
    ]
    assert all("cnt_" not in str(e) for e in events)  # never a key in the log
    check = client.get("/v1/audit/verify", headers=auth(keys["auditor"])).json()
    assert check["ok"] is True and check["events"] == len(events)


def test_the_key_name_is_the_audit_actor(api: Any) -> None:
    client, keys = api
    body = {"name": "family", "lawful_basis": "consent", "jurisdiction": "CA"}
    created = client.post("/v1/sources", headers=auth(keys["ingest"]), json=body)
    assert created.status_code == 201, created.text
    events = client.get("/v1/audit", headers=auth(keys["admin"]), params={"action": "source"})
    assert events.json()["events"][-1]["actor"] == "ingest-1"


def test_a_revoked_key_is_refused(api: Any) -> None:
    client, keys = api
    store = client.app.state.server.keys
    assert client.get("/v1/sources", headers=auth(keys["ingest"])).status_code == 200
    store.revoke("ingest-1", actor="test")
    response = client.get("/v1/sources", headers=auth(keys["ingest"]))
    assert response.status_code == 401


def test_only_the_hash_of_a_key_is_stored(api: Any) -> None:
    import sqlalchemy as sa

    client, keys = api
    catalog = client.app.state.server.engine.catalog
    with catalog.transaction() as conn:
        stored = " ".join(str(r) for r in conn.execute(sa.text("SELECT * FROM api_keys")))
    assert all(key not in stored for key in keys.values())


def test_a_key_past_its_rate_limit_gets_429(make_client: Any) -> None:
    client, keys = make_client(api_rate_per_minute=3)
    codes = [client.get("/v1/sources", headers=auth(keys["admin"])).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = client.get("/v1/sources", headers=auth(keys["admin"]))
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["retry-after"]
    # another key has its own budget
    assert client.get("/v1/sources", headers=auth(keys["auditor"])).status_code == 200
