"""The browser UI's persons and alerts: the People page (persons as a grid of their best
faces, filtered and paged), a person's page (its faces; name, merge, split, "not this person",
hide, watch, and for privacy officers erasure after a review of the faces), and the Alerts
page (the user's alerts and watches, and a form to start a watch from a photo).

The same rules as everywhere in the UI: a signed-in session, the form's CSRF token, the
role table of :mod:`countenance.api.auth`, and the service layer doing the work. Faces are
shown through the crop route, so a user who may not see a face gets a placeholder instead.

Example: ``GET /people?show=unnamed`` shows an investigator the persons nobody named yet.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from countenance.api import service
from countenance.api.auth import Principal
from countenance.api.errors import ApiError
from countenance.api.routes import MAX_ID
from countenance.api.state import ServerState
from countenance.api.uploads import read_upload
from countenance.errors import CountenanceError
from countenance.people.directory import MAX_LIST
from countenance.web.admin import form_action
from countenance.web.pages import Session, SessionDep, denied, error_message, page, server

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 48  # persons per page of the grid
FILTERS = ("all", "named", "unnamed", "hidden")
WATCH_DAYS = 30  # the expiry a new watch's form proposes
ALERTS_SHOWN = 100

PersonPage = Callable[..., HTMLResponse]
PersonId = Annotated[int, Path(ge=1, le=MAX_ID)]
WatchId = Annotated[int, Path(ge=1, le=MAX_ID)]


def may_see(state: ServerState, principal: Principal, face_id: int | None) -> bool:
    """Whether the crop route shows this face to the principal (admins: every face;
    investigators: the faces of photos among their results and alerts)."""
    if face_id is None:
        return False
    if principal.role == "admin":
        return True
    try:
        service.visible_face(state, principal, face_id)
    except (ApiError, CountenanceError):
        return False
    return True


# the People page ----------------------------------------------------------------------------


def _persons(
    state: ServerState, show: str, min_faces: int, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` persons of the filter ``show`` from ``offset`` on."""
    if show != "hidden":
        named = {"named": True, "unnamed": False}.get(show)
        return state.engine.people.list(
            min_faces=min_faces, hidden=False, named=named, limit=limit, offset=offset
        )
    # the directory lists hidden persons only among the others: keep just those
    found: list[dict[str, Any]] = []
    start = 0
    while len(found) < offset + limit:
        batch = state.engine.people.list(
            min_faces=min_faces, hidden=True, limit=MAX_LIST, offset=start
        )
        found += [p for p in batch if p["hidden"]]
        if len(batch) < MAX_LIST:
            break
        start += MAX_LIST
    return found[offset : offset + limit]


