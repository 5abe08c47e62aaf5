"""detect -> align -> quality -> embed, for one decoded photo.

Example::

    pipeline = FacePipeline.from_settings(settings)
    for face in pipeline.analyse(rgb):
        print(face.detected.box, face.quality.score, face.embedding is not None)
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from countenance.config import Settings
from countenance.errors import InvalidArgument
from countenance.ports import RGB, AgeEstimator, Detector, Embedder, Landmarker, Vectors
from countenance.types import Box, DetectedFace, EmbeddingSpace, Quality
from countenance.vision import quality as quality_mod

if TYPE_CHECKING:
    from countenance.vision.models import ModelStore


@dataclass(frozen=True, slots=True)
class AnalysedFace:
    """A detected face with its quality and, unless skipped, its embedding."""

    detected: DetectedFace
    quality: Quality
    embedding: Vectors | None  # float32[D], L2-normalised; None when skipped


class FacePipeline:
    """Runs a detector (and a fallback detector where the first finds nothing), places the
    landmarks the embedder aligns by (a ``landmarker``, where the detectors give another
    scheme or none), checks quality on the aligned crop, and embeds the faces that pass.
    Faces come in the order of :meth:`Box.principal_key`: whole faces first, each group
    largest first. Pipelines are built by name in :mod:`countenance.vision.registry`."""

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        *,
        fallback: Detector | None = None,
        landmarker: Landmarker | None = None,
        min_face_px: int = 20,
        min_sharpness: float = 2.0,
        age_estimator: AgeEstimator | None = None,
        adult_age: float = 23.0,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.fallback = fallback
        self.landmarker = landmarker
        self.min_face_px = min_face_px
        self.min_sharpness = min_sharpness
        self.age_estimator = age_estimator
        self.adult_age = adult_age  # min_age plus the margin: younger-looking faces are skipped

    @property
    def space(self) -> EmbeddingSpace:
        return self.embedder.space

    @classmethod
    def from_settings(cls, settings: Settings) -> FacePipeline:
        """The pipeline named by ``settings.model``, models loaded now."""
        from countenance.vision.models import load_pipeline

        return load_pipeline(settings.model, settings)

    def _at(self, rgb: RGB, boxes: list[Box]) -> list[DetectedFace]:
        if self.landmarker is None:
            raise InvalidArgument("this pipeline places no landmarks on given boxes")
        marks = self.landmarker.landmarks(rgb, boxes) if boxes else []
        return [DetectedFace(b, 1.0, "stored", m) for b, m in zip(boxes, marks, strict=True)]

    def detect(self, rgb: RGB) -> list[DetectedFace]:
        """Faces in the photo: those wholly inside it first, each group largest first.

        The fallback detector runs only where the first finds no face wholly inside the
        photo (none at all, or only faces cut by its edge); its faces are used when it finds
        a whole one.
        """
        height, width = rgb.shape[:2]
        faces = self.detector.detect(rgb)
        if self.fallback is not None and not any(f.box.is_whole(width, height) for f in faces):
            found = self.fallback.detect(rgb)
            if any(f.box.is_whole(width, height) for f in found) or not faces:
                faces = found
        faces = sorted(faces, key=lambda f: f.box.principal_key(width, height), reverse=True)
        scheme = self.embedder.scheme
        redo = [
            i for i, f in enumerate(faces) if f.landmarks is None or f.landmarks.scheme != scheme
        ]
        if self.landmarker is not None and redo:
            marks = self.landmarker.landmarks(rgb, [faces[i].box for i in redo])
            for i, m in zip(redo, marks, strict=True):
                faces[i] = dataclasses.replace(faces[i], landmarks=m)
        return faces

    def analyse(
        self, rgb: RGB, boxes: list[Box] | None = None, *, ages: bool = True
    ) -> list[AnalysedFace]:
        """Every face: detected (or the given ``boxes``, in their order: a model switch
        re-embeds stored faces), quality-checked, age-checked (unless ``ages`` is false: a
        source declared to hold no minors), and embedded when it passes."""
        faces = self.detect(rgb) if boxes is None else self._at(rgb, boxes)
        chips = self.embedder.align(rgb, faces)
        qualities = [
            quality_mod.assess(
                f.box, c, min_face_px=self.min_face_px, min_sharpness=self.min_sharpness
            )
            for f, c in zip(faces, chips, strict=True)
        ]
        if ages and self.age_estimator is not None and faces:
            estimates = self.age_estimator.estimate(rgb, faces)
            qualities = [
                dataclasses.replace(q, skip_reason="minor")
                if q.skip_reason is None and age < self.adult_age
                else q
                for q, age in zip(qualities, estimates, strict=True)
            ]
        keep = [i for i, q in enumerate(qualities) if q.skip_reason is None]
        vectors = self.embedder.embed(rgb, [faces[i] for i in keep])
        by_index = dict(zip(keep, vectors, strict=True))
        return [
            AnalysedFace(f, q, by_index.get(i))
            for i, (f, q) in enumerate(zip(faces, qualities, strict=True))
        ]


def load_age_estimator(
    settings: Settings, store: ModelStore, *, default: str | None
) -> AgeEstimator | None:
    """The age estimator ``settings.age_estimator`` names: ``auto`` (the pipeline's own,
    ``default``), ``none``, a registered name (``ssrnet``), or an operator's own class by
    import path ``package.module:Class`` (built with no arguments)."""
    from countenance.errors import BackendUnavailable, InvalidArgument
    from countenance.vision.registry import AGE_ESTIMATORS

    name = (settings.age_estimator or "none").strip()
    if name == "auto":
        name = default or "none"
    if name == "none":
        return None
    if name in AGE_ESTIMATORS:
        return AGE_ESTIMATORS[name].load(settings, store)
    module_name, _, class_name = name.partition(":")
    if not module_name or not class_name:
        known = ", ".join(["auto", "none", *sorted(AGE_ESTIMATORS)])
        raise InvalidArgument(
            f"age_estimator {name!r}: use {known} or an import path package.module:Class"
        )
    try:
        estimator = getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"cannot load age estimator {name!r}: {exc}") from exc
    if not isinstance(estimator, AgeEstimator):
        raise InvalidArgument(f"{name!r} has no estimate(rgb, faces) method")
    return estimator
