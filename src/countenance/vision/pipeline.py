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

from countenance.config import Settings
from countenance.ports import RGB, AgeEstimator, Detector, Embedder, Vectors
from countenance.types import DetectedFace, EmbeddingSpace, Quality
from countenance.vision import quality as quality_mod


@dataclass(frozen=True, slots=True)
class AnalysedFace:
    """A detected face with its quality and, unless skipped, its embedding."""

    detected: DetectedFace
    quality: Quality
    embedding: Vectors | None  # float32[D], L2-normalised; None when skipped


class FacePipeline:
    """Runs a detector (and a fallback detector where the first finds nothing), checks
    quality on the aligned crop, and embeds the faces that pass. Faces come in the order of
    :meth:`Box.principal_key`: whole faces first, each group largest first."""

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        *,
        fallback: Detector | None = None,
        min_face_px: int = 20,
        min_sharpness: float = 2.0,
        age_estimator: AgeEstimator | None = None,
        adult_age: float = 23.0,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.fallback = fallback
        self.min_face_px = min_face_px
        self.min_sharpness = min_sharpness
        self.age_estimator = age_estimator
        self.adult_age = adult_age  # min_age plus the margin: younger-looking faces are skipped

    @property
    def space(self) -> EmbeddingSpace:
        return self.embedder.space

    @classmethod
    def from_settings(cls, settings: Settings) -> FacePipeline:
        """The default dlib pipeline, models loaded now."""
        from countenance.vision.dlib_models import (
            CnnDetector,
            DlibEmbedder,
            DlibModels,
            HogDetector,
        )

        models = DlibModels.load()
        cnn = CnnDetector(models, max_side=settings.cnn_max_side)
        if settings.detector == "cnn":
            primary: Detector = cnn
            fallback: Detector | None = None
        elif settings.detector == "hog":
            primary = HogDetector(models, max_side=settings.detect_max_side)
            fallback = cnn if settings.cnn_fallback else None
        else:
            from countenance.errors import InvalidArgument

            raise InvalidArgument(f"unknown detector {settings.detector!r}: use hog or cnn")
        return cls(
            primary,
            DlibEmbedder(models, views=settings.embed_views),
            fallback=fallback,
            min_face_px=settings.min_face_px,
            min_sharpness=settings.min_sharpness,
            age_estimator=_load_age_estimator(settings.age_estimator),
            adult_age=settings.min_age + settings.age_margin,
        )

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
        return sorted(faces, key=lambda f: f.box.principal_key(width, height), reverse=True)

    def analyse(self, rgb: RGB) -> list[AnalysedFace]:
        """Every face: detected, quality-checked, and embedded when it passes."""
        from countenance.vision.dlib_models import face_chips

        faces = self.detect(rgb)
        chips = face_chips(rgb, faces)
        qualities = [
            quality_mod.assess(
                f.box, c, min_face_px=self.min_face_px, min_sharpness=self.min_sharpness
            )
            for f, c in zip(faces, chips, strict=True)
        ]
        if self.age_estimator is not None and faces:
            ages = self.age_estimator.estimate(rgb, faces)
            qualities = [
                dataclasses.replace(q, skip_reason="possible_minor")
                if q.skip_reason is None and age < self.adult_age
                else q
                for q, age in zip(qualities, ages, strict=True)
            ]
        keep = [i for i, q in enumerate(qualities) if q.skip_reason is None]
        vectors = self.embedder.embed(rgb, [faces[i] for i in keep])
        by_index = dict(zip(keep, vectors, strict=True))
        return [
            AnalysedFace(f, q, by_index.get(i))
            for i, (f, q) in enumerate(zip(faces, qualities, strict=True))
        ]


def _load_age_estimator(path: str | None) -> AgeEstimator | None:
    """The AgeEstimator named ``package.module:Class``, built with no arguments."""
    if not path:
        return None
    from countenance.errors import BackendUnavailable, InvalidArgument

    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise InvalidArgument(f"age_estimator {path!r} must look like package.module:Class")
    try:
        estimator = getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"cannot load age estimator {path!r}: {exc}") from exc
    if not isinstance(estimator, AgeEstimator):
        raise InvalidArgument(f"{path!r} has no estimate(rgb, faces) method")
    return estimator
