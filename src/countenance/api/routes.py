"""The REST API under ``/v1``: JSON out, photos in as multipart uploads, a bearer key on
every call. Each route names the permission it needs (see :mod:`countenance.api.auth`).

Example::

    curl -H "Authorization: Bearer $KEY" -F photo=@probe.jpg -F purpose="missing person" \\
         -F case=17 http://127.0.0.1:8000/v1/search
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from countenance.api import records, service
from countenance.api.auth import Principal, need
from countenance.api.errors import ApiError, ErrorBody
from countenance.api.state import ServerState
from countenance.api.uploads import read_upload
from countenance.types import MAX_RETENTION_DAYS

# wire types: what a request may hold, as the OpenAPI document says it ---------------------

MAX_ID = 2**63 - 1  # ids are SQL BIGINT rowids (and FAISS int64)
MAX_PURPOSE = 2000  # countenance.catalog.audit.MAX_PURPOSE
MAX_CASE = 200  # the audit log's case_ref column
MAX_TEXT = 8192  # countenance.catalog.schema.TEXT_LIMIT: an unsized text column
# countenance.types.SOURCE_NAME without '..', spelled without look-ahead (ECMA and Rust alike)
SOURCE_NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?$"
ISO3166_PATTERN = r"^[A-Za-z]{2}(?:-[A-Za-z0-9]{1,3})?$"
NON_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"  # something besides blanks, and no NUL
NO_NUL = r"^[^\x00]*$"

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
SourceName = Annotated[str, Field(min_length=1, max_length=100, pattern=SOURCE_NAME_PATTERN)]
Iso3166 = Annotated[str, Field(min_length=2, max_length=6, pattern=ISO3166_PATTERN)]
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL)]
# the six GDPR Art. 6 bases: countenance.catalog.schema.LAWFUL_BASES (a test pins them)
LawfulBasis = Literal[
    "consent", "contract", "legal_obligation", "vital_interest", "public_task",
    "legitimate_interest",
]  # fmt: skip

_DESCRIPTIONS = {
    400: "A value the server cannot use (an empty file, conflicting fields)",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not do this, or policy refuses it",
    404: "No such record (or none you may see)",
    409: "It exists already",
    413: "The body or an image is over the limit",
    415: "An upload that is not an image",
    422: "The request does not match this document, or no face was found",
    429: "Past the key's rate limit (see Retry-After)",
    503: "The store is busy with another write or a backend is down; try again later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route: every one has the one error body."""
    every = (401, 403, 422, 429)
    return {
        s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]}
        for s in sorted({*every, *statuses})
    }


READ = error_responses()
READ_ONE = error_responses(404)
WRITE = error_responses(400, 503)
UPLOAD = error_responses(400, 404, 413, 415, 503)


class OpenModel(BaseModel):
    # a response's documented fields; the server may add more without breaking clients
    model_config = ConfigDict(extra="allow")


class Source(OpenModel):
    name: str
    lawful_basis: str
    kind: str
    jurisdiction: str | None
    consent_ref: str | None
    licence: str | None
    retention_days: int | None
    minors: bool
    adults_only: bool
    created_at: str | None
    retired_at: str | None
    photos: int
    faces: int


class Sources(OpenModel):
    sources: list[Source]


class Lead(OpenModel):
    face_id: int
    photo_id: int
    similarity: float
    band: str | None
    photo: str | None
    uri: str | None
    source: str | None
    box: list[int]
    ingested_at: str | None
    person: int | None


class PersonLead(OpenModel):
    """The matches of a probe face that belong to one person, and what is known of it."""

    person: int
    name: str | None
    similarity: float
    matched: list[int]
    faces: int
    photos: int
    sources: list[str]
    first_seen: str | None
    last_seen: str | None


class ProbeFace(OpenModel):
    box: list[int]
    quality: float
    matches: list[Lead]
    persons: list[PersonLead]


class SearchResult(OpenModel):
    probe_sha256: str
    gallery_faces: int
    min_similarity: float
    faces: list[ProbeFace]


class Verification(OpenModel):
    same: bool
    similarity: float
    band: str | None


class Photo(OpenModel):
    """A stored photo; ``uri`` is its file's path only for admins (others see its name)."""

    id: int
    uri: str | None
    page_url: str | None
    width: int | None
    height: int | None
    ingested_at: str | None


class Job(OpenModel):
    id: str
    source: str
    state: str
    done: int
    total: int


class Jobs(OpenModel):
    jobs: list[Job]


class Retired(OpenModel):
    source: str
    retired: bool


class Exclusions(OpenModel):
    exclusions: list[dict[str, Any]]


class Lifted(OpenModel):
    code: str
    lifted: bool


class AuditEvent(OpenModel):
    seq: int
    at: str
    actor: str
    action: str


class AuditEvents(OpenModel):
    events: list[AuditEvent]


router = APIRouter(prefix="/v1")


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


State = Annotated[ServerState, Depends(_state)]


