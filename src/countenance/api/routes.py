"""The REST API under ``/v1``: JSON out, photos in as multipart uploads, a bearer key on
every call. Each route names the permission it needs (see :mod:`countenance.api.auth`).

Example::

    curl -H "Authorization: Bearer $KEY" -F photo=@probe.jpg -F purpose="missing person" \\
         -F case=17 http://127.0.0.1:8000/v1/search
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from countenance.api import records, service
from countenance.api.auth import Principal, need
from countenance.api.state import ServerState
from countenance.api.uploads import read_upload
from countenance.errors import InvalidArgument
from countenance.types import MAX_RETENTION_DAYS

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


@router.post("/search", summary="Leads for every face in a probe photo (audited)")
def search(
    state: State,
    principal: Annotated[Principal, Depends(need("search"))],
    photo: Annotated[UploadFile, File(description="The probe photo.")],
    purpose: Annotated[str, Form(description="Why this search is run (audited).")],
    case: Annotated[str | None, Form(description="The case it serves (audited).")] = None,
    top: Annotated[int | None, Form(ge=1, le=1000)] = None,
    min_similarity: Annotated[float | None, Form(ge=-1, le=1)] = None,
    location: Annotated[str | None, Form(description="ISO 3166 code of the searcher.")] = None,
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


@router.post("/verify", summary="Whether the principal faces of two photos are one person")
def verify(
    state: State,
    _principal: Annotated[Principal, Depends(need("verify"))],
    a: Annotated[UploadFile, File()],
    b: Annotated[UploadFile, File()],
) -> dict[str, Any]:
    return state.engine.verify(read_upload(a, "a"), read_upload(b, "b")).to_json()


@router.get("/photos/{photo_id}", summary="A photo of your results, with all its faces")
def photo(
    state: State,
    principal: Annotated[Principal, Depends(need("view_results"))],
    photo_id: int,
) -> dict[str, Any]:
    service.may_view(state, principal, photo_id)
    return records.photo_record(state.engine, photo_id)


@router.get(
    "/faces/{face_id}/crop",
    summary="A JPEG crop of a face of your results",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def face_crop(
    state: State,
    principal: Annotated[Principal, Depends(need("view_results"))],
    face_id: int,
) -> Response:
    photo_id, _box = records.face_photo(state.engine, face_id)
    service.may_view(state, principal, photo_id)
    jpeg = records.face_crop(state.engine, face_id)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# sources and ingest ------------------------------------------------------------------------


class NewSource(BaseModel):
    """A source to declare; ``lawful_basis`` is one of the six GDPR Art. 6 bases."""

    name: str = Field(min_length=1, max_length=200)
    lawful_basis: str
    jurisdiction: str | None = None
    consent_ref: str | None = None
    licence: str | None = None
    retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    minors: bool = False
    adults_only: bool = False  # the operator declares it holds no minors: no age estimation


@router.get("/sources", summary="Every source with its photo and face counts")
def list_sources(
    state: State, _principal: Annotated[Principal, Depends(need("sources.read"))]
) -> dict[str, Any]:
    return {"sources": [_source_json(i) for i in state.engine.sources()]}


@router.post("/sources", status_code=201, summary="Declare a source and its lawful basis")
def add_source(
    state: State,
    principal: Annotated[Principal, Depends(need("sources.write"))],
    body: NewSource,
) -> dict[str, Any]:
    if body.name in {i.name for i in state.engine.sources()}:
        raise InvalidArgument(f"a source named {body.name!r} exists")
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


@router.delete("/sources/{name}", summary="Retire a source: delete its photos and faces")
def retire_source(
    state: State, principal: Annotated[Principal, Depends(need("sources.write"))], name: str
) -> dict[str, Any]:
    removed = service.retire_source(state, principal, name)
    return {"source": name, "retired": True, **removed}


@router.post(
    "/sources/{name}/photos", status_code=202, summary="Upload photos into a source (a job)"
)
def upload_photos(
    state: State,
    principal: Annotated[Principal, Depends(need("ingest"))],
    name: str,
    photos: Annotated[list[UploadFile], File(description="One or more photos.")],
) -> dict[str, Any]:
    return service.upload(state, principal, name, [(p.filename, p.file) for p in photos])


@router.get("/jobs", summary="Recent ingest jobs, newest first")
def list_jobs(
    state: State, _principal: Annotated[Principal, Depends(need("ingest"))]
) -> dict[str, Any]:
    return {"jobs": [j.to_json() for j in state.jobs.all()]}


@router.get("/jobs/{job_id}", summary="One ingest job's state and progress")
def get_job(
    state: State, _principal: Annotated[Principal, Depends(need("ingest"))], job_id: str
) -> dict[str, Any]:
    return state.jobs.get(job_id).to_json()


@router.get("/status", summary="Counts across the store, index kind and space")
def status(
    state: State, _principal: Annotated[Principal, Depends(need("sources.read"))]
) -> dict[str, Any]:
    return state.engine.status().to_json()


# governance --------------------------------------------------------------------------------


@router.post("/erasures", summary="Erase a person (by photo or face id) or a photo; a receipt")
def erase(
    state: State,
    principal: Annotated[Principal, Depends(need("erase"))],
    reason: Annotated[str, Form(min_length=1, description="Why (e.g. the request's number).")],
    photo: Annotated[UploadFile | None, File(description="A photo of the person.")] = None,
    face_id: Annotated[int | None, Form()] = None,
    photo_id: Annotated[int | None, Form()] = None,
) -> dict[str, Any]:
    data = read_upload(photo) if photo is not None else None
    return service.erase(
        state, principal, photo=data, face_id=face_id, photo_id=photo_id, reason=reason
    )


@router.post("/exports", summary="Subject access: what is held about the person in a photo")
def export(
    state: State,
    principal: Annotated[Principal, Depends(need("export"))],
    photo: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form(description="Why the export is made (audited).")],
    case: Annotated[str | None, Form(description="The request it serves (audited).")] = None,
) -> dict[str, Any]:
    # subject access by photo is a search: purpose, case and the rate limit apply
    return service.export(state, principal, read_upload(photo), purpose=purpose, case=case)


class NewExclusion(BaseModel):
    """A jurisdiction to exclude (ISO 3166: ``CA``, ``US-IL``)."""

    code: str = Field(min_length=2, max_length=10)
    reason: str | None = None


@router.get("/policy/exclusions", summary="The excluded jurisdictions")
def list_exclusions(
    state: State, _principal: Annotated[Principal, Depends(need("policy.read"))]
) -> dict[str, Any]:
    return {"exclusions": state.engine.exclusions()}


@router.post("/policy/exclusions", status_code=201, summary="Exclude a jurisdiction")
def add_exclusion(
    state: State,
    principal: Annotated[Principal, Depends(need("policy.write"))],
    body: NewExclusion,
) -> dict[str, Any]:
    return service.exclude(state, principal, body.code, reason=body.reason)


@router.delete("/policy/exclusions/{code}", summary="Lift an exclusion")
def remove_exclusion(
    state: State, principal: Annotated[Principal, Depends(need("policy.write"))], code: str
) -> dict[str, Any]:
    return {"code": code, "lifted": service.allow(state, principal, code)}


@router.get("/audit", summary="Audited events, oldest first (page with after_seq)")
def audit(
    state: State,
    _principal: Annotated[Principal, Depends(need("audit.read"))],
    action: str | None = None,
    actor: str | None = None,
    after_seq: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    events = state.engine.audit.events(action=action, actor=actor, after_seq=after_seq, limit=limit)
    return {"events": [e.to_json() for e in events]}


@router.get("/audit/verify", summary="Check the audit log's hash chain")
def audit_verify(
    state: State, _principal: Annotated[Principal, Depends(need("audit.read"))]
) -> dict[str, Any]:
    return state.engine.audit.verify().to_json()
