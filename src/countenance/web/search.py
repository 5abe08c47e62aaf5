"""The browser UI's sign-in, search and photo pages. The script (``static/app.js``) only adds
drag and drop, drawing the faces found and picking one; the forms work without it.

Example: ``GET /search`` shows the search form to an investigator who is signed in.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from countenance.api import records, service
from countenance.api.auth import Principal
from countenance.api.errors import ApiError
from countenance.api.uploads import read_upload
from countenance.errors import CountenanceError
from countenance.web.pages import (
    LOGIN_CSRF,
    SessionDep,
    denied,
    end_session,
    error_message,
    page,
    server,
    set_login_csrf,
    start_session,
)

router = APIRouter(include_in_schema=False)


# sign in -----------------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse("/search", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/search") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(request, None, "login.html", login_csrf=token, next=_local(next))
    set_login_csrf(request, response, token)
    return response


@router.post("/login")
def login(
    request: Request,
    key: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/search",
) -> Response:
    state = server(request)
    expected = request.cookies.get(LOGIN_CSRF, "")
    info = None
    if expected and hmac.compare_digest(csrf, expected):
        info = state.keys.authenticate(key.strip())
    if info is None:
        token = secrets.token_urlsafe(24)
        response = page(
            request,
            None,
            "login.html",
            status_code=401,
            login_csrf=token,
            next=_local(next),
            error="That key is unknown or revoked.",
        )
        set_login_csrf(request, response, token)
        return response
    target = _local(next)
    if target == "/search" and not Principal(info.id, info.name, info.role).can("search"):
        target = "/sources"
    redirect = RedirectResponse(target, status_code=303)
    start_session(request, redirect, info.id)
    redirect.delete_cookie(LOGIN_CSRF)
    return redirect


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    session.check(csrf)
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response, session)
    return response


def _local(target: str) -> str:
    """Only a path on this server: a sign-in never redirects elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/search"
    return target


# search ------------------------------------------------------------------------------------


@router.get("/search")
def search_form(request: Request, session: SessionDep) -> HTMLResponse:
    return denied(request, session, "search") or page(request, session, "search.html")


@router.post("/ui/detect")
def detect(
    request: Request, session: SessionDep, photo: Annotated[UploadFile, File()]
) -> JSONResponse:
    """Face boxes of a photo, for the search page to draw (nothing compared or stored)."""
    session.check(request.headers.get("x-csrf-token"))
    if not session.principal.can("search"):
        raise ApiError(403, "forbidden", "the role may not search")
    return JSONResponse(service.detect(server(request), read_upload(photo)))


@router.post("/search")
def search(
    request: Request,
    session: SessionDep,
    photo: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()] = "",
    case: Annotated[str, Form()] = "",
    face: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> HTMLResponse:
    session.check(csrf)
    refused = denied(request, session, "search")
    if refused is not None:
        return refused
    state = server(request)
    try:
        result = service.search(
            state, session.principal, read_upload(photo), purpose=purpose, case=case or None
        )
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return page(
            request,
            session,
            "search.html",
            status_code=status,
            error=message,
            purpose=purpose,
            case=case,
        )
    faces = result["faces"]
    chosen = _chosen(faces, face)
    sources = {s.name: s for s in state.engine.sources()}
    return page(
        request,
        session,
        "results.html",
        faces=faces,
        chosen=chosen,
        purpose=purpose,
        case=case,
        sources=sources,
        gallery_faces=result.get("gallery_faces", 0),
        min_similarity=result.get("min_similarity"),
    )


def _chosen(faces: list[dict[str, Any]], face: str) -> list[int]:
    """Which probe faces to show: the one whose box best overlaps the picked box, or all."""
    try:
        picked = [int(float(v)) for v in face.split(",")]
    except ValueError:
        picked = []
    if len(picked) != 4 or not faces:
        return list(range(len(faces)))
    best = max(range(len(faces)), key=lambda i: _iou(faces[i]["box"], picked))
    return [best] if _iou(faces[best]["box"], picked) > 0.3 else list(range(len(faces)))


def _iou(a: list[int], b: list[int]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# photos and crops: only to a signed-in user who may see them ---------------------------------


@router.get("/photos/{photo_id}")
def photo_page(request: Request, session: SessionDep, photo_id: int) -> HTMLResponse:
    state = server(request)
    try:
        photo = service.photo_view(state, session.principal, photo_id)  # no paths to non-admins
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return page(request, session, "error.html", status_code=status, message=message)
    return page(request, session, "photo.html", photo=photo)


@router.get("/photos/{photo_id}/image")
def photo_image(request: Request, session: SessionDep, photo_id: int) -> Response:
    state = server(request)
    service.may_view(state, session.principal, photo_id)
    return _jpeg(records.photo_jpeg(state.engine, photo_id))


@router.get("/faces/{face_id}/crop")
def face_crop(request: Request, session: SessionDep, face_id: int) -> Response:
    state = server(request)
    service.visible_face(state, session.principal, face_id)  # one 404 for unseen and gone
    return _jpeg(records.face_crop(state.engine, face_id))


def _jpeg(data: bytes) -> Response:
    # faces are personal data: never cached by the browser or anything in between
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
