"""How the engine ingests a source: read each item, screen it (already stored, excluded
jurisdiction, minors), analyse it in worker processes, refuse suppressed faces, and store
photo and faces in the catalog before the index.

The engine calls :func:`run_ingest` with itself, under its writer lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from countenance import imaging
from countenance.catalog.governance import iso3166
from countenance.catalog.sql import PhotoRecord
from countenance.cluster import RayPool
from countenance.errors import BadImage, InvalidArgument, NotModified
from countenance.governance.geo import photo_jurisdiction
from countenance.governance.policy import EXCLUDED, MINORS
from countenance.ingest import Analysis, Job, PhotoAnalyser, run_analyses
from countenance.neardup import Signature, band_probes, bands, same_photo, signature
from countenance.people import clusters
from countenance.people.watch import Watches, deliver
from countenance.ports import Item, Source
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
    signature: Signature | None = None
    data: bytes | None = None  # kept only where an older space's templates must screen it


class _BatchHashes:
    """Perceptual hashes of the photos sent to analysis in this run, by band (as in the
    catalog), so a near-duplicate of a photo still in flight is found without a scan."""

    def __init__(self) -> None:
        self._bands: list[dict[int, list[tuple[Signature, str]]]] = [{} for _ in range(4)]

    def add(self, sig: Signature, digest: str) -> None:
        for i, value in enumerate(bands(sig.phash)):
            self._bands[i].setdefault(value, []).append((sig, digest))

    def find(self, sig: Signature) -> str | None:
        for i, value in enumerate(bands(sig.phash)):
            for probe in band_probes(value):
                for other, digest in self._bands[i].get(probe, ()):
                    if same_photo(sig, other):
                        return digest
        return None


class _Commits:
    """Screened and analysed photos, stored in batches: each batch is one transaction with
    its audit event (``ingest``, op ``commit``: the photos' SHA-256 and counts), so a crash
    leaves every photo of a batch stored and audited, or none of them (the next run stores
    those again). The index follows each commit."""

    def __init__(self, engine: Engine, info: SourceInfo, summary: IngestSummary, actor: str):
        self.engine, self.info, self.summary, self.actor = engine, info, summary, actor
        self.watches = Watches.live(engine.core)
        self.rows: list[PhotoRecord] = []
        self.started = time.monotonic()

    def add(self, record: PhotoRecord) -> None:
        self.rows.append(record)
        settings = self.engine.settings
        if len(self.rows) >= settings.ingest_batch or (
            time.monotonic() - self.started >= settings.ingest_batch_seconds
        ):
            self.flush()

    def flush(self) -> None:
        rows, self.rows, self.started = self.rows, [], time.monotonic()
        if not rows:
            return
        engine, info = self.engine, self.info
        assert info.id is not None
        counts = IngestSummary(source=info.name)
        stored: list[str] = []
        new_ids: list[int] = []
        new_vectors: list[np.ndarray] = []
        new_digests: list[str] = []
        alerts: list[int] = []
        with engine.core.change() as change:
            for record in rows:
                ids = engine.catalog.add_photo(
                    info.id, engine.space, record, engine.expiry(info), conn=change.conn
                )
                if ids is None:
                    counts.duplicates += 1
                    continue
                stored.append(record.sha256)
                counts.photos += 1
                counts.minors += int(record.minors)
                counts.near_duplicates += int(record.duplicate_of is not None)
                for face in record.faces:
                    if face.skip_reason is not None:
                        reason = face.skip_reason
                        counts.skipped_faces[reason] = counts.skipped_faces.get(reason, 0) + 1
                if ids:
                    kept = [
                        f.embedding
                        for f in record.faces
                        if f.skip_reason is None and f.embedding is not None
                    ]
                    vectors = np.stack(kept).astype(np.float32)
                    change.index(ids, vectors)
                    counts.faces += len(ids)
                    new_ids += ids
                    new_vectors.append(vectors)
                    new_digests += [record.sha256] * len(ids)
            if new_ids:
                # persons and watches, inside the batch's transaction: a face is never
                # stored without its place among persons, nor alerted twice
                stacked = np.concatenate(new_vectors)
                placed = clusters.place(engine.core, change, new_ids, stacked)
                counts.persons = placed["persons"]
                alerts = self.watches.match(change, new_ids, stacked, new_digests)
                counts.alerts = len(alerts)
            if stored:
                change.record(
                    actor=self.actor,
                    action="ingest",
                    details={
                        "op": "commit",
                        "source": info.name,
                        "photos": counts.photos,
                        "faces": counts.faces,
                        "persons": counts.persons,
                        "alerts": counts.alerts,
                        "sha256": stored,
                    },
                )
        s = self.summary  # counted once the batch has committed
        s.photos += counts.photos
        s.faces += counts.faces
        s.duplicates += counts.duplicates
        s.minors += counts.minors
        s.near_duplicates += counts.near_duplicates
        s.persons += counts.persons
        s.alerts += counts.alerts
        if alerts:  # after the commit: a webhook that fails undoes nothing
            settings = engine.settings
            deliver(engine.core, alerts, url=settings.alert_webhook, secret=settings.alert_secret)
        for reason, n in counts.skipped_faces.items():
            s.skipped_faces[reason] = s.skipped_faces.get(reason, 0) + n


def run_ingest(
    engine: Engine,
    src: Source,
    info: SourceInfo,
    workers: int,
    progress: ProgressCallback | None,
    actor: str,
    cluster: str | None = None,
) -> IngestSummary:
    """Read, screen (duplicates, exclusions, minors), analyse and store every item of
    ``src``; the engine holds the writer lock. With ``cluster``, the analysis runs on that
    Ray cluster (in ``workers`` actors) and all the rest here, as it does without."""
    with contextlib.ExitStack() as stack:
        analyse = _analysis(engine, info, workers, cluster, stack)
        return _ingest(engine, src, info, progress, actor, analyse)


Analyse = Callable[[Iterator[tuple[_Pending, Job]]], Iterator[tuple[_Pending, Analysis]]]


def _analysis(
    engine: Engine,
    info: SourceInfo,
    workers: int,
    cluster: str | None,
    stack: contextlib.ExitStack,
) -> Analyse:
    """Where the photos of this run are analysed: on the Ray cluster, in local worker
    processes, or here."""
    # a source declared to hold no minors: its workers load no age estimator
    settings = engine.settings.replace(age_estimator="none") if info.adults_only else None
    if cluster:
        pool = RayPool(cluster, workers, settings or engine.settings, engine.space)
        return stack.enter_context(pool).analyses

    def local() -> PhotoAnalyser:
        return PhotoAnalyser(engine.settings, engine.pipeline, ages=not info.adults_only)

    def analyse(jobs: Iterator[tuple[_Pending, Job]]) -> Iterator[tuple[_Pending, Analysis]]:
        return run_analyses(jobs, workers, settings or engine.settings, local)

    return analyse


def _ingest(
    engine: Engine,
    src: Source,
    info: SourceInfo,
    progress: ProgressCallback | None,
    actor: str,
    analyse: Analyse,
) -> IngestSummary:
    started = time.monotonic()
    items = list(src.items())
    summary = IngestSummary(source=info.name, seen=len(items))
    commits = _Commits(engine, info, summary, actor)
    admission = engine.policy.admission(info)
    engine.core.reload_templates()
    engine.guard.refresh()
    done = 0
    last_save = time.monotonic()
    assert info.id is not None

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(items))

    batch = _BatchHashes()
    # near-duplicates of a photo of this run still in flight: linked once it is stored
    deferred: list[tuple[_Pending, str, Item]] = []

    def jobs(todo: list[Item]) -> Iterator[tuple[_Pending, Job]]:
        seen: set[str] = set()
        for item in todo:
            name = item.provenance.uri
            suffix = Path(name).suffix.lower()
            # files and archive entries have names to judge; a URL's path need not end in one
            if hasattr(item, "suffix") and suffix not in imaging.IMAGE_SUFFIXES:
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
            except NotModified:  # a conditional fetch: stored, and unchanged since
                summary.unchanged += 1
                tick()
                continue
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
            refusal = admission.admit(item.provenance, where)
            if refusal == EXCLUDED:
                summary.excluded += 1  # nothing of it is stored
                tick()
                continue
            h = signature(data, max_pixels=engine.settings.max_pixels)
            pending = _Pending(item.provenance, digest, len(data), where, h)
            if refusal == MINORS:
                # a source that may hold minors: the photo is recorded (so it is not
                # fetched again), its faces are never detected or stored
                _store(engine, commits, pending, Analysis(format="-"), minors=True)
                tick()
                continue
            if h is not None:
                original = engine.catalog.near_duplicate_of(h)
                if original is not None:
                    _store(engine, commits, pending, Analysis(format="-"), duplicate=original)
                    tick()
                    continue
                in_flight = batch.find(h)
                if in_flight is not None:
                    deferred.append((pending, in_flight, item))
                    continue
                batch.add(h, digest)
            if engine.guard:
                pending = dataclasses.replace(pending, data=data)
            yield pending, (data, name)

    todo = items
    while todo:
        for tag, analysis in analyse(jobs(todo)):
            _store(engine, commits, tag, analysis)
            tick()
            if time.monotonic() - last_save > engine.settings.index_save_seconds:
                engine.core.save_index()
                last_save = time.monotonic()
        commits.flush()  # the originals of deferred near-duplicates are stored now
        todo = []
        # a fresh batch: a failed original must not send its copies round again
        batch = _BatchHashes()
        for pending, original_digest, item in deferred:
            original = engine.catalog.photo_id_of(original_digest)
            if original is None:  # its original was not stored after all: analyse it
                todo.append(item)
                continue
            _store(engine, commits, pending, Analysis(format="-"), duplicate=original)
            tick()
        deferred.clear()
    commits.flush()
    engine.core.save_index()
    summary.seconds = time.monotonic() - started
    return summary


def _store(
    engine: Engine,
    commits: _Commits,
    pending: _Pending,
    analysis: Analysis,
    minors: bool = False,
    duplicate: int | None = None,
) -> None:
    summary = commits.summary
    if analysis.error is not None:
        bad_file(
            summary, pending.provenance.uri, analysis.error_reason or "corrupt", analysis.error
        )
        return
    faces = analysis.faces
    blocked = engine.policy.suppressed([f.embedding for f in faces if f.embedding is not None])
    if engine.guard and pending.data is not None and len(blocked):
        # templates of a space the store switched away from: the old model judges the face
        rgb = imaging.decode(pending.data, max_pixels=engine.settings.max_pixels).rgb
        boxes = [f.box for f in faces if f.embedding is not None]
        blocked |= engine.guard.blocked(rgb, boxes)
    if blocked.any():
        # faces of an erased or opted-out person are refused: nothing of them is kept
        embedded = iter(blocked)
        faces = tuple(f for f in faces if f.embedding is None or not next(embedded))
        summary.suppressed += int(blocked.sum())
    commits.add(
        PhotoRecord(
            sha256=pending.digest,
            provenance=pending.provenance,
            width=analysis.width,
            height=analysis.height,
            format=analysis.format,
            bytes=pending.size,
            faces=faces,
            jurisdiction=pending.jurisdiction,
            minors=minors,
            signature=pending.signature,
            duplicate_of=duplicate,
        )
    )


def bad_file(summary: IngestSummary, name: str, reason: str, message: str) -> None:
    summary.bad_files[reason] = summary.bad_files.get(reason, 0) + 1
    summary.errors.append({"photo": name, "reason": reason, "message": message})
    log.info("%s", message)
