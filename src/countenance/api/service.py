"""The operations behind both the REST API and the browser UI, so the two cannot drift:
each takes the server state and the calling principal and returns plain JSON-able data.

Every write of the server goes through here: it queues on the server's write lock, runs the
engine's change as the principal, and, where the change can leave uploaded files that no
stored photo refers to any more (erasure, retirement, exclusion), sweeps them (audited).

Example::

    result = search(state, principal, photo_bytes, purpose="missing person", case="17")
    receipt = erase(state, principal, face_id=40, reason="Art. 17 request 114")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from PIL import Image

from countenance import imaging
from countenance.api.auth import Principal
from countenance.api.errors import ApiError
from countenance.api.jobs import fsync_dir
from countenance.api.records import face_photo, photo_dates, photo_record
from countenance.errors import BackendError, InvalidArgument, NotFound
from countenance.governance.access import JSON_NAME
from countenance.sources.folder import FileListSource
from countenance.types import IngestSummary, SourceInfo

if TYPE_CHECKING:  # the state builds its jobs on this module's functions: no import back
    from countenance.api.state import ServerState

log = logging.getLogger("countenance.api")

WRITE_WAIT_SECONDS = 30.0
UPLOAD_ACTION = "upload"  # audit action of uploads: ops receive, resume, interrupted, discard
SERVER_ACTOR = "server"  # the actor of what the server does on its own (start-up, sweeps)


@contextlib.contextmanager
def writing(state: ServerState) -> Iterator[None]:
    """Hold the server's write lock; 503 (BackendError) if a long write keeps it too long."""
    if not state.write_lock.acquire(timeout=WRITE_WAIT_SECONDS):
        raise BackendError("the store is busy with another write (an ingest?); try again later")
    try:
        yield
    finally:
        state.write_lock.release()


def add_source(
    state: ServerState,
    principal: Principal,
    name: str,
    *,
    basis: str,
    jurisdiction: str | None = None,
    consent_ref: str | None = None,
    licence: str | None = None,
    retention_days: int | None = None,
    minors: bool = False,
    adults_only: bool = False,
) -> SourceInfo:
    """Declare a source and its lawful basis (audited as the principal)."""
    with writing(state):
        return state.engine.add_source(
            name,
            basis=basis,
            jurisdiction=jurisdiction,
            consent_ref=consent_ref,
            licence=licence,
            retention_days=retention_days,
            minors=minors,
            adults_only=adults_only,
            actor=principal.name,
        )


def retire_source(state: ServerState, principal: Principal, name: str) -> dict[str, int]:
    """Retire a source: its photos and faces go, and its uploaded files with them."""
    with writing(state):
        removed = state.engine.retire_source(name, actor=principal.name)
        sweep_uploads(state)
    return removed


def erase(
    state: ServerState,
    principal: Principal,
    *,
    reason: str,
    photo: bytes | None = None,
    face_id: int | None = None,
    photo_id: int | None = None,
    person: int | None = None,
) -> dict[str, Any]:
    """Erase a person (by a photo of them, a face id or a person id) or a photo; returns the
    receipt. What erasure removed from the catalog goes from the uploads folder too."""
    with writing(state):
        receipt = state.engine.erase(
            photo=photo,
            face_id=face_id,
            photo_id=photo_id,
            person=person,
            reason=reason,
            actor=principal.name,
        )
        sweep_uploads(state)
    return receipt.to_json()


def exclude(
    state: ServerState, principal: Principal, code: str, *, reason: str | None = None
) -> dict[str, Any]:
    """Exclude a jurisdiction: its photos are purged (their uploaded files too) and refused."""
    with writing(state):
        done = state.engine.exclude(code, reason=reason, actor=principal.name)
        sweep_uploads(state)
    return done


def allow(state: ServerState, principal: Principal, code: str) -> bool:
    """Lift an exclusion; returns whether there was one."""
    with writing(state):
        return state.engine.allow(code, actor=principal.name)


