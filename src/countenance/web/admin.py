"""The browser UI's operator and privacy-officer pages: sources and ingest progress, policy
(jurisdiction exclusions), erasure requests with their receipts, and the audit log with the
state of its hash chain.

Example: ``GET /audit`` shows an auditor the latest events and whether the chain verifies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from countenance.api import service
from countenance.api.errors import ApiError
from countenance.api.uploads import read_upload
from countenance.catalog.schema import LAWFUL_BASES
from countenance.errors import CountenanceError
from countenance.web.pages import SessionDep, denied, error_message, page, server

router = APIRouter(include_in_schema=False)


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
    session.check(csrf)
    state = server(request)
    try:
        if not session.principal.can("sources.write"):
            raise ApiError(403, "forbidden", "the role may not add sources")
        with service.writing(state):
            state.engine.add_source(
                name.strip(),
                basis=basis,
                jurisdiction=jurisdiction.strip() or None,
                consent_ref=consent_ref.strip() or None,
                actor=session.principal.name,
            )
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return _sources_page(request, session, status_code=status, error=message)
    return RedirectResponse("/sources", status_code=303)


@router.post("/sources/{name}/photos")
def upload_photos(
    request: Request,
    session: SessionDep,
    name: str,
    photos: Annotated[list[UploadFile], File()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    session.check(csrf)
    state = server(request)
    try:
        if not session.principal.can("ingest"):
            raise ApiError(403, "forbidden", "the role may not upload photos")
        job = service.upload(
            state, session.principal, name, [(p.filename, p.file) for p in photos if p.filename]
        )
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return _sources_page(request, session, status_code=status, error=message)
    return RedirectResponse(f"/sources?job={job['id']}", status_code=303)


@router.post("/sources/{name}/retire")
def retire_source(
    request: Request, session: SessionDep, name: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    session.check(csrf)
    state = server(request)
    try:
        if not session.principal.can("sources.write"):
            raise ApiError(403, "forbidden", "the role may not retire sources")
        with service.writing(state):
            state.engine.retire_source(name, actor=session.principal.name)
            service.sweep_uploads(state)
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return _sources_page(request, session, status_code=status, error=message)
    return RedirectResponse("/sources", status_code=303)


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
    session.check(csrf)
    state = server(request)
    try:
        if not session.principal.can("policy.write"):
            raise ApiError(403, "forbidden", "the role may not change policy")
        with service.writing(state):
            done = state.engine.exclude(
                code, reason=reason.strip() or None, actor=session.principal.name
            )
            service.sweep_uploads(state)
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return _policy_page(request, session, status_code=status, error=message)
    return _policy_page(request, session, done=done)


@router.post("/policy/allow")
def allow(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    session.check(csrf)
    state = server(request)
    try:
        if not session.principal.can("policy.write"):
            raise ApiError(403, "forbidden", "the role may not change policy")
        with service.writing(state):
            state.engine.allow(code, actor=session.principal.name)
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return _policy_page(request, session, status_code=status, error=message)
    return RedirectResponse("/policy", status_code=303)


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
    session.check(csrf)
    state = server(request)
    try:
        if not session.principal.can("erase"):
            raise ApiError(403, "forbidden", "the role may not erase")
        data = read_upload(photo) if photo is not None and photo.filename else None
        face = int(face_id) if face_id.strip() else None
        if data is None and face is None:
            raise ApiError(400, "invalid_request", "give a photo of the person or a face id")
        with service.writing(state):
            receipt = state.engine.erase(
                photo=data, face_id=face, reason=reason, actor=session.principal.name
            )
            service.sweep_uploads(state)
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return _erasures_page(request, session, status_code=status, error=message)
    except ValueError:
        return _erasures_page(request, session, status_code=400, error="face id is a number")
    return _erasures_page(request, session, receipt=receipt.to_json())


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
