"""Properties of the API's wire types (issue 18): what the OpenAPI document says a field
accepts is what the server accepts, and a number out of bounds is a 422, never a 500."""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from countenance.api import routes
from countenance.catalog.audit import MAX_PURPOSE
from countenance.catalog.governance import iso3166
from countenance.catalog.schema import LAWFUL_BASES, TEXT_LIMIT
from countenance.errors import InvalidArgument
from countenance.types import SOURCE_NAME, source_name
from tests.api.conftest import auth

WITH_CLIENT = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NAME = TypeAdapter(routes.SourceName)
ISO = TypeAdapter(routes.Iso3166)
OUT_OF_BOUNDS = st.integers().filter(lambda n: not 1 <= n <= routes.MAX_ID)
NAMEISH = st.text(alphabet="Aa0._-/ \n\x00é", max_size=110)


def _wire_accepts(adapter: TypeAdapter[Any], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except InvalidArgument:
        return False
    return True


@given(st.from_regex(SOURCE_NAME, fullmatch=True) | NAMEISH | st.text(max_size=110))
def test_the_wire_source_name_is_exactly_the_catalogs(name: str) -> None:
    assert _wire_accepts(NAME, name) == _accepts(source_name, name)


@given(st.from_regex(routes.SOURCE_NAME_PATTERN.replace("$", r"\Z"), fullmatch=True))
def test_every_name_the_documented_pattern_generates_is_a_source_name(name: str) -> None:
    if len(name) <= 100:
        assert source_name(name) == name


@given(st.from_regex(routes.ISO3166_PATTERN.replace("$", r"\Z"), fullmatch=True) | NAMEISH)
def test_an_iso3166_code_the_wire_accepts_the_catalog_accepts(code: str) -> None:
    if _wire_accepts(ISO, code):
        assert iso3166(code) == code.upper()


@given(st.text(max_size=30))
def test_a_purpose_the_document_accepts_is_not_blank(purpose: str) -> None:
    if re.search(routes.NON_BLANK.replace("$", r"\Z"), purpose):
        assert purpose.strip("\t\n\r\f\v ")  # ECMA's \s: what the catalog strips and more
        assert "\x00" not in purpose


def test_the_wire_bounds_are_the_stores() -> None:
    assert get_args(routes.LawfulBasis) == LAWFUL_BASES
    assert routes.MAX_PURPOSE == MAX_PURPOSE
    assert routes.MAX_TEXT == TEXT_LIMIT
    assert routes.MAX_ID == 2**63 - 1


@WITH_CLIENT
@given(OUT_OF_BOUNDS)
def test_an_id_out_of_bounds_is_a_422_on_every_route(api: Any, n: int) -> None:
    client, keys = api
    admin = auth(keys["admin"])
    for response in (
        client.get(f"/v1/photos/{n}", headers=admin),
        client.get(f"/v1/faces/{n}/crop", headers=admin),
        client.post("/v1/erasures", headers=admin, data={"reason": "r", "face_id": str(n)}),
        client.post("/v1/erasures", headers=admin, data={"reason": "r", "photo_id": str(n)}),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"


@WITH_CLIENT
@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_after_seq_is_422_out_of_bounds_and_answered_within(api: Any, n: int) -> None:
    client, keys = api
    response = client.get("/v1/audit", params={"after_seq": n}, headers=auth(keys["admin"]))
    assert response.status_code == (200 if 0 <= n <= routes.MAX_ID else 422), response.text


@WITH_CLIENT
@given(st.integers(min_value=1, max_value=routes.MAX_ID))
def test_an_id_in_bounds_that_is_not_there_is_a_404(api: Any, n: int) -> None:
    client, keys = api
    response = client.get(f"/v1/photos/{n}", headers=auth(keys["admin"]))
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("role", ["investigator"])
def test_investigators_cannot_tell_which_ids_exist(api: Any, role: str) -> None:
    """A photo or crop never among their results answers as one that does not exist."""
    client, keys = api
    key = auth(keys[role])
    gone = [
        client.get("/v1/photos/999999", headers=key),
        client.get("/v1/faces/9/crop", headers=key),
    ]
    assert {r.status_code for r in gone} == {404}
    assert {r.json()["error"]["message"] for r in gone} == {
        "no such photo among your search results"
    }


def test_an_empty_purpose_says_it_is_empty(api: Any) -> None:
    client, keys = api
    response = client.post(
        "/v1/search",
        headers=auth(keys["investigator"]),
        data={"purpose": ""},
        files={"photo": ("p.jpg", b"x", "image/jpeg")},
    )
    assert response.status_code == 422
    assert "purpose: must not be empty" in response.json()["error"]["message"]


def test_the_document_declares_every_status_with_the_error_body(api: Any) -> None:
    client, _keys = api
    doc = client.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorBody"
    for path, ops in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            statuses = set(op["responses"])
            assert {"401", "403", "422", "429"} <= statuses, (method, path)
            for status, response in op["responses"].items():
                schema = next(iter(response.get("content", {}).values()), {}).get("schema", {})
                if status.startswith(("4", "5")):
                    assert schema.get("$ref") == error_ref, (method, path, status)
                else:
                    assert schema, (method, path, status)  # a success body has a schema