def search(
    state: ServerState,
    principal: Principal,
    data: bytes,
    *,
    purpose: str,
    case: str | None,
    top: int | None = None,
    min_similarity: float | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """Leads for every face of the probe ``data``; audited with the key's name as actor."""
    result = state.engine.search(
        data,
        actor=principal.name,
        purpose=purpose,
        case=case,
        top=top,
        min_similarity=min_similarity,
        location=location,
    )
    if state.settings.keep_probes:
        _keep_probe(state, data, result.probe_sha256)
    photo_ids = {m.photo_id for f in result.faces for m in f.matches}
    dates = photo_dates(state.engine, photo_ids)
    state.saw(principal.name, photo_ids)
    state.metrics.searches.inc()
    admin = principal.role == "admin"
    return {
        "probe_sha256": result.probe_sha256,
        "gallery_faces": result.gallery_faces,
        "min_similarity": round(result.min_similarity, 4),
        "faces": [
            {
                "box": face.box.as_list(),
                "quality": round(face.quality, 3),
                "matches": [
                    {
                        **m.to_json(),
                        **({} if admin else _public_match(m.to_json())),
                        "photo_id": m.photo_id,
                        "ingested_at": dates.get(m.photo_id),
                    }
                    for m in face.matches
                ],
                "persons": [p.to_json() for p in face.persons],
            }
            for face in result.faces
        ],
    }


NOT_AMONG_RESULTS = "no such photo among your search results"


def may_view(state: ServerState, principal: Principal, photo_id: int) -> None:
    """Admins see every photo; investigators the photos their own searches returned. A photo
    not among them is NotFound, as one that does not exist: which ids exist is not told."""
    if principal.role == "admin":
        return
    if not principal.can("view_results"):
        raise ApiError(403, "forbidden", f"the {principal.role} role may not view results")
    if not state.has_seen(principal.name, photo_id):
        raise NotFound(NOT_AMONG_RESULTS)


def visible_face(state: ServerState, principal: Principal, face_id: int) -> int:
    """The photo id of a face the principal may see; NotFound alike for a face that does
    not exist and one outside their results (one status, one message)."""
    try:
        photo_id, _box = face_photo(state.engine, face_id)
    except NotFound:
        if principal.role == "admin":
            raise
        may_view(state, principal, 0)  # 403 for a role without results; else NotFound
        raise
    may_view(state, principal, photo_id)
    return photo_id


def photo_view(state: ServerState, principal: Principal, photo_id: int) -> dict[str, Any]:
    """A photo record the principal may see; only admins see where its file is kept."""
    may_view(state, principal, photo_id)
    record = photo_record(state.engine, photo_id)
    if principal.role != "admin":
        record = {**record, "uri": public_uri(record["uri"], record.get("page_url"))}
    return record


def _public_match(match: dict[str, Any]) -> dict[str, Any]:
    return {
        "photo": public_uri(match["photo"]),
        "uri": public_uri(match["uri"], match["page_url"]),
        "also_at": [public_uri(u) for u in match["also_at"]],
    }


def public_uri(uri: str | None, page_url: str | None = None) -> str | None:
    """Where a photo is, as a non-admin may see it: a URL as it is, a server file by its
    name alone (never the folders it is kept in)."""
    if uri is None or re.match(r"(?i)https?://", uri):
        return uri
    return page_url or Path(uri).name


def detect(state: ServerState, data: bytes) -> dict[str, Any]:
    """The faces found in a photo (boxes only, nothing compared or stored): what the search
    page draws so the user can pick a face."""
    decoded = imaging.decode(data, max_pixels=state.settings.max_pixels, name="probe")
    faces = state.engine.pipeline.detect(decoded.rgb)
    return {
        "width": decoded.width,
        "height": decoded.height,
        "faces": [{"box": f.box.as_list(), "score": round(f.score, 3)} for f in faces],
    }


def _keep_probe(state: ServerState, data: bytes, digest: str) -> None:
    folder = state.engine.data_dir / "probes"
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / f"{digest}.img").write_bytes(data)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str | None, n: int) -> str:
    """A file name that cannot climb out of its folder or hide: ``NNN-name.ext``."""
    base = _UNSAFE.sub("_", Path(filename or "photo").name).lstrip(".")[-80:] or "photo"
    return f"{n:04d}-{base}"


def uploads_dir(state: ServerState) -> Path:
    """Where the server keeps the photos uploaded into sources: ``SOURCE_ID/JOB/NNNN-name``."""
    return (state.engine.data_dir / "uploads").resolve()


