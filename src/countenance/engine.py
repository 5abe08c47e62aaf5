"""The engine: the one facade over catalog, vector index and face pipeline.

Its public methods validate their arguments; the private ones do the work. It is the only
place where the ports meet.

Example::

    import countenance
    db = countenance.open("countenance-data")
    db.add_source("family", basis="consent")
    db.ingest("photos/", source="family")
    for face in db.search("probe.jpg", actor="alice", purpose="missing person", case="17").faces:
        for match in face.matches:
            print(match.similarity, match.band, match.photo)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from countenance import imaging
from countenance.catalog.governance import iso3166
from countenance.catalog.sql import SqlCatalog
from countenance.config import Settings, file_mask, keep_private
from countenance.core import WriteCore, no_space
from countenance.errors import (
    BackendError,
    InvalidArgument,
    NoFaceFound,
    SpaceMismatch,
    WriterBusy,
)
from countenance.governance import controls
from countenance.governance.controls import ErasureReceipt
from countenance.governance.policy import Policy
from countenance.index import open_index
from countenance.ingest import worker_count
from countenance.ingestion import ProgressCallback, run_ingest
from countenance.people import watch as watches
from countenance.people.directory import People
from countenance.ports import RGB, Ids, Persistent, Source, VectorIndex, Vectors
from countenance.reembed import Guard, SwitchReport
from countenance.scoring import Bands, bands_for
from countenance.sources.http import Fetcher
from countenance.sources.opener import open_path
from countenance.types import (
    MAX_RETENTION_DAYS,
    EmbeddingSpace,
    IngestSummary,
    Match,
    ProbeFace,
    SearchResult,
    SourceInfo,
    Status,
    Verification,
)
from countenance.vision.models import settings_for, space_of
from countenance.vision.pipeline import AnalysedFace, FacePipeline

log = logging.getLogger("countenance")

Photo = str | os.PathLike[str] | bytes | RGB


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What opening the engine did to bring the index in line with the catalog."""

    rebuilt: bool
    added: int
    removed: int


def open(path: str | os.PathLike[str] | None = None, **settings: Any) -> Engine:
    """Open (or create) the store in ``path``; keyword arguments override settings.

    Example: ``db = countenance.open("countenance-data", workers=2)``.
    """
    return Engine(Settings.from_env(data_dir=path, **settings))


