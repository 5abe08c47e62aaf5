"""The browser UI's operator and privacy-officer pages: sources and ingest progress, policy
(jurisdiction exclusions), erasure requests with their receipts, and the audit log with the
state of its hash chain.

Example: ``GET /audit`` shows an auditor the latest events and whether the chain verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, BinaryIO, TypeVar

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from countenance.api import service
from countenance.api.errors import ApiError
from countenance.api.state import ServerState
from countenance.api.uploads import read_upload
from countenance.catalog.schema import LAWFUL_BASES
from countenance.errors import CountenanceError
from countenance.types import SourceInfo
from countenance.web.pages import Session, SessionDep, denied, error_message, page, server

T = TypeVar("T")

router = APIRouter(include_in_schema=False)

Page = Callable[..., HTMLResponse]  # (request, session, status_code=, **context)


def form_action(
    request: Request,
    session: Session,
    csrf: str,
    permission: str,
    refusal: str,
    work: Callable[[ServerState], T],
    done: Callable[[T], Response],
    failed: Page,
) -> Response:
    """What every form post of these pages does: check the form's CSRF token (a stale one is
    the API's 403), then the role's ``permission`` (refused: "the role may not ``refusal``"),
    then run ``work`` (a service operation) and answer ``done(result)``; a refusal or a
    handled error shows page ``failed`` again with its message and status. A role refused
    gets the error page alone: ``failed`` may show what the role may not read.

    Example: ``form_action(request, session, csrf, "erase", "erase", work, done, page)``.
    """
    session.check(csrf)
    if not session.principal.can(permission):
        message = f"the role may not {refusal}"
        return page(request, session, "error.html", status_code=403, message=message)
    try:
        result = work(server(request))
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return failed(request, session, status_code=status, error=message)
    return done(result)


def _see(path: str) -> Callable[[object], Response]:
    """After a post that worked: the browser goes (back) to ``path``."""
    return lambda _result: RedirectResponse(path, status_code=303)


# sources -----------------------------------------------------------------------------------


def _sources_page(
    request: Request, session: Any, status_code: int = 200, **context: Any
) -> HTMLResponse:
    state = server(request)
    jobs = state.jobs.all() if session.principal.can("ingest") else []
    return page(
        request,
        session,
        "sources.html",
        status_code=status_code,
        sources=state.engine.sources(),
        jobs=[j.to_json() for j in jobs[:20]],
        bases=LAWFUL_BASES,
        status=state.engine.status().to_json(),
        **context,
    )


@router.get("/sources")
def sources_page(request: Request, session: SessionDep) -> HTMLResponse:
    return denied(request, session, "sources.read") or _sources_page(request, session)


@router.post("/sources")
def add_source(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form()],
    basis: Annotated[str, Form()],
    jurisdiction: Annotated[str, Form()] = "",
    consent_ref: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def work(state: ServerState) -> SourceInfo:
        return service.add_source(
            state,
            session.principal,
            name.strip(),
            basis=basis,
            jurisdiction=jurisdiction.strip() or None,
            consent_ref=consent_ref.strip() or None,
        )

    return form_action(
        request,
        session,
        csrf,
        "sources.write",
        "add sources",
        work,
        _see("/sources"),
        _sources_page,
    )


@router.post("/sources/{name}/photos")
def upload_photos(
    request: Request,
    session: SessionDep,
    name: str,
    photos: Annotated[list[UploadFile], File()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def work(state: ServerState) -> dict[str, Any]:
        files: list[tuple[str | None, BinaryIO]] = [
            (p.filename, p.file) for p in photos if p.filename
        ]
        return service.upload(state, session.principal, name, files)

    def done(job: dict[str, Any]) -> Response:
        return RedirectResponse(f"/sources?job={job['id']}", status_code=303)

    return form_action(request, session, csrf, "ingest", "upload photos", work, done, _sources_page)


@router.post("/sources/{name}/retire")
def retire_source(
    request: Request, session: SessionDep, name: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "sources.write",
        "retire sources",
        lambda state: service.retire_source(state, session.principal, name),
        _see("/sources"),
        _sources_page,
    )


@router.get("/ui/jobs/{job_id}")
def job_progress(request: Request, session: SessionDep, job_id: str) -> JSONResponse:
    """One job's progress, for the sources page to poll."""
    if not session.principal.can("ingest"):
        raise ApiError(403, "forbidden", "the role may not see ingest jobs")
    return JSONResponse(server(request).jobs.get(job_id).to_json())


# policy ------------------------------------------------------------------------------------


def _policy_page(
    request: Request, session: Any, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return page(
        request,
        session,
        "policy.html",
        status_code=status_code,
        exclusions=server(request).engine.exclusions(),
        **context,
    )


@router.get("/policy")
def policy_page(request: Request, session: SessionDep) -> HTMLResponse:
    return denied(request, session, "policy.read") or _policy_page(request, session)


@router.post("/policy/exclude")
def exclude(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "policy.write",
        "change policy",
        lambda state: service.exclude(
            state, session.principal, code, reason=reason.strip() or None
        ),
        lambda done: _policy_page(request, session, done=done),
        _policy_page,
    )


@router.post("/policy/allow")
def allow(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "policy.write",
        "change policy",
        lambda state: service.allow(state, session.principal, code),
        _see("/policy"),
        _policy_page,
    )


# erasures ----------------------------------------------------------------------------------


def _erasures_page(
    request: Request, session: Any, status_code: int = 200, **context: Any
) -> HTMLResponse:
    events = server(request).engine.audit.events(action="erase")[-50:]
    return page(
        request,
        session,
        "erasures.html",
        status_code=status_code,
        events=list(reversed(events)),
        **context,
    )


@router.get("/erasures")
def erasures_page(request: Request, session: SessionDep) -> HTMLResponse:
    return denied(request, session, "erase") or _erasures_page(request, session)


@router.post("/erasures")
def erase(
    request: Request,
    session: SessionDep,
    reason: Annotated[str, Form()] = "",
    face_id: Annotated[str, Form()] = "",
    photo: Annotated[UploadFile | None, File()] = None,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def work(state: ServerState) -> dict[str, Any]:
        data = read_upload(photo) if photo is not None and photo.filename else None
        face = _face_id(face_id)
        if data is None and face is None:
            raise ApiError(400, "invalid_request", "give a photo of the person or a face id")
        return service.erase(state, session.principal, photo=data, face_id=face, reason=reason)

    return form_action(
        request,
        session,
        csrf,
        "erase",
        "erase",
        work,
        lambda receipt: _erasures_page(request, session, receipt=receipt),
        _erasures_page,
    )


def _face_id(text: str) -> int | None:
    """The face id a form field holds, or None when it is blank."""
    if not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "invalid_request", "face id is a number") from None


# audit -------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, action: str = "") -> HTMLResponse:
    no = denied(request, session, "audit.read")
    if no is not None:
        return no
    audit = server(request).engine.audit
    head, _ = audit.head()
    events = audit.events(action=action or None, after_seq=max(0, head - 200))
    return page(
        request,
        session,
        "audit.html",
        events=list(reversed(events))[:100],
        verification=audit.verify().to_json(),
        action=action,
    )