def upload(
    state: ServerState, principal: Principal, source: str, files: list[tuple[str | None, BinaryIO]]
) -> dict[str, Any]:
    """Save uploaded photos under the data directory and start an ingest job on them.

    The files are on disk (flushed) and the job recorded before it is queued, so a server
    stopped from then on resumes it at its next start; the upload is audited (``upload``,
    op ``receive``) before the job starts.
    """
    if not files:
        raise InvalidArgument("send one or more photos as multipart field 'photos'")
    info = state.engine.catalog.get_source(source)  # NotFound for an unknown source
    if info.retired_at is not None:
        raise InvalidArgument(f"source {source!r} is retired")
    job = state.jobs.receive(source, actor=principal.name)
    folder = uploads_dir(state) / str(info.id) / job.id
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        saved: list[Path] = []
        for n, (filename, fh) in enumerate(files):
            path = folder / safe_name(filename, n)
            with path.open("wb") as out:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            saved.append(_with_image_suffix(path))
        fsync_dir(folder)  # the new names (and renames) too
    except OSError as exc:
        state.jobs.fail(job, f"cannot save the upload: {exc.strerror or exc}")
        raise BackendError(f"cannot save the upload: {exc.strerror or exc}") from exc
    try:
        state.engine.audit.append(
            actor=principal.name,
            action=UPLOAD_ACTION,
            details={"op": "receive", "job": job.id, "source": source, "files": len(saved)},
        )
    except BackendError as exc:
        state.jobs.fail(job, str(exc))  # never started, so the sweep may take its files
        raise
    return state.jobs.start(job, saved).to_json()


_SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
_SUFFIX_OF_FORMAT |= {"TIFF": ".tiff", "PPM": ".ppm"}


def _with_image_suffix(path: Path) -> Path:
    """The file, renamed to the suffix of its format when its name has no image suffix
    (ingest takes only image suffixes; an API client may send any name or none)."""
    if path.suffix.lower() in imaging.IMAGE_SUFFIXES:
        return path
    try:
        with Image.open(path) as image:
            suffix = _SUFFIX_OF_FORMAT.get(image.format or "")
    except (OSError, ValueError, Image.DecompressionBombError):
        return path  # not an image: ingest reports it
    if suffix is None:
        return path
    return path.rename(path.with_name(path.name + suffix))


# Why the sweep deleted a job folder's files (audit action "upload", op "discard"), by what
# the server knows of the job: it ended, it failed (or was cut off while being received), or
# no job of that name is remembered (older than the jobs kept, or from before jobs were kept).
DISCARD_REASONS = {"ended": "not_stored", "failed": "job_failed", "unknown": "no_job"}


def sweep_uploads(state: ServerState, actor: str | None = None) -> int:
    """Delete uploaded files that no stored photo refers to: erased, retired, excluded,
    expired, or never stored (a bad file, a duplicate, a failed job). Files of jobs still
    receiving, queued or running are left alone. Returns how many were deleted.

    Nothing goes unrecorded: before the files go, one audit event per reason (action
    ``upload``, op ``discard``, see :data:`DISCARD_REASONS`) says how many files of which
    jobs are deleted, with ``actor`` (by default the server itself) as its actor.

    An uploaded copy is the server's own, so what erasure removes from the catalog goes
    from the disk too.
    """
    root = uploads_dir(state)
    if not root.is_dir():
        return 0
    with state.sweep_lock:
        folders = [d for d in root.glob("*/*") if d.is_dir()]
        # what the jobs are, before what is stored: a job that ends after this look stays
        # busy here, so no photo it stores later can be missing from the stored set below
        phases = {d: state.jobs.phase(d.name) for d in folders}
        kept = _stored_uris(state, root)
        doomed: dict[str, dict[str, list[Path]]] = {}  # reason -> job -> files
        for job_dir, phase in phases.items():
            if phase == "busy":
                continue
            gone = [p for p in job_dir.iterdir() if p.is_file() and str(p) not in kept]
            if gone:
                doomed.setdefault(DISCARD_REASONS[phase], {})[job_dir.name] = gone
        removed = 0
        for reason, jobs in sorted(doomed.items()):
            # recorded first: a crash between the two leaves an event for files still there
            # (the next sweep records them again), never files gone without one
            state.engine.audit.append(
                actor=actor or SERVER_ACTOR,
                action=UPLOAD_ACTION,
                details={
                    "op": "discard",
                    "reason": reason,
                    "files": sum(len(f) for f in jobs.values()),
                    "jobs": {job: len(f) for job, f in sorted(jobs.items())},
                },
            )
            for paths in jobs.values():
                for path in paths:
                    path.unlink(missing_ok=True)
                    removed += 1
        for job_dir in folders:
            with contextlib.suppress(OSError):
                job_dir.rmdir()  # only when empty
    if removed:
        log.info("deleted %d uploaded files no stored photo refers to", removed)
    return removed


