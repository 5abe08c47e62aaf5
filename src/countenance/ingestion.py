"""How the engine ingests a source: read each item, screen it (already stored, excluded
jurisdiction, minors), analyse it in worker processes, refuse suppressed faces, and store
photo and faces in the catalog before the index.

The engine calls :func:`run_ingest` with itself, under its writer lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from countenance import imaging
from countenance.catalog.governance import covers, iso3166
from countenance.catalog.sql import PhotoRecord
from countenance.errors import BadImage, InvalidArgument
from countenance.governance.geo import photo_jurisdiction
from countenance.ingest import Analysis, PhotoAnalyser, run_analyses
from countenance.ports import Source, Vectors
from countenance.sources.folder import FileItem
from countenance.types import IngestSummary, Provenance, SourceInfo

if TYPE_CHECKING:
    from countenance.engine import Engine

log = logging.getLogger("countenance")

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each item of an ingest."""


@dataclass(frozen=True, slots=True)
class _Pending:
    """A photo on its way through the workers."""

    provenance: Provenance
    digest: str
    size: int
    jurisdiction: str | None = None


def run_ingest(
    engine: Engine,
    src: Source,
    info: SourceInfo,
    workers: int,
    progress: ProgressCallback | None,
) -> IngestSummary:
    """Read, screen (duplicates, exclusions, minors), analyse and store every item of
    ``src``; the engine holds the writer lock."""
    started = time.monotonic()
    items = list(src.items())
    summary = IngestSummary(source=info.name, seen=len(items))
    excluded = [e["code"] for e in engine.catalog.exclusions()]
    engine._templates = engine.catalog.suppression_templates(engine.space)[1:]
    done = 0
    last_save = time.monotonic()
    assert info.id is not None

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(items))

    def jobs() -> Iterator[tuple[_Pending, tuple[bytes, str]]]:
        seen: set[str] = set()
        for item in items:
            name = item.provenance.uri
            suffix = Path(name).suffix.lower()
            if isinstance(item, FileItem) and suffix not in imaging.IMAGE_SUFFIXES:
                bad_file(
                    summary,
                    name,
                    "not_an_image",
                    f"{name}: not a photo ({suffix or 'no suffix'})",
                )
                tick()
                continue
            try:
                data = item.read(engine.settings.max_file_bytes)
            except BadImage as exc:
                bad_file(summary, name, exc.reason, str(exc))
                tick()
                continue
            digest = imaging.sha256(data)
            if digest in seen:
                summary.duplicates += 1
                tick()
                continue
            seen.add(digest)
            if engine.catalog.known_sha256([digest]):
                summary.unchanged += 1
                tick()
                continue
            stated = item.provenance.jurisdiction
            try:
                where = iso3166(stated) if stated else None
            except InvalidArgument as exc:
                bad_file(summary, name, "bad_jurisdiction", f"{name}: {exc}")
                tick()
                continue
            where = where or photo_jurisdiction(data) or info.jurisdiction
            if any(covers(code, where) for code in excluded):
                summary.excluded += 1  # nothing of it is stored
                tick()
                continue
            pending = _Pending(item.provenance, digest, len(data), where)
            if info.minors or item.provenance.minors:
                # a source that may hold minors: the photo is recorded (so it is not
                # fetched again), its faces are never detected or stored
                _store(engine, info, pending, Analysis(format="-"), summary, minors=True)
                tick()
                continue
            yield pending, (data, name)

    def local() -> PhotoAnalyser:
        return PhotoAnalyser(engine.settings, engine.pipeline)

    for tag, analysis in run_analyses(jobs(), workers, engine.settings, local):
        _store(engine, info, tag, analysis, summary)
        tick()
        if time.monotonic() - last_save > engine.settings.index_save_seconds:
            engine._save_index()
            last_save = time.monotonic()
    engine._save_index()
    summary.seconds = time.monotonic() - started
    return summary


def _store(
    engine: Engine,
    info: SourceInfo,
    pending: _Pending,
    analysis: Analysis,
    summary: IngestSummary,
    minors: bool = False,
) -> None:
    if analysis.error is not None:
        bad_file(
            summary, pending.provenance.uri, analysis.error_reason or "corrupt", analysis.error
        )
        return
    faces = analysis.faces
    blocked = suppressed(engine, [f.embedding for f in faces if f.embedding is not None])
    if blocked.any():
        # faces of an erased or opted-out person are refused: nothing of them is kept
        embedded = iter(blocked)
        faces = tuple(f for f in faces if f.embedding is None or not next(embedded))
        summary.suppressed += int(blocked.sum())
    record = PhotoRecord(
        sha256=pending.digest,
        provenance=pending.provenance,
        width=analysis.width,
        height=analysis.height,
        format=analysis.format,
        bytes=pending.size,
        faces=faces,
        jurisdiction=pending.jurisdiction,
        minors=minors,
    )
    assert info.id is not None
    # the catalog commits first: a crash before the index is saved is repaired on open
    ids = engine.catalog.add_photo(info.id, engine.space, record, engine._expiry(info))
    if ids is None:
        summary.duplicates += 1
        return
    summary.photos += 1
    summary.minors += int(minors)
    for face in faces:
        if face.skip_reason is not None:
            summary.skipped_faces[face.skip_reason] = (
                summary.skipped_faces.get(face.skip_reason, 0) + 1
            )
    if ids:
        vectors = np.stack(
            [f.embedding for f in faces if f.skip_reason is None and f.embedding is not None]
        ).astype(np.float32)
        engine.index.add(np.asarray(ids, dtype=np.int64), vectors)
        summary.faces += len(ids)


def suppressed(engine: Engine, vectors: list[Vectors] | Vectors) -> npt.NDArray[np.bool_]:
    """Which vectors match a suppression template at its edge."""
    templates, edges = engine._templates
    stacked = np.asarray(vectors, dtype=np.float32).reshape(-1, engine.space.dim)
    if not len(templates) or not len(stacked):
        return np.zeros(len(stacked), dtype=bool)
    return np.asarray(((stacked @ templates.T) >= edges[None, :]).any(axis=1))


def bad_file(summary: IngestSummary, name: str, reason: str, message: str) -> None:
    summary.bad_files[reason] = summary.bad_files.get(reason, 0) + 1
    summary.errors.append({"photo": name, "reason": reason, "message": message})
    log.info("%s", message)