def _source_json(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "lawful_basis": info.lawful_basis,
        "kind": info.kind,
        "jurisdiction": info.jurisdiction,
        "consent_ref": info.consent_ref,
        "licence": info.licence,
        "retention_days": info.retention_days,
        "minors": info.minors,
        "adults_only": info.adults_only,
        "created_at": info.created_at,
        "retired_at": info.retired_at,
        "photos": info.photos,
        "faces": info.faces,
    }


# search and verify -------------------------------------------------------------------------


Purpose = Annotated[
    str,
    Form(
        min_length=1,
        max_length=MAX_PURPOSE,
        pattern=NON_BLANK,
        description="Why this is done (audited).",
    ),
]
Case = Annotated[
    str | None,
    Form(max_length=MAX_CASE, pattern=NON_BLANK, description="The case it serves (audited)."),
]


@router.post(
    "/search",
    summary="Leads for every face in a probe photo (audited)",
    response_model=SearchResult,
    responses=UPLOAD,
)
def search(
    state: State,
    principal: Annotated[Principal, Depends(need("search"))],
    photo: Annotated[UploadFile, File(description="The probe photo.")],
    purpose: Purpose,
    case: Case = None,
    top: Annotated[int | None, Form(ge=1, le=1000)] = None,
    min_similarity: Annotated[float | None, Form(ge=-1, le=1)] = None,
    location: Annotated[
        str | None,
        Form(pattern=ISO3166_PATTERN, description="ISO 3166 code of the searcher."),
    ] = None,
) -> dict[str, Any]:
    return service.search(
        state,
        principal,
        read_upload(photo),
        purpose=purpose,
        case=case,
        top=top,
        min_similarity=min_similarity,
        location=location,
    )


@router.post(
    "/verify",
    summary="Whether the principal faces of two photos are one person",
    response_model=Verification,
    responses=UPLOAD,
)
def verify(
    state: State,
    _principal: Annotated[Principal, Depends(need("verify"))],
    a: Annotated[UploadFile, File()],
    b: Annotated[UploadFile, File()],
) -> dict[str, Any]:
    return state.engine.verify(read_upload(a, "a"), read_upload(b, "b")).to_json()