def _stored_uris(state: ServerState, root: Path) -> set[str]:
    """The uploaded files that stored photos refer to."""
    return state.engine.catalog.stored_uris(str(root) + os.sep)


def resume_jobs(state: ServerState) -> list[dict[str, Any]]:
    """At start-up: run again the ingest jobs a stopped server left queued or running, and
    fail those it stopped while receiving; each is audited (``upload``, op ``resume`` or
    ``interrupted``). The uploads folder is swept in between, when nothing else runs, and
    keeps the files of the resumed jobs. Returns the jobs it found, as clients see them."""
    found = state.jobs.recover()
    for job in found:
        resumed = job.state == "queued"
        state.engine.audit.append(
            actor=SERVER_ACTOR,
            action=UPLOAD_ACTION,
            details={
                "op": "resume" if resumed else "interrupted",
                "job": job.id,
                "source": job.source,
                "by": job.actor,
                "files": len(job.files),
                "done": job.done,  # as last recorded; the ingest skips what it stored
            },
        )
        if resumed:
            log.info("resuming ingest job %s (%d files)", job.id, len(job.files))
        else:
            log.warning("ingest job %s was cut off while its files were received", job.id)
    # what retention purged when the store opened goes from the uploads folder too
    sweep_uploads(state)
    state.jobs.resume()
    return [job.to_json() for job in found]


def run_ingest(
    state: ServerState, source: str, files: list[Path], actor: str, progress: Any
) -> IngestSummary:
    """What an ingest job does (on the jobs thread)."""
    with writing(state):
        return state.engine.ingest(
            FileListSource(files, root=files[0].parent if files else None),
            source=source,
            progress=progress,
            actor=actor,
        )


def export(
    state: ServerState, principal: Principal, data: bytes, *, purpose: str, case: str | None
) -> dict[str, Any]:
    """Subject access: what is held about the person in the photo, as JSON (a search)."""
    with tempfile.TemporaryDirectory(prefix="countenance-export-") as out:
        state.engine.export(data, out, actor=principal.name, purpose=purpose, case=case)
        report: dict[str, Any] = json.loads((Path(out) / JSON_NAME).read_text())
    return report


# persons and watches ---------------------------------------------------------------------
# Persons are read and changed through ``engine.people``; a watch is its owner's: anyone
# but an admin sees, lists alerts of and removes only the watches it started.