def _people_page(
    request: Request,
    session: Session,
    status_code: int = 200,
    *,
    show: str = "all",
    page_no: int = 1,
    min_faces: int = 2,
    **context: Any,
) -> HTMLResponse:
    # also the page a refused form shows again: never to a role that may not read it
    refused = denied(request, session, "people.read")
    if refused is not None:
        return refused
    state = server(request)
    show = show if show in FILTERS else "all"
    found = _persons(state, show, min_faces, (page_no - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    persons = found[:PAGE_SIZE]
    return page(
        request,
        session,
        "people.html",
        status_code=status_code,
        persons=persons,
        visible={p["id"] for p in persons if may_see(state, session.principal, p["cover_face_id"])},
        show=show,
        filters=FILTERS,
        page_no=page_no,
        more=len(found) > PAGE_SIZE,
        min_faces=min_faces,
        counts=state.engine.people.counts(),
        **context,
    )


@router.get("/people")
def people_page(
    request: Request,
    session: SessionDep,
    show: str = "all",
    page_no: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
    min_faces: Annotated[int, Query(ge=1, le=1_000_000)] = 2,
) -> HTMLResponse:
    return _people_page(request, session, show=show, page_no=page_no, min_faces=min_faces)


# a person's page ----------------------------------------------------------------------------


def _person_page(
    request: Request,
    session: Session,
    person_id: int,
    status_code: int = 200,
    *,
    template: str = "person.html",
    **context: Any,
) -> HTMLResponse:
    refused = denied(request, session, "people.read")
    if refused is not None:
        return refused
    state = server(request)
    try:
        record = service.person(state, session.principal, person_id)
    except (ApiError, CountenanceError) as exc:
        message, status = error_message(exc)
        return page(request, session, "error.html", status_code=status, message=message)
    faces = record["face_list"]
    return page(
        request,
        session,
        template,
        status_code=status_code,
        person=record,
        visible={f["face_id"] for f in faces if may_see(state, session.principal, f["face_id"])},
        expires=(dt.date.today() + dt.timedelta(days=WATCH_DAYS)).isoformat(),
        **context,
    )


def _again(person_id: int, **fixed: Any) -> PersonPage:
    """The person's page shown again after a refused or failed form."""

    def again(
        request: Request, session: Session, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        return _person_page(request, session, person_id, status_code, **fixed, **context)

    return again


def _back(person_id: int) -> Callable[[object], Response]:
    return lambda _result: RedirectResponse(f"/people/{person_id}", status_code=303)


@router.get("/people/{person_id}")
def person_page(request: Request, session: SessionDep, person_id: PersonId) -> HTMLResponse:
    return _person_page(request, session, person_id)


@router.post("/people/{person_id}/name")
def name_person(
    request: Request,
    session: SessionDep,
    person_id: PersonId,
    name: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "people.write",
        "name persons",
        lambda state: service.name_person(
            state, session.principal, person_id, name.strip() or None
        ),
        _back(person_id),
        _again(person_id),
    )


@router.post("/people/{person_id}/merge")
def merge_people(
    request: Request,
    session: SessionDep,
    person_id: PersonId,
    others: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "people.write",
        "merge persons",
        lambda state: service.merge_people(
            state, session.principal, person_id, _ids(others, "person ids")
        ),
        _back(person_id),
        _again(person_id),
    )


@router.post("/people/{person_id}/split")
def split_person(
    request: Request,
    session: SessionDep,
    person_id: PersonId,
    faces: Annotated[list[str] | None, Form()] = None,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def done(result: dict[str, Any]) -> Response:
        return RedirectResponse(f"/people/{result['new_person']}", status_code=303)

    return form_action(
        request,
        session,
        csrf,
        "people.write",
        "split persons",
        lambda state: service.split_person(
            state, session.principal, person_id, _ids(" ".join(faces or []), "faces")
        ),
        done,
        _again(person_id),
    )


@router.post("/people/{person_id}/not")
def reject_faces(
    request: Request,
    session: SessionDep,
    person_id: PersonId,
    faces: Annotated[list[str] | None, Form()] = None,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def work(state: ServerState) -> bool:
        """Whether the person is left with a face (else it is gone)."""
        service.reject_faces(
            state, session.principal, person_id, _ids(" ".join(faces or []), "faces")
        )
        try:
            return bool(state.engine.people.show(person_id)["face_list"])
        except CountenanceError:
            return False

    def done(left: bool) -> Response:
        return RedirectResponse(f"/people/{person_id}" if left else "/people", status_code=303)

    return form_action(
        request, session, csrf, "people.write", "change persons", work, done, _again(person_id)
    )


@router.post("/people/{person_id}/hide")
def hide_person(
    request: Request,
    session: SessionDep,
    person_id: PersonId,
    hidden: Annotated[str, Form()] = "1",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "people.write",
        "hide persons",
        lambda state: service.hide_person(state, session.principal, person_id, hidden == "1"),
        _back(person_id),
        _again(person_id),
    )


# erasing a person: the faces are reviewed first, then the erasure confirmed -----------------


@router.get("/people/{person_id}/erase")
def erase_review(request: Request, session: SessionDep, person_id: PersonId) -> HTMLResponse:
    return denied(request, session, "erase") or _person_page(
        request, session, person_id, review=True
    )


@router.post("/people/{person_id}/erase")
def erase_person(
    request: Request,
    session: SessionDep,
    person_id: PersonId,
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    def work(state: ServerState) -> dict[str, Any]:
        if not reason.strip():
            raise ApiError(400, "invalid_request", "give the reason for the erasure")
        if confirm != "yes":
            raise ApiError(400, "invalid_request", "confirm that these faces are to be erased")
        return service.erase(state, session.principal, person=person_id, reason=reason.strip())

    return form_action(
        request,
        session,
        csrf,
        "erase",
        "erase",
        work,
        lambda receipt: _people_page(request, session, receipt=receipt, erased=person_id),
        _again(person_id, review=True),
    )


# watches and alerts -------------------------------------------------------------------------


def _alerts_page(
    request: Request, session: Session, status_code: int = 200, **context: Any
) -> HTMLResponse:
    refused = denied(request, session, "watch")
    if refused is not None:
        return refused
    state = server(request)
    found = service.alerts(state, session.principal, limit=1000)[-ALERTS_SHOWN:]
    return page(
        request,
        session,
        "alerts.html",
        status_code=status_code,
        alerts=list(reversed(found)),
        watches=service.watches(state, session.principal),
        expires=(dt.date.today() + dt.timedelta(days=WATCH_DAYS)).isoformat(),
        **context,
    )


@router.get("/alerts")
def alerts_page(request: Request, session: SessionDep) -> HTMLResponse:
    return _alerts_page(request, session)


@router.post("/watches")
def add_watch(
    request: Request,
    session: SessionDep,
    purpose: Annotated[str, Form()] = "",
    case: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "",
    person: Annotated[str, Form()] = "",
    photo: Annotated[UploadFile | None, File()] = None,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    person_id = _ids(person, "person id")[0] if _is_id(person) else None

    def work(state: ServerState) -> dict[str, Any]:
        if person.strip() and person_id is None:
            _ids(person, "person id")  # says what is wrong with it
        data = read_upload(photo) if photo is not None and photo.filename else None
        if (data is None) == (person_id is None):
            raise ApiError(400, "invalid_request", "give a photo of the person to watch for")
        try:
            until = dt.date.fromisoformat(expires.strip())
        except ValueError:
            raise ApiError(400, "invalid_request", "give the day the watch ends") from None
        return service.add_watch(
            state,
            session.principal,
            photo=data,
            person=person_id,
            purpose=purpose,
            case=case.strip() or None,
            expires=until,
        )

    failed: PersonPage = _alerts_page if person_id is None else _again(person_id)
    return form_action(
        request,
        session,
        csrf,
        "watch",
        "watch for persons",
        work,
        lambda watch: RedirectResponse(f"/alerts?watch={watch['id']}", status_code=303),
        failed,
    )


@router.post("/watches/{watch_id}/remove")
def remove_watch(
    request: Request, session: SessionDep, watch_id: WatchId, csrf: Annotated[str, Form()] = ""
) -> Response:
    return form_action(
        request,
        session,
        csrf,
        "watch",
        "remove watches",
        lambda state: service.remove_watch(state, session.principal, watch_id),
        lambda _done: RedirectResponse("/alerts", status_code=303),
        _alerts_page,
    )


def _ids(text: str, what: str) -> list[int]:
    """The ids a form field holds (``12``, ``12, 14``); 400 for anything else."""
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not parts or not all(_is_id(p) for p in parts):
        raise ApiError(400, "invalid_request", f"give the {what} as numbers")
    return [int(p) for p in parts]


def _is_id(text: str) -> bool:
    text = text.strip()
    return text.isascii() and text.isdigit() and 0 < len(text) <= 19 and 1 <= int(text) <= MAX_ID
