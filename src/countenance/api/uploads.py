"""Request bodies of bounded size: refused as soon as they pass the limit, never read whole.

:class:`BodyLimit` is ASGI middleware: a declared ``Content-Length`` over the limit is
answered 413 before a byte is read; an undeclared (chunked) body is counted as it streams
and cut off at the limit. Starlette spools multipart files to disk past 1 MiB, so an upload
under the limit costs little memory either; :func:`read_upload` reads one file's bytes.

Example::

    app.add_middleware(BodyLimit, max_bytes=20 * 1024 * 1024)
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from countenance.api.errors import ApiError, error_body


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` mid-body. An HTTPException, because FastAPI passes those from
    body parsing through as they are (any other error becomes a 400): the one error handler
    answers it 413 with the error body."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is over the limit of {max_bytes} bytes")


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413 and the error body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(send, receive, drain=False)
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, receive, drain=False)

    async def _refuse(self, send: Send, receive: Receive, drain: bool) -> None:
        body = json.dumps(
            error_body("too_large", f"request body is over the limit of {self.max_bytes} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def read_upload(upload: Any, what: str = "photo") -> bytes:
    """The bytes of one uploaded file; ApiError 400 when the field is not a file."""
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "invalid_request", f"{what} must be a file upload (multipart)")
    data = upload.file.read()
    if not data:
        name = f" ({upload.filename})" if upload.filename and upload.filename != what else ""
        raise ApiError(400, "bad_image.empty", f"{what}{name} is empty")
    return data
