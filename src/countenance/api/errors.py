"""The server's one error body, and the one place where errors become status codes.

Every error leaves as ``{"error": {"code": "...", "message": "..."}}``: countenance's own
(:class:`~countenance.errors.CountenanceError`, by class), FastAPI's validation errors, and
Starlette's 404/405/413. Anything unexpected is logged and answered 500 without details.

Example::

    raise ApiError(401, "unauthorized", "send Authorization: Bearer KEY")
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from countenance import errors as e

log = logging.getLogger("countenance.api")

# most specific first: the first class an error is an instance of decides
STATUS: list[tuple[type[e.CountenanceError], int]] = [
    (e.RateLimited, 429),
    (e.PolicyDenied, 403),
    (e.NoFaceFound, 422),
    (e.NotFound, 404),
    (e.InvalidArgument, 400),
    (e.SpaceMismatch, 400),
    (e.BackendUnavailable, 503),
    (e.IndexOutOfSync, 503),
    (e.BackendError, 503),
]

# why an image was refused -> status: too big is 413, not an image at all is 415
BAD_IMAGE_STATUS = {"too_large": 413, "too_many_pixels": 413, "not_an_image": 415}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine ``code`` (``not_found``, ``bad_image.empty``) and a
    message for people."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error body: ``{"error": {"code": "not_found", "message": "..."}}``."""

    error: ErrorDetail


class ApiError(Exception):
    """An error raised by the API layer itself (auth, uploads, missing records)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def status_of(exc: e.CountenanceError) -> int:
    """The HTTP status that fits one of countenance's errors."""
    if isinstance(exc, e.BadImage):
        return BAD_IMAGE_STATUS.get(exc.reason, 400)
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def as_response(exc: Exception) -> JSONResponse:
    """The one translation from an exception to the wire's error body."""
    headers = None
    if isinstance(exc, ApiError):
        status, code, message = exc.status, exc.code, exc.message
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, e.CountenanceError):
        status, code, message = status_of(exc), exc.code, str(exc)
        if isinstance(exc, e.BadImage):
            code = f"bad_image.{exc.reason}" if exc.reason else exc.code
    elif isinstance(exc, RequestValidationError):
        problems = [_problem(err, exc.body) for err in exc.errors()]
        status, code, message = 422, "invalid_request", "; ".join(problems) or "invalid request"
    elif isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        code = _HTTP_CODES.get(status, "http_error")
        message = str(exc.detail)
    else:
        log.exception("unhandled error", exc_info=exc)
        status, code, message = 500, "internal_error", "internal error; see the server log"
    if status == 429 and headers is None:
        headers = {"Retry-After": "60"}
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _problem(err: Any, body: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    loc = err.get("loc", ())
    # FastAPI reads an empty form field as a missing one: say what was sent
    if (
        err.get("type") == "missing"
        and len(loc) == 2
        and loc[0] == "body"
        and hasattr(body, "getlist")
        and any(v == "" for v in body.getlist(str(loc[1])))
    ):
        return f"{where}: must not be empty"
    return f"{where}: {err.get('msg')}"


def install(app: FastAPI) -> None:
    """Route every kind of error through :func:`as_response`."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return as_response(exc)

    for cls in (ApiError, e.CountenanceError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(cls, handle)
    app.add_exception_handler(Exception, handle)