@router.get(
    "/photos/{photo_id}",
    summary="A photo of your results, with all its faces",
    response_model=Photo,
    responses=READ_ONE,
)
def photo(
    state: State,
    principal: Annotated[Principal, Depends(need("view_results"))],
    photo_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> dict[str, Any]:
    return service.photo_view(state, principal, photo_id)


@router.get(
    "/faces/{face_id}/crop",
    summary="A JPEG crop of a face of your results",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        **READ_ONE,
    },
)
def face_crop(
    state: State,
    principal: Annotated[Principal, Depends(need("view_results"))],
    face_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    service.visible_face(state, principal, face_id)
    jpeg = records.face_crop(state.engine, face_id)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# sources and ingest ------------------------------------------------------------------------


class NewSource(BaseModel):
    """A source to declare; ``lawful_basis`` is one of the six GDPR Art. 6 bases."""

    model_config = ConfigDict(strict=True)  # JSON types as declared: no "1" for 1, no 0 for false

    name: SourceName
    lawful_basis: LawfulBasis
    jurisdiction: Iso3166 | None = None
    consent_ref: Text | None = None
    licence: Text | None = None
    retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    minors: bool = False
    adults_only: bool = False  # the operator declares it holds no minors: no age estimation


@router.get(
    "/sources",
    summary="Every source with its photo and face counts",
    response_model=Sources,
    responses=READ,
)
def list_sources(
    state: State, _principal: Annotated[Principal, Depends(need("sources.read"))]
) -> dict[str, Any]:
    return {"sources": [_source_json(i) for i in state.engine.sources()]}


@router.post(
    "/sources",
    status_code=201,
    summary="Declare a source and its lawful basis",
    response_model=Source,
    responses=error_responses(400, 409, 503),
)
def add_source(
    state: State,
    principal: Annotated[Principal, Depends(need("sources.write"))],
    body: NewSource,
) -> dict[str, Any]:
    # names are unique regardless of case (the catalog's rule): a clash is a conflict
    if body.name.lower() in {i.name.lower() for i in state.engine.sources()}:
        raise ApiError(409, "conflict", f"a source named {body.name!r} exists")
    info = service.add_source(
        state,
        principal,
        body.name,
        basis=body.lawful_basis,
        jurisdiction=body.jurisdiction,
        consent_ref=body.consent_ref,
        licence=body.licence,
        retention_days=body.retention_days,
        minors=body.minors,
        adults_only=body.adults_only,
    )
    return _source_json(info)


NamePath = Annotated[
    str, Path(min_length=1, max_length=100, pattern=SOURCE_NAME_PATTERN, description="A source")
]


@router.delete(
    "/sources/{name}",
    summary="Retire a source: delete its photos and faces",
    response_model=Retired,
    responses=error_responses(400, 404, 503),
)
def retire_source(
    state: State,
    principal: Annotated[Principal, Depends(need("sources.write"))],
    name: NamePath,
) -> dict[str, Any]:
    removed = service.retire_source(state, principal, name)
    return {"source": name, "retired": True, **removed}


@router.post(
    "/sources/{name}/photos",
    status_code=202,
    summary="Upload photos into a source (a job)",
    response_model=Job,
    responses=UPLOAD,
)
def upload_photos(
    state: State,
    principal: Annotated[Principal, Depends(need("ingest"))],
    name: NamePath,
    photos: Annotated[list[UploadFile], File(min_length=1, description="One or more photos.")],
) -> dict[str, Any]:
    return service.upload(state, principal, name, [(p.filename, p.file) for p in photos])


@router.get(
    "/jobs", summary="Recent ingest jobs, newest first", response_model=Jobs, responses=READ
)
def list_jobs(
    state: State, _principal: Annotated[Principal, Depends(need("ingest"))]
) -> dict[str, Any]:
    return {"jobs": [j.to_json() for j in state.jobs.all()]}


@router.get(
    "/jobs/{job_id}",
    summary="One ingest job's state and progress",
    response_model=Job,
    responses=READ_ONE,
)
def get_job(
    state: State, _principal: Annotated[Principal, Depends(need("ingest"))], job_id: str
) -> dict[str, Any]:
    return state.jobs.get(job_id).to_json()


@router.get(
    "/status",
    summary="Counts across the store, index kind and space",
    response_model=OpenModel,
    responses=READ,
)
def status(
    state: State, _principal: Annotated[Principal, Depends(need("sources.read"))]
) -> dict[str, Any]:
    return state.engine.status().to_json()


# governance --------------------------------------------------------------------------------


@router.post(
    "/erasures",
    summary="Erase a person (by photo, face id or person id) or a photo; a receipt",
    response_model=OpenModel,
    responses=UPLOAD,
)
def erase(
    state: State,
    principal: Annotated[Principal, Depends(need("erase"))],
    reason: Annotated[
        str,
        Form(
            min_length=1,
            max_length=MAX_TEXT,
            pattern=NON_BLANK,
            description="Why (e.g. the request's number).",
        ),
    ],
    photo: Annotated[UploadFile | None, File(description="A photo of the person.")] = None,
    face_id: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None,
    photo_id: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None,
    person: Annotated[
        int | None, Form(ge=1, le=MAX_ID, description="A person: all its faces and its name.")
    ] = None,
) -> dict[str, Any]:
    data = read_upload(photo) if photo is not None else None
    return service.erase(
        state,
        principal,
        photo=data,
        face_id=face_id,
        photo_id=photo_id,
        person=person,
        reason=reason,
    )


@router.post(
    "/exports",
    summary="Subject access: what is held about the person in a photo",
    response_model=OpenModel,
    responses=UPLOAD,
)
def export(
    state: State,
    principal: Annotated[Principal, Depends(need("export"))],
    photo: Annotated[UploadFile, File()],
    purpose: Purpose,
    case: Case = None,
) -> dict[str, Any]:
    # subject access by photo is a search: purpose, case and the rate limit apply
    return service.export(state, principal, read_upload(photo), purpose=purpose, case=case)


class NewExclusion(BaseModel):
    """A jurisdiction to exclude (ISO 3166: ``CA``, ``US-IL``)."""

    model_config = ConfigDict(strict=True)  # JSON types as declared: no "1" for 1, no 0 for false

    code: Iso3166
    reason: Text | None = None


@router.get(
    "/policy/exclusions",
    summary="The excluded jurisdictions",
    response_model=Exclusions,
    responses=READ,
)
def list_exclusions(
    state: State, _principal: Annotated[Principal, Depends(need("policy.read"))]
) -> dict[str, Any]:
    return {"exclusions": state.engine.exclusions()}


@router.post(
    "/policy/exclusions",
    status_code=201,
    summary="Exclude a jurisdiction",
    response_model=OpenModel,
    responses=WRITE,
)
def add_exclusion(
    state: State,
    principal: Annotated[Principal, Depends(need("policy.write"))],
    body: NewExclusion,
) -> dict[str, Any]:
    return service.exclude(state, principal, body.code, reason=body.reason)


@router.delete(
    "/policy/exclusions/{code}",
    summary="Lift an exclusion",
    response_model=Lifted,
    responses=WRITE,
)
def remove_exclusion(
    state: State,
    principal: Annotated[Principal, Depends(need("policy.write"))],
    code: Annotated[str, Path(min_length=2, max_length=6, pattern=ISO3166_PATTERN)],
) -> dict[str, Any]:
    return {"code": code, "lifted": service.allow(state, principal, code)}


@router.get(
    "/audit",
    summary="Audited events, oldest first (page with after_seq)",
    response_model=AuditEvents,
    responses=READ,
)
def audit(
    state: State,
    _principal: Annotated[Principal, Depends(need("audit.read"))],
    action: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    events = state.engine.audit.events(action=action, actor=actor, after_seq=after_seq, limit=limit)
    return {"events": [e.to_json() for e in events]}


@router.get(
    "/audit/verify",
    summary="Check the audit log's hash chain",
    response_model=OpenModel,
    responses=READ,
)
def audit_verify(
    state: State, _principal: Annotated[Principal, Depends(need("audit.read"))]
) -> dict[str, Any]:
    return state.engine.audit.verify().to_json()