class Engine:
    """Ingest, search and verify over one data directory. Use :func:`open` to get one."""

    def __init__(self, settings: Settings, *, pipeline: FacePipeline | None = None) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        keep_private(self.data_dir, file_mask(settings))
        url = settings.catalog_url or f"sqlite:///{self.data_dir / 'catalog.db'}"
        try:
            self.catalog = SqlCatalog.open(url)
        except BackendError as exc:
            full = no_space(self.data_dir)
            if full is None:
                raise
            raise BackendError(f"cannot open the catalog: {full}") from exc
        self.audit = self.catalog.audit_log()
        for path in self.data_dir.glob("catalog.db*"):  # the catalog and its WAL files
            keep_private(path, file_mask(settings))
        self._pipeline = pipeline
        if pipeline is None:
            self.settings = settings = self._store_settings(settings)
        else:  # worker processes (ingest, the server's pool) load the same pipeline by name
            self.settings = settings = settings_for(pipeline.space, settings) or settings
        space = pipeline.space if pipeline else space_of(settings.model, settings)
        self.bands: Bands = bands_for(space)
        if self.catalog.current_space() != space:
            self.catalog.activate(space)  # a new store: its first space is its own
        index, self.repair = self._repaired_index(space)
        self.core = WriteCore(
            self.data_dir,
            self.catalog,
            self.audit,
            space,
            index,
            self.bands,
            repair=lambda: self._repaired_index(self.core.space)[0],
        )
        self.policy = Policy(self.core, self.settings)
        self.guard = Guard(self)
        self.people = People(self.core)
        try:
            self.retention_run()
        except WriterBusy:  # the process writing now purges what expired, on its next open
            log.info("retention left to the process writing to %s", self.data_dir)

    @property
    def space(self) -> EmbeddingSpace:
        """The space the store's faces are embedded in (its model's)."""
        return self.core.space

    @property
    def index(self) -> VectorIndex:
        """The vector index of the store's space, following the catalog."""
        return self.core.index

    # lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Save the index and release the catalog. An index that cannot be saved (a full
        disk) is left to be repaired from the catalog on the next open."""
        try:
            self.core.save_index()
        except BackendError as exc:
            log.warning("%s; it is repaired from the catalog on the next open", exc)
        finally:
            self.catalog.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pipeline(self) -> FacePipeline:
        """The face pipeline, with its models loaded on first use."""
        if self._pipeline is None:
            self._pipeline = FacePipeline.from_settings(self.settings)
        return self._pipeline

    def wrap_pipeline(self, wrap: Callable[[FacePipeline], FacePipeline]) -> FacePipeline | None:
        """Run faces through ``wrap(pipeline)`` from now on (the server's wrapper that makes
        the models safe for threads, or its pool of worker processes); returns the pipeline
        now in use. While no pipeline is loaded yet this does nothing and returns None: load
        it first (:attr:`pipeline`) to wrap it.

        Example: ``db.wrap_pipeline(SerialPipeline)``.
        """
        if self._pipeline is not None:
            self._pipeline = wrap(self._pipeline)
        return self._pipeline

    def _store_settings(self, settings: Settings) -> Settings:
        """A store keeps the space it was built in: ``settings.model`` chooses the pipeline
        of a new store only (``countenance models use`` switches an existing one)."""
        current = self.catalog.current_space()
        if current is None or current == space_of(settings.model, settings):
            return settings
        chosen = settings_for(current, settings)
        if chosen is None:
            raise SpaceMismatch(
                f"{self.data_dir} holds faces of {current.key}, which no registered model"
                " embeds into"
            )
        if chosen.model != settings.model:
            log.info("this store uses model %s (not %s)", chosen.model, settings.model)
        return chosen

    def use_model(
        self,
        name: str,
        *,
        actor: str | None = None,
        allow_missing: bool = False,
        progress: ProgressCallback | None = None,
    ) -> SwitchReport:
        """Make pipeline ``name`` this store's model: re-embed every stored face into its
        space while searches keep answering in the old one, then switch (audited). Resumable;
        see :mod:`countenance.reembed`.

        Example: ``db.use_model("faceplugin", actor="admin")``.
        """
        from countenance.reembed import switch
        from countenance.vision.registry import pipeline_spec

        pipeline_spec(name)
        return switch(
            self, name, actor=actor or os_user(), allow_missing=allow_missing, progress=progress
        )

    def adopt(
        self,
        settings: Settings,
        space: EmbeddingSpace,
        pipeline: FacePipeline,
        index: VectorIndex,
    ) -> None:
        """Take the space a switch completed: its settings, pipeline and index; the old
        space's index files go (its faces are gone from the catalog). Called by
        :func:`countenance.reembed.switch` once the switch has committed.

        Example: ``db.adopt(settings, new_space, new_pipeline, db.index_for(new_space))``.
        """
        old = self.space
        self.settings, self.bands = settings, bands_for(space)
        self.core.adopt(space, index, self.bands)
        self.policy = Policy(self.core, settings)
        self._pipeline = pipeline
        self.core.save_index()
        for path in self._index_dir().glob(f"{old.key}.*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.guard.refresh()

    # sources -------------------------------------------------------------------------------

    def add_source(
        self,
        name: str,
        *,
        basis: str,
        kind: str = "folder",
        jurisdiction: str | None = None,
        consent_ref: str | None = None,
        licence: str | None = None,
        retention_days: int | None = None,
        minors: bool = False,
        adults_only: bool = False,
        actor: str | None = None,
    ) -> SourceInfo:
        """Declare a source of photos and the lawful basis for processing them (audited as
        ``actor``, by default the operating-system user).

        ``minors``: the source may hold minors, so its faces are never stored. ``adults_only``:
        the operator declares it holds none, so its faces are not age-estimated (otherwise
        every face is, and those estimated under 18 plus a margin are skipped as ``minor``).
        """
        if jurisdiction is not None:
            jurisdiction = iso3166(jurisdiction)
        declared = SourceInfo(
            name=name,
            lawful_basis=basis,
            kind=kind,
            jurisdiction=jurisdiction,
            consent_ref=consent_ref,
            licence=licence,
            retention_days=retention_days,
            minors=minors,
            adults_only=adults_only,
        )
        with self.core.change() as change:
            info = self.catalog.add_source(declared, conn=change.conn)
            change.record(
                actor=actor or os_user(),
                action="source",
                details={
                    "op": "add",
                    "source": name,
                    "lawful_basis": basis,
                    "jurisdiction": jurisdiction,
                    "consent_ref": consent_ref,
                    "retention_days": retention_days,
                    "minors": minors,
                    "adults_only": adults_only,
                },
            )
        return info

    def sources(self) -> list[SourceInfo]:
        """Every declared source with its photo and face counts."""
        return self.catalog.list_sources()

    def retire_source(self, name: str, *, actor: str | None = None) -> dict[str, int]:
        """Retire a source: delete its photos and faces from the catalog and the index, and
        refuse further ingest into it. The source's row stays, so the audit log can name it."""
        return controls.retire_source(self.core, name, actor=actor or os_user())

    # governance ----------------------------------------------------------------------------

    def exclude(self, code: str, *, reason: str | None = None, actor: str) -> dict[str, Any]:
        """Exclude a jurisdiction (``CA``, ``US-IL``): purge every face whose photo is there,
        refuse its photos at ingest and its principals' searches. Audited."""
        return controls.exclude(self.core, code, reason=reason, actor=actor)

    def allow(self, code: str, *, actor: str) -> bool:
        """Lift an exclusion (what was purged stays purged). Audited."""
        return controls.allow(self.core, code, actor=actor)

    def exclusions(self) -> list[dict[str, Any]]:
        """The excluded jurisdictions, with who excluded them, when and why."""
        return controls.exclusions(self.core)

    def erase(
        self,
        *,
        photo: Photo | None = None,
        face_id: int | None = None,
        photo_id: int | None = None,
        source: str | None = None,
        person: int | None = None,
        reason: str,
        actor: str,
    ) -> ErasureReceipt:
        """Erase a person (by a photo of them, a face id, or a whole person of
        :attr:`people`) or a photo's or source's faces from the catalog and the index at
        once; returns a receipt. See :func:`countenance.governance.controls.erase`.

        Example: ``db.erase(photo="selfie.jpg", reason="Art. 17 request 114", actor="dpo")``.
        """
        chosen = [x is not None for x in (photo, face_id, photo_id, source, person)]
        if sum(chosen) != 1:
            raise InvalidArgument(
                "erase needs exactly one of photo, face_id, photo_id, source, person"
            )
        seed = None
        if photo is not None:
            face, _ = self._principal_face(photo)
            seed = face.embedding
        return controls.erase(
            self.core,
            seed=seed,
            face_id=face_id,
            photo_id=photo_id,
            source=source,
            person=person,
            reason=reason,
            actor=actor,
        )

    def export(
        self,
        photo: Photo,
        out_dir: str | os.PathLike[str],
        *,
        actor: str,
        purpose: str,
        case: str | None = None,
    ) -> dict[str, Any]:
        """Subject access (GDPR Art. 15): write what is held about the person in ``photo``
        to ``out_dir`` as JSON and a readable HTML page. A search by photo: it needs a
        purpose and a case, counts against the actor's rate and is audited as a search;
        the photo is not kept."""
        self.policy.authorize(actor=actor, purpose=purpose, case=case)
        face, digest = self._principal_face(photo)
        assert face.embedding is not None
        return controls.subject_access(
            self.core,
            face.embedding,
            digest,
            Path(out_dir),
            actor=actor,
            purpose=purpose,
            case=case,
        )

    # watchlists ----------------------------------------------------------------------------

    def watch(
        self,
        *,
        photo: Photo | None = None,
        person: int | None = None,
        actor: str,
        purpose: str,
        case: str | None = None,
        expires: dt.date | dt.datetime,
        location: str | None = None,
    ) -> dict[str, Any]:
        """Be alerted when the person in ``photo`` (its principal face), or a person of
        :attr:`people` (the mean of its faces), is ingested again, until ``expires``. Like a
        search it needs a purpose and a case, counts against the actor's rate, and is
        audited; see :mod:`countenance.people.watch`.

        Example: ``db.watch(photo="p.jpg", actor="ana", purpose="...", case="9",
        expires=dt.date(2027, 1, 31))``.
        """
        if (photo is None) == (person is None):
            raise InvalidArgument("watch needs exactly one of photo, person")
        expires_at = _end_of(expires)
        now = dt.datetime.now(dt.UTC)
        if expires_at <= now:
            raise InvalidArgument("a watch must expire in the future")
        if expires_at > now + dt.timedelta(days=self.settings.watch_max_days):
            raise InvalidArgument(
                f"a watch may run for at most {self.settings.watch_max_days} days"
            )
        digest = None
        if person is not None:
            _, vectors = self.catalog.person_vectors(self.space, int(person))
            self.people.show(int(person))  # NotFound
            if not len(vectors):
                raise InvalidArgument(f"person {person} has no face in the store's space")
        self.policy.authorize(actor=actor, purpose=purpose, case=case, location=location)
        if photo is not None:
            face, digest = self._principal_face(photo)
            assert face.embedding is not None
            template = np.asarray(face.embedding, dtype=np.float32).reshape(1, -1)
        else:
            mean = vectors.mean(axis=0)
            template = (mean / max(float(np.linalg.norm(mean)), 1e-12)).reshape(1, -1)
        watch = watches.add(
            self.core,
            template,
            actor=actor,
            purpose=purpose,
            case=case,
            expires_at=expires_at,
            person=person,
            probe_sha256=digest,
        )
        return self.catalog.get_watch(watch)

    def watches(self, *, actor: str | None = None) -> list[dict[str, Any]]:
        """Live watches (all, or one actor's), with their alert counts; never templates."""
        return self.catalog.list_watches(actor=actor)

    def unwatch(self, watch: int, *, actor: str) -> None:
        """End a watch now; its template and alerts are deleted. Audited."""
        watches.remove(self.core, int(watch), actor=actor)

    def alerts(
        self,
        *,
        watch: int | None = None,
        actor: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Alerts raised by watches, oldest first (after alert id ``after``)."""
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return self.catalog.list_alerts(watch_id=watch, actor=actor, after=after, limit=limit)

    # retention -----------------------------------------------------------------------------

    def retention_run(self, *, actor: str | None = None) -> dict[str, int]:
        """Delete every photo, and its faces, past its retention, and every watch past its
        expiry with its template; runs on every open."""
        who = actor or os_user()
        removed = controls.retention_run(self.core, actor=who)
        removed["watches"] = watches.purge_expired(self.core, actor=who)
        return removed

    def expiry(self, info: SourceInfo) -> dt.datetime | None:
        """When a photo of ``info`` ingested now expires (its retention, capped by the
        store's), or None."""
        days = [d for d in (info.retention_days, self.settings.max_retention_days) if d]
        if not days:
            return None
        # a source declared before retention was bounded may hold any number: cap it
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=min(*days, MAX_RETENTION_DAYS))

    # ingest --------------------------------------------------------------------------------

    def ingest(
        self,
        photos: str | os.PathLike[str] | Source,
        *,
        source: str,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
        actor: str | None = None,
        cluster: str | None = None,
    ) -> IngestSummary:
        """Index every face in ``photos`` (a folder, a file or a Source) into ``source``.

        Resumable: photos whose bytes are already stored are skipped (by SHA-256), so an
        interrupted run is finished by running it again. Bad files are reported in the
        summary and never stop the batch. A ``.csv``/``.jsonl`` path is a manifest, a
        ``.zip``/``.tar``/``.tar.gz`` path an archive (see countenance.sources).

        ``cluster`` (default: the ``cluster`` setting) names a Ray cluster to analyse the
        photos on, in ``workers`` actors; everything else happens here, as without one.
        """
        info = self.catalog.get_source(source)  # a declared source has a lawful basis
        self.policy.admit_source(info)
        requested = self.settings.workers if workers is None else workers
        where = cluster or self.settings.cluster
        if requested < 0:
            raise InvalidArgument(f"workers must be 0 (one per core) or more, got {requested}")
        # on a cluster, 0 asks the cluster how many it offers
        n_workers = requested if where else worker_count(requested)
        with contextlib.ExitStack() as stack:
            if isinstance(photos, Source):
                src: Source = photos
            else:  # a folder, a photo, a manifest (.csv/.jsonl) or an archive
                src = open_path(photos, self.settings, fetcher=stack.enter_context(self.fetcher()))
            close = getattr(src, "close", None)
            if callable(close) and not isinstance(photos, Source):
                stack.callback(close)
            who = actor or os_user()
            with self.core.writing():
                summary = run_ingest(self, src, info, n_workers, progress, who, cluster=where)
                totals = summary.to_json()
                del totals["errors"]
                self.audit.append(actor=who, action="ingest", details={"op": "run", **totals})
        return summary

    def fetcher(self, **overrides: Any) -> Fetcher:
        """An HTTP fetcher configured by the settings, remembering what it fetched in the
        catalog so a re-run asks only for what changed; close it when done.

        Example: ``with db.fetcher(allow_private=True) as f: db.ingest(SiteSource(...), ...)``.
        """
        return Fetcher.from_settings(self.settings, cache=self.catalog.fetch_cache(), **overrides)

    # search --------------------------------------------------------------------------------

    def search(
        self,
        photo: Photo,
        *,
        actor: str,
        purpose: str,
        case: str | None = None,
        location: str | None = None,
        top: int | None = None,
        min_similarity: float | None = None,
    ) -> SearchResult:
        """For every face in ``photo``, the stored faces most similar to it, best first.

        Every search names who runs it (``actor``), why (``purpose``) and, unless the operator
        turned ``require_case`` off, the case it serves; it is refused without them, past the
        actor's rate limit, and recorded in the audit log before its results are returned.
        Matches below the weak band's edge are never returned; ``min_similarity`` can only
        raise that floor. Raises NoFaceFound when the photo holds no usable face.

        Example: ``db.search("probe.jpg", actor="alice", purpose="missing person", case="17")``.
        """
        k = self.settings.top if top is None else top
        if not 1 <= k <= 1000:
            raise InvalidArgument("top must be between 1 and 1000")
        if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
            raise InvalidArgument("min_similarity is a cosine similarity in [-1, 1]")
        self.policy.authorize(actor=actor, purpose=purpose, case=case, location=location)
        gallery = self.index.count()
        floor = max(
            self._gallery_floor(gallery), min_similarity if min_similarity is not None else -1.0
        )
        rgb, digest = self._decode(photo)
        faces = [f for f in self.pipeline.analyse(rgb) if f.embedding is not None]
        if not faces:
            raise NoFaceFound("no usable face found in the probe photo")
        vectors = np.stack([f.embedding for f in faces if f.embedding is not None])
        matches = self.search_vectors(vectors, k, floor)
        if len(self.core.templates[0]):
            matches = self._hide_suppressed(vectors, matches)
        if self.guard:  # an erased person's template from before a model switch
            blocked = self.guard.blocked(rgb, [f.detected.box for f in faces])
            matches = [[] if blocked[q] else per for q, per in enumerate(matches)]
        self.audit.append(
            actor=actor,
            action="search",
            purpose=purpose,
            case_ref=case,
            probe_sha256=digest,
            details={"faces": len(faces), "top": k, "min_similarity": round(floor, 4)},
            result_face_ids=sorted({m.face_id for per_face in matches for m in per_face}),
        )
        grouped = self.people.group(matches)
        return SearchResult(
            faces=tuple(
                ProbeFace(f.detected.box, f.quality.score, tagged, leads)
                for f, (tagged, leads) in zip(faces, grouped, strict=True)
            ),
            probe_sha256=digest,
            gallery_faces=gallery,
            min_similarity=floor,
        )

    def _gallery_floor(self, gallery: int) -> float:
        """The least similarity a lead needs in a gallery of ``gallery`` faces: the weak
        band's edge, raised until the strangers the search is expected to return
        (gallery x false-match rate) are at most ``max_false_leads``."""
        budget = self.settings.max_false_leads
        if gallery <= 0 or budget <= 0:
            return self.bands.weak
        return max(self.bands.weak, self.bands.similarity_at(budget / gallery))

    def _hide_suppressed(self, probes: Vectors, matches: list[list[Match]]) -> list[list[Match]]:
        """No lead for a probe of an erased person; no lead that is an erased person's face."""
        probe_blocked = self.policy.suppressed(probes)
        ids = np.asarray(sorted({m.face_id for per in matches for m in per}), dtype=np.int64)
        blocked_ids: set[int] = set()
        for batch_ids, vectors in self.catalog.embeddings(self.space, ids=ids) if ids.size else ():
            blocked_ids |= {int(i) for i in batch_ids[self.policy.suppressed(vectors)]}
        return [
            [] if probe_blocked[q] else [m for m in per if m.face_id not in blocked_ids]
            for q, per in enumerate(matches)
        ]

    def search_vectors(self, vectors: Vectors, k: int, floor: float) -> list[list[Match]]:
        """The ``k`` best stored faces at or above similarity ``floor`` for each of
        ``vectors`` (unit vectors in the store's space), best first.

        It does the work of :meth:`search` without its checks: nothing is authorized or
        audited and suppressed faces are not hidden. It is for measuring accuracy on the
        operator's own labelled store (:mod:`countenance.evaluation`), never for answering
        a person's search.

        Example: ``db.search_vectors(probe[None, :], 50, -1.0)[0]``.
        """
        # ask for a few more than k: an id the index holds but the catalog no longer has
        # (a crash between the two) is dropped here rather than shown
        gallery = self.index.count()
        sims, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k + 8)
        rows = self.catalog.face_rows(int(i) for i in np.unique(ids) if i >= 0)
        copies = self.catalog.copies_of((row.photo_id for row in rows.values()), limit=50)
        results = []
        for q in range(len(vectors)):
            matches = []
            for sim, face_id in zip(sims[q], ids[q], strict=True):
                row = rows.get(int(face_id))
                if row is None or sim < floor:
                    continue
                matches.append(
                    Match(
                        face_id=row.face_id,
                        similarity=float(sim),
                        band=self.bands.band(float(sim)),
                        photo=row.page_url or row.photo_uri,
                        source=row.source,
                        box=row.box,
                        photo_id=row.photo_id,
                        page_url=row.page_url,
                        uri=row.photo_uri,
                        also_at=tuple(copies.get(row.photo_id, ())),
                        expected_false_leads=self.bands.expected_false_leads(float(sim), gallery),
                    )
                )
                if len(matches) == k:
                    break
            results.append(matches)
        return results

    def verify(self, a: Photo, b: Photo) -> Verification:
        """Whether the principal faces of two photos (the largest whole face of each) are one
        person, by the FMR 1 in 1,000 rule."""
        fa, _ = self._principal_face(a)
        fb, _ = self._principal_face(b)
        assert fa.embedding is not None and fb.embedding is not None
        sim = float(np.dot(fa.embedding, fb.embedding))
        return Verification(
            same=sim >= self.bands.same_person,
            similarity=sim,
            band=self.bands.band(sim),
            box_a=fa.detected.box,
            box_b=fb.detected.box,
        )

    def _principal_face(self, photo: Photo) -> tuple[AnalysedFace, str]:
        """The photo's principal face that has an embedding, and the photo's SHA-256."""
        rgb, digest = self._decode(photo)
        for face in self.pipeline.analyse(rgb):  # principal first
            if face.embedding is not None:
                return face, digest
        raise NoFaceFound("no usable face found in the photo")

    def _decode(self, photo: Photo) -> tuple[RGB, str]:
        if isinstance(photo, np.ndarray):
            if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
                raise InvalidArgument("an image array must be H x W x 3 uint8 RGB")
            return photo, imaging.sha256(photo.tobytes())
        if isinstance(photo, bytes):
            data = photo
        elif isinstance(photo, str | os.PathLike):
            data = imaging.read_file(photo, self.settings.max_file_bytes)
        else:
            raise InvalidArgument(f"a photo is a path, bytes or an RGB array, not {type(photo)}")
        name = "probe" if isinstance(photo, bytes) else str(photo)
        decoded = imaging.decode(data, max_pixels=self.settings.max_pixels, name=name)
        return decoded.rgb, imaging.sha256(data)

    # index ---------------------------------------------------------------------------------

    def status(self) -> Status:
        """Counts across the store, and the index kind and space in use."""
        counts = self.catalog.counts()
        return Status(
            sources=counts["sources"],
            photos=counts["photos"],
            faces=counts["faces"],
            indexed=self.index.count(),
            skipped=counts["skipped"],
            index=self.index.kind,
            space=self.space,
            duplicates=self.catalog.duplicate_count(),
        )

    def reindex(self) -> int:
        """Rebuild the vector index from the catalog's stored embeddings; returns its size."""
        with self.core.writing():
            batches = list(self.catalog.embeddings(self.space))
            ids = np.concatenate([i for i, _ in batches]) if batches else np.zeros(0, np.int64)
            vectors = (
                np.concatenate([v for _, v in batches])
                if batches
                else np.zeros((0, self.space.dim), np.float32)
            )
            rebuild = getattr(self.index, "rebuild", None)
            if callable(rebuild):  # FAISS: a fresh index, its layout chosen by size
                rebuild(ids, vectors)
            else:
                self.index.remove(self.index.ids())
                for batch_ids, vectors in batches:
                    self.index.add(batch_ids, vectors)
            self.core.save_index()
            return self.index.count()

    def _index_dir(self) -> Path:
        return self.data_dir / "index"

    def _new_index(self, space: EmbeddingSpace | None = None) -> VectorIndex:
        return open_index(
            self.settings.index_backend,
            space or self.space,
            self._index_dir(),
            approx_threshold=self.settings.approx_threshold,
            ivfpq_threshold=self.settings.ivfpq_threshold,
            memory_gb=self.settings.index_memory_gb,
            target_recall=self.settings.target_recall,
            uri=self.settings.index_uri,
            index_type=self.settings.index_type,
            token=self.settings.index_token,
        )

    def index_for(self, space: EmbeddingSpace) -> VectorIndex:
        """The index of ``space`` (one a switch is building), agreeing with the catalog.

        Example: ``index = db.index_for(new_space)``.
        """
        return self._repaired_index(space)[0]

    def _repaired_index(self, space: EmbeddingSpace) -> tuple[VectorIndex, RepairReport]:
        """Open the index of ``space`` and make it agree with the catalog (crash recovery)."""
        self._index_dir().mkdir(parents=True, exist_ok=True)
        rebuilt = False
        try:
            index = self._new_index(space)
        except BackendError as exc:
            log.warning("vector index unreadable (%s); rebuilding it from the catalog", exc)
            for old in self._index_dir().glob(f"{space.key}.*"):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            index = self._new_index(space)
            rebuilt = True
        live = self.catalog.live_face_ids(space)
        held = index.ids()
        extra: Ids = np.setdiff1d(held, live, assume_unique=True)
        missing: Ids = np.setdiff1d(live, held, assume_unique=True)
        if extra.size:
            index.remove(extra)
        if missing.size:
            for ids, vectors in self.catalog.embeddings(space, ids=missing):
                index.add(ids, vectors)
        if extra.size or missing.size:
            log.info("index repaired: %d added, %d removed", missing.size, extra.size)
            if isinstance(index, Persistent):
                try:
                    index.save()
                except BackendError as exc:  # a full disk: repaired in memory, and again next open
                    log.warning("%s; the repaired index is used unsaved", exc)
        return index, RepairReport(rebuilt, int(missing.size), int(extra.size))


def _end_of(when: dt.date | dt.datetime) -> dt.datetime:
    """A datetime as UTC (naive ones are UTC); a date as the end of that day, UTC."""
    if isinstance(when, dt.datetime):
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if isinstance(when, dt.date):
        return dt.datetime.combine(when, dt.time.max, tzinfo=dt.UTC)
    raise InvalidArgument(f"expires is a date or a datetime, not {type(when).__name__}")


def os_user() -> str:
    """Who runs this process, for actions the caller did not attribute."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


__all__ = ["Engine", "RepairReport", "open"]
