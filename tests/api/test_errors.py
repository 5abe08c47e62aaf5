"""One error body everywhere, and malformed uploads answered 4xx while the server keeps
serving: not an image, truncated, 20000x20000 pixels, 50 MB."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from tests.api.conftest import auth


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return str(body["error"]["code"])


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def _huge_png(width: int, height: int) -> bytes:
    """A small file that declares width x height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    idat = zlib.compress(row * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _search(client: Any, key: str, data: bytes, name: str = "p.jpg") -> Any:
    return client.post(
        "/v1/search",
        headers=auth(key),
        data={"purpose": "test", "case": "T-1"},
        files={"photo": (name, data, "image/jpeg")},
    )


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"this is not an image at all", 415, "bad_image.not_an_image"),
        (_jpeg((640, 480))[:20_000], 400, "bad_image.truncated"),
        (_huge_png(20000, 20000), 413, "bad_image.too_many_pixels"),
        (b"", 400, "bad_image.empty"),
    ],
    ids=["not-an-image", "truncated", "20000x20000", "empty"],
)
def test_malformed_probes_get_a_4xx_with_the_error_body(
    api: Any, data: bytes, status: int, code: str
) -> None:
    client, keys = api
    assert _error(_search(client, keys["investigator"], data), status) == code
    assert client.get("/healthz").status_code == 200


def test_a_50_mb_upload_is_refused_before_it_is_read(api: Any) -> None:
    client, keys = api
    big = b"\xff\xd8\xff" + b"\x00" * (50 * 1024 * 1024)
    assert _error(_search(client, keys["investigator"], big), 413) == "too_large"
    assert client.get("/healthz").status_code == 200
    assert _error(_search(client, keys["investigator"], _jpeg()), 422) == "no_face_found"


def test_framework_errors_use_the_same_body(api: Any) -> None:
    client, keys = api
    assert _error(client.get("/no/such/page"), 404) == "not_found"
    assert _error(client.put("/v1/sources", headers=auth(keys["admin"])), 405)
    missing = client.post(
        "/v1/search",
        headers=auth(keys["investigator"]),
        files={"photo": ("p.jpg", _jpeg(), "image/jpeg")},
    )
    assert _error(missing, 422) == "invalid_request"
    assert "purpose" in missing.json()["error"]["message"]


def test_engine_errors_map_to_status_codes(api: Any) -> None:
    client, keys = api
    admin = auth(keys["admin"])
    assert _error(client.delete("/v1/sources/nope", headers=admin), 404) == "not_found"
    bad_basis = {"name": "s", "lawful_basis": "because"}
    # the document lists the six bases: another is a request it does not describe
    refused = client.post("/v1/sources", headers=admin, json=bad_basis)
    assert _error(refused, 422) == "invalid_request" and "lawful_basis" in refused.text
    no_case = client.post(
        "/v1/search",
        headers=auth(keys["investigator"]),
        data={"purpose": "p"},
        files={"photo": ("p.jpg", _jpeg(), "image/jpeg")},
    )
    assert _error(no_case, 403) == "policy_denied"
    assert _error(client.get("/v1/jobs/nope", headers=admin), 404) == "not_found"


def test_a_chunked_upload_is_cut_off_at_the_limit(make_client: Any) -> None:
    client, keys = make_client(max_upload_bytes=1_000_000)
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def body() -> Any:  # no Content-Length: sent chunked, counted as it arrives
        yield head
        for _ in range(40):
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/search",
        headers={
            **auth(keys["investigator"]),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        content=body(),
    )
    assert _error(response, 413) == "too_large"
    assert client.get("/healthz").status_code == 200


def test_health_openapi_docs_and_metrics_need_no_key(api: Any) -> None:
    client, _keys = api
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/search" in paths and "/v1/audit/verify" in paths
    docs = client.get("/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    metrics = client.get("/metrics")
    assert "countenance_http_requests_total" in metrics.text
    assert "countenance_index_faces" in metrics.text
    login = client.get("/login")
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert login.headers["x-frame-options"] == "DENY"
    assert login.headers["x-content-type-options"] == "nosniff"
