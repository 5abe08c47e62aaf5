"""The REST API of persons, watches and alerts under ``/v1`` (issue 19). Persons are read with
``people.read`` and changed with ``people.write``; re-clustering needs ``people.recluster``
(``POST /v1/recluster``, a verb like ``/v1/search``: as ``/v1/people/recluster`` its path would
also be a person's, ``GET /v1/people/{person_id}``). Watches and alerts need ``watch``, and
anyone but an admin sees only its own.

Example::

    curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/people?named=false
    curl -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
         -d '{"name": "Ada Lovelace"}' http://127.0.0.1:8000/v1/people/7/name
    curl -H "Authorization: Bearer $KEY" -F person=7 -F purpose="missing person" -F case=17 \\
         -F expires=2027-01-31 http://127.0.0.1:8000/v1/watches
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from countenance.api import service
from countenance.api.auth import Principal, need
from countenance.api.errors import ApiError
from countenance.api.routes import (
    ISO3166_PATTERN,
    MAX_ID,
    NON_BLANK,
    READ,
    READ_ONE,
    UPLOAD,
    Case,
    Id,
    OpenModel,
    Purpose,
    State,
    error_responses,
)
from countenance.api.uploads import read_upload
from countenance.people.directory import MAX_LIST
from countenance.people.persons import NAME_LIMIT

MAX_FACES = 10_000  # face ids one split or "not" may name
MAX_MIN_FACES = 1_000_000
# a day (the watch ends at its end, UTC) or a moment (ISO 8601; without a zone it is UTC)
EXPIRES_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)

PERSON_WRITE = error_responses(400, 404, 503)
SPLIT = error_responses(400, 404, 409, 503)

PersonName = Annotated[str, Field(min_length=1, max_length=NAME_LIMIT, pattern=NON_BLANK)]
FaceIds = Annotated[list[Id], Field(min_length=1, max_length=MAX_FACES)]
PersonId = Annotated[int, Path(ge=1, le=MAX_ID, description="A person")]


# wire types ---------------------------------------------------------------------------------


class Person(OpenModel):
    """A person: its name (None: unnamed), counts, sources and its best face (``cover_face_id``)."""

    id: int
    name: str | None
    hidden: bool
    faces: int
    photos: int
    sources: list[str]
    first_seen: str | None
    last_seen: str | None
    cover_face_id: int | None


class PersonFace(OpenModel):
    face_id: int
    photo_id: int
    uri: str | None
    source: str | None
    box: list[int]
    quality: float
    pinned: bool
    ingested_at: str | None


class PersonRecord(Person):
    face_list: list[PersonFace]


class PeopleCounts(OpenModel):
    assigned: int
    unassigned: int


class People(OpenModel):
    people: list[Person]
    counts: PeopleCounts


class Merged(OpenModel):
    person: int
    merged: list[int]
    moved: int


class Split(OpenModel):
    person: int
    new_person: int
    faces: list[int]


class Rejected(OpenModel):
    person: int
    faces: list[int]
    removed: int


class Watch(OpenModel):
    """A watch: who started it, why, for which case, until when, and its alert count."""

    id: int
    actor: str
    purpose: str | None
    case: str | None
    person: int | None
    min_similarity: float
    created_at: str | None
    expires_at: str | None
    alerts: int


class Watches(OpenModel):
    watches: list[Watch]


class Unwatched(OpenModel):
    watch: int
    removed: bool


class Alert(OpenModel):
    """A new face that matched a watch; ``face_id``/``photo_id`` are None once it is gone."""

    id: int
    watch: int
    case: str | None
    face_id: int | None
    photo_id: int | None
    photo: str | None
    source: str | None
    photo_sha256: str
    similarity: float
    at: str | None


class Alerts(OpenModel):
    alerts: list[Alert]


class NameBody(BaseModel):
    """The name to give (``null`` removes it)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: PersonName | None


class MergeBody(BaseModel):
    """The persons whose faces move into this one."""

    model_config = ConfigDict(strict=True, extra="forbid")

    others: Annotated[list[Id], Field(min_length=1, max_length=MAX_LIST)]


class FacesBody(BaseModel):
    """Faces of this person."""

    model_config = ConfigDict(strict=True, extra="forbid")

    faces: FaceIds


class HideBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    hidden: bool = True


router = APIRouter(prefix="/v1")

Reader = Annotated[Principal, Depends(need("people.read"))]
Writer = Annotated[Principal, Depends(need("people.write"))]
Watcher = Annotated[Principal, Depends(need("watch"))]


# persons ------------------------------------------------------------------------------------


