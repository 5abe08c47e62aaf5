"""Switching a store's face model: re-embed every stored face into the new space while
searches keep answering in the old one, and keep erased people blocked across the switch.

The switch holds the writer lock (ingest and erasure wait; searches do not) and works photo
by photo: each photo's stored faces are re-embedded at their stored boxes by the new
pipeline (its own landmarks, quality and age checks), screened against the new space's
suppression templates, and stored in one transaction per photo, catalog before index. A
killed switch resumes where it stopped: a photo is done once it has a face in the new space.
When every photo is done, one transaction deletes the old space's faces and makes the new
space the active one, its audit event inside; until then no search sees the new space, and
two spaces are never compared.

Suppression templates are kept in the space they were made in: an erased person has no photo
left to re-embed. So for as long as templates exist only in an older space, ingest and search
also embed each face in that space (the old pipeline at the same box) and refuse it where it
matches (see :class:`Guard`). That costs the old model's time per face, and only in stores that
switched after an erasure.

Example::

    report = switch(db, "faceplugin", actor="dpo", progress=bar)
    report.faces, report.missing
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from countenance import imaging
from countenance.catalog.spaces import PhotoToReembed
from countenance.errors import BadImage, CountenanceError, InvalidArgument
from countenance.ingest import face_record
from countenance.ports import RGB, Vectors
from countenance.types import Box, EmbeddingSpace
from countenance.vision.models import load_pipeline, settings_for, space_of

if TYPE_CHECKING:
    from countenance.engine import Engine
    from countenance.vision.pipeline import FacePipeline

log = logging.getLogger("countenance")

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class SwitchReport:
    """What a switch did: photos and faces re-embedded, faces refused as suppressed, photos
    that could not be read (their faces are left out only with ``allow_missing``)."""

    model: str
    space: str
    complete: bool = False
    photos: int = 0
    faces: int = 0
    suppressed: int = 0
    old_faces_deleted: int = 0
    missing: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "space": self.space,
            "complete": self.complete,
            "photos": self.photos,
            "faces": self.faces,
            "suppressed": self.suppressed,
            "old_faces_deleted": self.old_faces_deleted,
            "missing": self.missing,
        }


def switch(
    engine: Engine,
    name: str,
    *,
    actor: str,
    allow_missing: bool = False,
    progress: Progress | None = None,
    pipeline: FacePipeline | None = None,
) -> SwitchReport:
    """Re-embed the store into pipeline ``name``'s space and make it the active one.

    Photos whose file can no longer be read are reported; the switch then stays unfinished
    (run it again once they are back) unless ``allow_missing`` leaves their faces out."""
    settings = engine.settings.replace(model=name)
    target = space_of(name, settings)
    report = SwitchReport(model=name, space=target.key)
    if target == engine.space:
        report.complete = True
        return report
    catalog = engine.catalog
    old = engine.space
    with engine.core.writing():
        catalog.mark_building(target)
        new = pipeline or load_pipeline(name, settings)
        index = engine.index_for(target)
        templates = catalog.suppression_templates(target)[1:]
        done, total = catalog.reembed_progress(old, target)
        after = 0
        with engine.fetcher() as fetcher:

            def read(uri: str) -> bytes:
                if uri.startswith(("http://", "https://")):
                    got = fetcher.get(uri, engine.settings.max_file_bytes, headers={})
                    return got.body
                return imaging.read_file(Path(uri), engine.settings.max_file_bytes)

            while batch := catalog.photos_to_reembed(old, target, limit=64, after=after):
                for photo in batch:
                    after = photo.photo_id
                    _one(engine, new, photo, read, target, index, templates, report)
                    done += 1
                    if progress is not None:
                        progress(min(done, total), total)
                if hasattr(index, "save"):
                    index.save()
        if report.missing and not allow_missing:
            log.warning(
                "%d photos could not be read; the switch is unfinished", len(report.missing)
            )
            return report
        # one change of the write core: the old space's faces go, the new space becomes the
        # active one and the switch is audited, all together or not at all
        with engine.core.change() as change:
            deleted = catalog.complete_switch(old, target, conn=change.conn)
            report.old_faces_deleted = deleted
            change.record(
                actor=actor,
                action="model",
                details={
                    "op": "switch",
                    "model": name,
                    "from": old.key,
                    "to": target.key,
                    "photos": report.photos,
                    "faces": report.faces,
                    "suppressed": report.suppressed,
                    "missing": len(report.missing),
                    "old_faces_deleted": deleted,
                },
            )
        engine.adopt(settings, target, new, index)
        report.complete = True
    return report


def _one(
    engine: Engine,
    pipeline: FacePipeline,
    photo: PhotoToReembed,
    read: Callable[[str], bytes],
    space: EmbeddingSpace,
    index: object,
    templates: tuple[Vectors, npt.NDArray[np.float32]],
    report: SwitchReport,
) -> None:
    try:
        data = read(photo.uri)
        if imaging.sha256(data) != photo.sha256:
            raise BadImage(f"{photo.uri}: the file changed since it was ingested", "changed")
        rgb = imaging.decode(data, max_pixels=engine.settings.max_pixels, name=photo.uri).rgb
        analysed = pipeline.analyse(rgb, boxes=[f.box for f in photo.faces])
    except (CountenanceError, OSError) as exc:
        report.missing.append({"photo": photo.uri, "message": str(exc)})
        return
    records = [face_record(a) for a in analysed]
    kept = []
    carried: list[int] = []
    for stored, rec in zip(photo.faces, records, strict=True):
        if rec.embedding is not None and matches(templates, rec.embedding[None, :])[0]:
            report.suppressed += 1  # an erased person's face, refused as at ingest
            continue
        kept.append((rec, stored.expires_at))
        carried.append(stored.face_id)
    if not kept:  # nothing of a suppressed face is kept; the photo is tried again on resume
        return
    ids = engine.catalog.add_faces(photo.photo_id, space, kept, carried=carried)
    if ids:
        vectors = np.stack(
            [r.embedding for r, _ in kept if r.skip_reason is None and r.embedding is not None]
        ).astype(np.float32)
        index.add(np.asarray(ids, dtype=np.int64), vectors)  # type: ignore[attr-defined]
    report.photos += 1
    report.faces += len(ids)


def matches(
    templates: tuple[Vectors, npt.NDArray[np.float32]], vectors: Vectors
) -> npt.NDArray[np.bool_]:
    """Which ``vectors`` match a template at its edge."""
    found, edges = templates
    if not len(found) or not len(vectors):
        return np.zeros(len(vectors), dtype=bool)
    return np.asarray(((vectors @ found.T) >= edges[None, :]).any(axis=1))


class Guard:
    """Suppression templates of the spaces a store switched away from, and the old pipelines
    that embed new faces into them, loaded on first use.

    Example: ``guard.blocked(rgb, boxes)`` -> which faces an erased person's template
    in an older space refuses."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._spaces: list[tuple[EmbeddingSpace, tuple[Vectors, npt.NDArray[np.float32]]]] = []
        self._pipelines: dict[EmbeddingSpace, FacePipeline] = {}
        self.refresh()

    def refresh(self) -> None:
        catalog = self._engine.catalog
        self._spaces = []
        for space in catalog.spaces():
            if space == self._engine.space:
                continue
            templates = catalog.suppression_templates(space)[1:]
            if len(templates[0]):
                self._spaces.append((space, templates))

    def __bool__(self) -> bool:
        return bool(self._spaces)

    def blocked(self, rgb: RGB, boxes: list[Box]) -> npt.NDArray[np.bool_]:
        """Which faces at ``boxes`` match a template of an older space."""
        out = np.zeros(len(boxes), dtype=bool)
        if not boxes:
            return out
        for space, templates in self._spaces:
            analysed = self._pipeline(space).analyse(rgb, boxes=boxes)
            for i, face in enumerate(analysed):
                if face.embedding is not None and matches(templates, face.embedding[None, :])[0]:
                    out[i] = True
        return out

    def _pipeline(self, space: EmbeddingSpace) -> FacePipeline:
        if space not in self._pipelines:
            chosen = settings_for(space, self._engine.settings)
            if chosen is None:
                raise InvalidArgument(
                    f"suppression templates of {space.key} need a model that embeds into it,"
                    " and none is registered: erased people could not be kept out"
                )
            # age and quality play no part in matching a template: every face is checked
            relaxed = chosen.replace(age_estimator="none", min_face_px=0, min_sharpness=0.0)
            self._pipelines[space] = load_pipeline(chosen.model, relaxed)
        return self._pipelines[space]
