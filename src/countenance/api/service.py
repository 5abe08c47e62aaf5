"""The operations behind both the REST API and the browser UI, so the two cannot drift:
each takes the server state and the calling principal and returns plain JSON-able data.

Example::

    result = search(state, principal, photo_bytes, purpose="missing person", case="17")
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from PIL import Image

from countenance import imaging
from countenance.api.auth import Principal
from countenance.api.errors import ApiError
from countenance.api.records import photo_dates
from countenance.api.state import ServerState
from countenance.catalog import schema as s
from countenance.errors import BackendError, InvalidArgument
from countenance.governance.access import JSON_NAME
from countenance.sources.folder import FileListSource
from countenance.types import IngestSummary

log = logging.getLogger("countenance.api")

WRITE_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def writing(state: ServerState) -> Iterator[None]:
    """Hold the server's write lock; 503 (BackendError) if a long write keeps it too long."""
    if not state.write_lock.acquire(timeout=WRITE_WAIT_SECONDS):
        raise BackendError("the store is busy with another write (an ingest?); try again later")
    try:
        yield
    finally:
        state.write_lock.release()


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
    return {
        "probe_sha256": result.probe_sha256,
        "gallery_faces": result.gallery_faces,
        "min_similarity": round(result.min_similarity, 4),
        "faces": [
            {
                "box": face.box.as_list(),
                "quality": round(face.quality, 3),
                "matches": [
                    {**m.to_json(), "photo_id": m.photo_id, "ingested_at": dates.get(m.photo_id)}
                    for m in face.matches
                ],
            }
            for face in result.faces
        ],
    }


def may_view(state: ServerState, principal: Principal, photo_id: int) -> None:
    """Admins see every photo; investigators the photos their own searches returned."""
    if principal.role == "admin":
        return
    if principal.can("view_results") and state.has_seen(principal.name, photo_id):
        return
    raise ApiError(403, "forbidden", "this photo was not among your search results")


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
    """Save uploaded photos under the data directory and start an ingest job on them."""
    if not files:
        raise InvalidArgument("send one or more photos as multipart field 'photos'")
    info = state.engine.catalog.get_source(source)  # NotFound for an unknown source
    if info.retired_at is not None:
        raise InvalidArgument(f"source {source!r} is retired")
    job = state.jobs.receive(source, actor=principal.name)
    folder = uploads_dir(state) / str(info.id) / job.id
    try:
        folder.mkdir(parents=True, exist_ok=True)
        saved: list[Path] = []
        for n, (filename, fh) in enumerate(files):
            path = folder / safe_name(filename, n)
            with path.open("wb") as out:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
            saved.append(_with_image_suffix(path))
    except OSError as exc:
        state.jobs.fail(job, f"cannot save the upload: {exc.strerror or exc}")
        raise BackendError(f"cannot save the upload: {exc.strerror or exc}") from exc
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


def sweep_uploads(state: ServerState) -> int:
    """Delete uploaded files that no stored photo refers to: erased, retired, excluded,
    expired, or never stored (a bad file, a duplicate). Files of jobs still receiving, queued
    or running are left alone. Returns how many were deleted.

    An uploaded copy is the server's own, so what erasure removes from the catalog goes
    from the disk too.
    """
    root = uploads_dir(state)
    if not root.is_dir():
        return 0
    busy = state.jobs.busy_ids()
    p = s.photos
    prefix = str(root) + os.sep
    with state.engine.catalog.db.connect() as conn:
        # LIKE may match more than the prefix ("_" is a wildcard): startswith decides
        rows = conn.execute(sa.select(p.c.uri).where(p.c.uri.like(prefix + "%"))).scalars()
        kept = {uri for uri in rows if uri.startswith(prefix)}
    removed = 0
    for job_dir in root.glob("*/*"):
        if not job_dir.is_dir() or job_dir.name in busy:
            continue
        for path in job_dir.iterdir():
            if str(path) not in kept:
                path.unlink(missing_ok=True)
                removed += 1
        with contextlib.suppress(OSError):
            job_dir.rmdir()  # only when empty
    if removed:
        log.info("deleted %d uploaded files no stored photo refers to", removed)
    return removed


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


def export(state: ServerState, principal: Principal, data: bytes) -> dict[str, Any]:
    """Subject access: what is held about the person in the photo, as JSON."""
    with tempfile.TemporaryDirectory(prefix="countenance-export-") as out:
        state.engine.export(data, out, actor=principal.name)
        report: dict[str, Any] = json.loads((Path(out) / JSON_NAME).read_text())
    return report
