"""Pipelines built on the ONNX models, as registered in :mod:`countenance.vision.registry`.

Example::

    pipeline = faceplugin_pipeline(settings, ModelStore.from_settings(settings))
    faces = pipeline.analyse(rgb)
    auraface = brought_pipeline(settings, store, "auraface")   # once installed and calibrated
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from countenance.errors import InvalidArgument
from countenance.ports import Detector, Embedder, Landmarker
from countenance.vision.models import space_of
from countenance.vision.pipeline import FacePipeline, load_age_estimator
from countenance.vision.registry import BROUGHT, COMPONENTS

if TYPE_CHECKING:
    from countenance.config import Settings
    from countenance.vision.models import ModelStore


def faceplugin_pipeline(settings: Settings, store: ModelStore) -> FacePipeline:
    """faceplugin's models: faces found by ``fr_detect`` (RFB-320, ``detector=auto``) with
    dlib's CNN as the fallback where it finds no whole face, five ArcFace points from the 68
    of ``fr_landmark``, ``fr_feature`` embeddings of the aligned face and its mirror image,
    and SSR-Net ages (``age_estimator=auto``). ``detector=hog`` or ``cnn`` use dlib's."""
    primary, fallback = _detectors(settings, store)
    landmarker: Landmarker = COMPONENTS["fr_landmark"].load(settings, store)
    embedder: Embedder = COMPONENTS["fr_feature"].load(settings, store)
    banded = space_of("faceplugin", settings)
    if embedder.space != banded:
        raise InvalidArgument(f"fr_feature embeds into {embedder.space.key}, not {banded.key}")
    embedder.space = banded  # the registry's copy carries the calibrated bands
    return FacePipeline(
        primary,
        embedder,
        fallback=fallback,
        landmarker=landmarker,
        min_face_px=settings.min_face_px,
        min_sharpness=settings.min_sharpness,
        age_estimator=load_age_estimator(settings, store, default="ssrnet"),
        adult_age=settings.min_age + settings.age_margin,
    )


def brought_pipeline(
    settings: Settings, store: ModelStore, name: str, *, require_bands: bool = True
) -> FacePipeline:
    """The default pipeline with brought model ``name``'s embedder in place of
    ``fr_feature``: the same detectors, landmarks and age estimator, the entry's own
    preprocessing. Refused unless the file matches its lock (and the licence was accepted);
    with ``require_bands``, also until ``countenance models calibrate`` gave it bands
    (calibration itself loads it without)."""
    from countenance.vision.onnx.arcface import ArcFaceEmbedder
    from countenance.vision.onnx.runtime import Runtime

    model = BROUGHT[name]
    if require_bands:
        store.calibrated(name)
    path = store.brought_path(name)
    space = space_of(name, settings)
    runtime = Runtime.choose(settings.device, settings.model_threads)
    embedder = ArcFaceEmbedder(path, runtime, model.preprocessing, space)
    primary, fallback = _detectors(settings, store)
    landmarker: Landmarker = COMPONENTS["fr_landmark"].load(settings, store)
    return FacePipeline(
        primary,
        embedder,
        fallback=fallback,
        landmarker=landmarker,
        min_face_px=settings.min_face_px,
        min_sharpness=settings.min_sharpness,
        age_estimator=load_age_estimator(settings, store, default="ssrnet"),
        adult_age=settings.min_age + settings.age_margin,
    )


def _detectors(settings: Settings, store: ModelStore) -> tuple[Detector, Detector | None]:
    """The first detector and the fallback that runs where it finds no whole face."""
    name = "rfb320" if settings.detector == "auto" else settings.detector
    if name not in ("rfb320", "hog", "cnn"):
        raise InvalidArgument(f"unknown detector {name!r}: use auto, rfb320, hog or cnn")
    from countenance.vision.dlib_models import CnnDetector, DlibModels, HogDetector

    models = DlibModels.load(store)
    cnn = CnnDetector(models, max_side=settings.cnn_max_side)
    fallback = cnn if settings.cnn_fallback else None
    if name == "rfb320":
        return COMPONENTS["rfb320"].load(settings, store), fallback
    if name == "cnn":
        return cnn, None
    return HogDetector(models, max_side=settings.detect_max_side), fallback