@router.get(
    "/people",
    summary="Persons, most faces first (page with limit and offset)",
    response_model=People,
    responses=READ,
)
def list_people(
    state: State,
    principal: Reader,
    min_faces: Annotated[int, Query(ge=0, le=MAX_MIN_FACES)] = 2,
    hidden: Annotated[bool, Query(description="Include hidden persons.")] = False,
    named: Annotated[
        bool | None, Query(description="Only named (true) or unnamed (false) persons.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict[str, Any]:
    return service.people(
        state,
        principal,
        min_faces=min_faces,
        hidden=hidden,
        named=named,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/recluster",
    summary="Place every face again by the clustering rule; names and decisions stay",
    response_model=OpenModel,
    responses=error_responses(503),
)
def recluster(
    state: State, principal: Annotated[Principal, Depends(need("people.recluster"))]
) -> dict[str, Any]:
    return service.recluster(state, principal)


@router.get(
    "/people/{person_id}",
    summary="One person with each of its faces",
    response_model=PersonRecord,
    responses=READ_ONE,
)
def show_person(state: State, principal: Reader, person_id: PersonId) -> dict[str, Any]:
    return service.person(state, principal, person_id)


@router.post(
    "/people/{person_id}/name",
    summary="Name a person (null removes the name); its faces stay with it",
    response_model=Person,
    responses=PERSON_WRITE,
)
def name_person(
    state: State, principal: Writer, person_id: PersonId, body: NameBody
) -> dict[str, Any]:
    return service.name_person(state, principal, person_id, body.name)


@router.post(
    "/people/{person_id}/merge",
    summary="Move every face of the other persons into this one",
    response_model=Merged,
    responses=PERSON_WRITE,
)
def merge_people(
    state: State, principal: Writer, person_id: PersonId, body: MergeBody
) -> dict[str, Any]:
    return service.merge_people(state, principal, person_id, body.others)


@router.post(
    "/people/{person_id}/split",
    status_code=201,
    summary="Move these faces into a new person, kept apart from this one",
    response_model=Split,
    responses=SPLIT,
)
def split_person(
    state: State, principal: Writer, person_id: PersonId, body: FacesBody
) -> dict[str, Any]:
    return service.split_person(state, principal, person_id, body.faces)


@router.post(
    "/people/{person_id}/hide",
    summary="Hide a person from the list (a stranger in the background), or show it",
    response_model=Person,
    responses=PERSON_WRITE,
)
def hide_person(
    state: State, principal: Writer, person_id: PersonId, body: HideBody
) -> dict[str, Any]:
    return service.hide_person(state, principal, person_id, body.hidden)


@router.post(
    "/people/{person_id}/not",
    summary="Not this person: the faces leave it and never go back",
    response_model=Rejected,
    responses=PERSON_WRITE,
)
def reject_faces(
    state: State, principal: Writer, person_id: PersonId, body: FacesBody
) -> dict[str, Any]:
    return service.reject_faces(state, principal, person_id, body.faces)


# watches and alerts -------------------------------------------------------------------------


def parse_expires(text: str) -> dt.date | dt.datetime:
    """A watch's ``expires``: a day (``2027-01-31``) or a moment (ISO 8601)."""
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"expires: {text!r} is not a date") from None


@router.post(
    "/watches",
    status_code=201,
    summary="Be alerted when a person (by photo or person id) is ingested again (audited)",
    response_model=Watch,
    responses=UPLOAD,
)
def add_watch(
    state: State,
    principal: Watcher,
    purpose: Purpose,
    expires: Annotated[
        str,
        Form(
            pattern=EXPIRES_PATTERN,
            max_length=40,
            description="When it ends: a day (its end, UTC) or an ISO 8601 moment.",
        ),
    ],
    case: Case = None,
    photo: Annotated[UploadFile | None, File(description="A photo of the person.")] = None,
    person: Annotated[int | None, Form(ge=1, le=MAX_ID, description="A person id.")] = None,
    location: Annotated[
        str | None,
        Form(pattern=ISO3166_PATTERN, description="ISO 3166 code of the watcher."),
    ] = None,
) -> dict[str, Any]:
    if (photo is None) == (person is None):
        raise ApiError(400, "bad_request", "send exactly one of a photo and a person id")
    return service.add_watch(
        state,
        principal,
        photo=read_upload(photo) if photo is not None else None,
        person=person,
        purpose=purpose,
        case=case,
        expires=parse_expires(expires),
        location=location,
    )


@router.get(
    "/watches",
    summary="Your watches (every watch, for an admin), with their alert counts",
    response_model=Watches,
    responses=READ,
)
def list_watches(state: State, principal: Watcher) -> dict[str, Any]:
    return {"watches": service.watches(state, principal)}


@router.delete(
    "/watches/{watch_id}",
    summary="End a watch now: its template and alerts are deleted",
    response_model=Unwatched,
    responses=error_responses(400, 404, 503),
)
def remove_watch(
    state: State,
    principal: Watcher,
    watch_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> dict[str, Any]:
    service.remove_watch(state, principal, watch_id)
    return {"watch": watch_id, "removed": True}


@router.get(
    "/alerts",
    summary="Alerts of your watches, oldest first (page with after)",
    response_model=Alerts,
    responses=READ_ONE,
)
def list_alerts(
    state: State,
    principal: Watcher,
    watch: Annotated[int | None, Query(ge=1, le=MAX_ID, description="One watch's.")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="After this alert id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    found = service.alerts(state, principal, watch=watch, after=after, limit=limit)
    return {"alerts": found}


__all__ = ["router"]