def people(
    state: ServerState,
    principal: Principal,
    *,
    min_faces: int = 2,
    hidden: bool = False,
    named: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of persons, most faces first, and how many faces are (un)assigned."""
    found = state.engine.people.list(
        min_faces=min_faces, hidden=hidden, named=named, limit=limit, offset=offset
    )
    return {"people": found, "counts": state.engine.people.counts()}


def person(state: ServerState, principal: Principal, person_id: int) -> dict[str, Any]:
    """One person with its faces (``face_list``); only admins see where the files are kept."""
    record = state.engine.people.show(person_id)
    if principal.role != "admin":
        record["face_list"] = [{**f, "uri": public_uri(f["uri"])} for f in record["face_list"]]
    return record


def _person_summary(state: ServerState, person_id: int) -> dict[str, Any]:
    record = state.engine.people.show(person_id)
    record.pop("face_list", None)
    return record


def name_person(
    state: ServerState, principal: Principal, person_id: int, name: str | None
) -> dict[str, Any]:
    """Name a person (None: remove its name); the person as it is now."""
    with writing(state):
        state.engine.people.name(person_id, name, actor=principal.name)
        return _person_summary(state, person_id)


def merge_people(
    state: ServerState, principal: Principal, into: int, others: list[int]
) -> dict[str, Any]:
    """Move the faces of ``others`` into ``into``. Merging a person with itself alone moves
    nothing and is no error: the request is already true."""
    rest = sorted({int(p) for p in others} - {int(into)})
    with writing(state):
        if rest:
            moved = state.engine.people.merge(into, rest, actor=principal.name)
        else:
            state.engine.people.show(into)  # NotFound
            moved = 0
    return {"person": into, "merged": rest, "moved": moved}


def split_person(
    state: ServerState, principal: Principal, person_id: int, faces: list[int]
) -> dict[str, Any]:
    """Move these faces into a new person; 409 when they are every face it has (a person
    keeps at least one)."""
    wanted = sorted({int(f) for f in faces})
    with writing(state):
        members = {f["face_id"] for f in state.engine.people.show(person_id)["face_list"]}
        if members and members == set(wanted):
            raise ApiError(
                409, "conflict", f"a split must leave person {person_id} at least one face"
            )
        new = state.engine.people.split(person_id, wanted, actor=principal.name)
    return {"person": person_id, "new_person": new, "faces": wanted}


def hide_person(
    state: ServerState, principal: Principal, person_id: int, hidden: bool
) -> dict[str, Any]:
    """Hide a person from the list (or show it again); the person as it is now."""
    with writing(state):
        state.engine.people.hide(person_id, hidden, actor=principal.name)
        return _person_summary(state, person_id)


def reject_faces(
    state: ServerState, principal: Principal, person_id: int, faces: list[int]
) -> dict[str, Any]:
    """ "Not this person": the faces leave it and clustering never puts them back."""
    wanted = sorted({int(f) for f in faces})
    with writing(state):
        removed = state.engine.people.reject(person_id, wanted, actor=principal.name)
    return {"person": person_id, "faces": wanted, "removed": removed}


def recluster(state: ServerState, principal: Principal) -> dict[str, Any]:
    """Place every face again by the clustering rule (what people decided stays)."""
    with writing(state):
        return dict(state.engine.people.recluster(actor=principal.name))


def add_watch(
    state: ServerState,
    principal: Principal,
    *,
    purpose: str,
    case: str | None,
    expires: dt.date | dt.datetime,
    photo: bytes | None = None,
    person: int | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """Watch for the person in ``photo`` or person ``person`` until ``expires``: a search
    (purpose, case, the actor's rate, audited) owned by the principal."""
    with writing(state):
        return state.engine.watch(
            photo=photo,
            person=person,
            actor=principal.name,
            purpose=purpose,
            case=case,
            expires=expires,
            location=location,
        )


def watches(state: ServerState, principal: Principal) -> list[dict[str, Any]]:
    """The principal's watches (every watch, for an admin), oldest first."""
    return state.engine.watches(actor=None if principal.role == "admin" else principal.name)


def own_watch(state: ServerState, principal: Principal, watch_id: int) -> dict[str, Any]:
    """A watch the principal may see; NotFound alike for one that does not exist and one
    that another started (which ids exist is not told)."""
    for watch in watches(state, principal):
        if watch["id"] == watch_id:
            return watch
    raise NotFound(f"no watch {watch_id}")


def remove_watch(state: ServerState, principal: Principal, watch_id: int) -> None:
    """End one of the principal's watches now (its template and alerts go)."""
    with writing(state):
        own_watch(state, principal, watch_id)
        state.engine.unwatch(watch_id, actor=principal.name)


def alerts(
    state: ServerState,
    principal: Principal,
    *,
    watch: int | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Alerts of the principal's watches (of every watch, for an admin), oldest first. The
    photos they name become the principal's to open (an alert is a result, audited when it
    was raised); others see a file's name, never where it is kept."""
    admin = principal.role == "admin"
    if watch is not None:
        own_watch(state, principal, watch)
    found = state.engine.alerts(
        watch=watch, actor=None if admin else principal.name, after=after, limit=limit
    )
    if admin:
        return found
    state.saw(principal.name, {a["photo_id"] for a in found if a["photo_id"] is not None})
    return [{**a, "photo": public_uri(a["photo"])} for a in found]
