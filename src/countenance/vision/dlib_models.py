"""dlib's detectors, 5-point landmarks and ResNet descriptor, as ports.

The weights come from the ``face_recognition_models`` package and dlib from the ``dlib-bin``
wheel: nothing is compiled and nothing is downloaded at run time.

Example::

    models = DlibModels.load()
    detector = HogDetector(models)
    faces = detector.detect(rgb)
    vectors = DlibEmbedder(models).embed(rgb, faces)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from countenance.ports import RGB, Detector, Vectors
from countenance.types import Box, DetectedFace, Landmarks5
from countenance.vision.registry import dlib_space

if TYPE_CHECKING:
    from countenance.config import Settings
    from countenance.vision.models import ModelStore
    from countenance.vision.pipeline import FacePipeline

CHIP_SIZE = 150
CHIP_PADDING = 0.25  # the framing dlib's ResNet was trained on
WIDE_PADDING = 0.35  # a wider framing: more of the head and hair


@dataclass(frozen=True)
class DlibModels:
    """The loaded dlib models; load once per process (about 100 MB, a second or two)."""

    hog: Any
    landmarks: Any
    resnet: Any
    cnn_path: str

    @classmethod
    def load(cls, store: ModelStore | None = None) -> DlibModels:
        """The models from the ``face_recognition_models`` package, each file checked
        against its pinned sha256."""
        import dlib

        from countenance.vision.models import ModelStore, default_model_dir

        store = store or ModelStore(default_model_dir())
        model = "models/{}.dat".format
        return cls(
            hog=dlib.get_frontal_face_detector(),
            landmarks=dlib.shape_predictor(
                str(store.path("dlib", model("shape_predictor_5_face_landmarks")))
            ),
            resnet=dlib.face_recognition_model_v1(
                str(store.path("dlib", model("dlib_face_recognition_resnet_model_v1")))
            ),
            cnn_path=str(store.path("dlib", model("mmod_human_face_detector"))),
        )


def downscale(rgb: RGB, max_side: int) -> tuple[RGB, float]:
    """The image shrunk so its longest side is at most ``max_side``, and the scale used."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return rgb, 1.0
    from PIL import Image

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    return small, scale


def hog_upsample(longest_side: int) -> int:
    """How often HOG upsamples an image: its smallest detectable face is about 80 px, so
    small images are enlarged until faces of ~1/10 of the image become findable."""
    if longest_side < 200:
        return 2
    if longest_side < 1000:
        return 1
    return 0


def _landmarks(models: DlibModels, rgb: RGB, box: Box) -> Landmarks5:
    import dlib

    shape = models.landmarks(rgb, dlib.rectangle(box.x1, box.y1, box.x2 - 1, box.y2 - 1))
    pts = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(5))
    return Landmarks5(pts)  # type: ignore[arg-type]


def _to_box(rect: Any, scale: float, width: int, height: int) -> Box:
    # dlib rectangles are inclusive; Box is x2/y2 exclusive, in original pixels
    return Box(
        round(rect.left() / scale),
        round(rect.top() / scale),
        round((rect.right() + 1) / scale),
        round((rect.bottom() + 1) / scale),
    ).clip(width, height)


class DlibLandmarker:
    """dlib's 5-point shape predictor on given boxes (a model switch re-embeds stored faces
    at their boxes, whichever detector found them)."""

    scheme = "dlib5"

    def __init__(self, models: DlibModels) -> None:
        self._models = models

    def landmarks(self, rgb: RGB, boxes: list[Box]) -> list[Landmarks5]:
        return [_landmarks(self._models, rgb, box) for box in boxes]


class HogDetector:
    """dlib's HOG + linear SVM frontal detector with 5-point landmarks.

    Large photos are downscaled to ``max_side`` for detection and boxes mapped back.
    """

    name = "hog"

    def __init__(self, models: DlibModels, max_side: int = 1600) -> None:
        self._models = models
        self._max_side = max_side

    def detect(self, rgb: RGB) -> list[DetectedFace]:
        small, scale = downscale(rgb, self._max_side)
        rects, scores, _ = self._models.hog.run(small, hog_upsample(max(small.shape[:2])), 0.0)
        return _faces(self._models, rgb, rects, scores, scale, self.name)


class CnnDetector:
    """dlib's MMOD CNN detector: finds faces at angles HOG misses, at ~50x its cost on a CPU.

    The photo is downscaled to ``max_side`` first; small photos are upsampled once.
    """

    name = "cnn"

    def __init__(self, models: DlibModels, max_side: int = 640) -> None:
        import dlib

        self._models = models
        self._max_side = max_side
        self._cnn = dlib.cnn_face_detection_model_v1(models.cnn_path)

    def detect(self, rgb: RGB) -> list[DetectedFace]:
        small, scale = downscale(rgb, self._max_side)
        upsample = 1 if max(small.shape[:2]) < self._max_side // 2 else 0
        found = self._cnn(small, upsample)
        rects = [d.rect for d in found]
        scores = [d.confidence for d in found]
        return _faces(self._models, rgb, rects, scores, scale, self.name)


def _faces(
    models: DlibModels, rgb: RGB, rects: Any, scores: Any, scale: float, name: str
) -> list[DetectedFace]:
    h, w = rgb.shape[:2]
    faces = []
    for rect, score in zip(rects, scores, strict=True):
        box = _to_box(rect, scale, w, h)
        if box.area == 0:
            continue
        faces.append(DetectedFace(box, float(score), name, _landmarks(models, rgb, box)))
    return faces


def face_chips(rgb: RGB, faces: list[DetectedFace], padding: float = CHIP_PADDING) -> list[RGB]:
    """Aligned 150x150 crops, eyes and nose placed as dlib's ResNet expects; ``padding``
    widens the framing around the face (0.25 is what the model was trained on)."""
    import dlib

    if not faces:
        return []
    shapes = dlib.full_object_detections()
    for face in faces:
        if face.landmarks is None:
            raise ValueError("face_chips needs faces with landmarks")
        b = face.box
        rect = dlib.rectangle(b.x1, b.y1, b.x2 - 1, b.y2 - 1)
        points = dlib.points([dlib.point(round(x), round(y)) for x, y in face.landmarks.points])
        shapes.append(dlib.full_object_detection(rect, points))
    return [np.asarray(c) for c in dlib.get_face_chips(rgb, shapes, CHIP_SIZE, padding)]


class DlibEmbedder:
    """dlib's ResNet-29 face descriptor (128-d), L2-normalised, averaged over ``views`` views
    of each face (see :func:`dlib_space`)."""

    scheme = "dlib5"

    def __init__(self, models: DlibModels, views: int = 4) -> None:
        self.space = dlib_space(views)
        self._models = models
        self._views = views

    def align(self, rgb: RGB, faces: list[DetectedFace]) -> list[RGB]:
        return face_chips(rgb, faces)

    def embed(self, rgb: RGB, faces: list[DetectedFace]) -> Vectors:
        if not faces:
            return np.zeros((0, self.space.dim), dtype=np.float32)
        chips = face_chips(rgb, faces)
        if self._views == 4:
            wide = face_chips(rgb, faces, WIDE_PADDING)
            chips = [
                view
                for plain, wider in zip(chips, wide, strict=True)
                for view in (plain, _mirror(plain), wider, _mirror(wider))
            ]
        raw = np.asarray(self._models.resnet.compute_face_descriptor(chips), dtype=np.float32)
        per_face = _unit(raw).reshape(len(faces), self._views, self.space.dim).mean(axis=1)
        return np.ascontiguousarray(_unit(per_face), dtype=np.float32)


def _mirror(chip: RGB) -> RGB:
    return np.ascontiguousarray(chip[:, ::-1])


def _unit(x: Vectors) -> Vectors:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def dlib_pipeline(settings: Settings, store: ModelStore) -> FacePipeline:
    """The ``dlib`` pipeline: HOG (CNN fallback, or CNN alone with ``detector=cnn``),
    dlib's 5-point landmarks, ResNet over ``embed_views`` views."""
    from countenance.errors import InvalidArgument
    from countenance.vision.pipeline import FacePipeline, load_age_estimator

    models = DlibModels.load(store)
    cnn = CnnDetector(models, max_side=settings.cnn_max_side)
    if settings.detector == "cnn":
        primary: Detector = cnn
        fallback: Detector | None = None
    elif settings.detector in ("hog", "auto"):
        primary = HogDetector(models, max_side=settings.detect_max_side)
        fallback = cnn if settings.cnn_fallback else None
    else:
        raise InvalidArgument(f"unknown detector {settings.detector!r} for dlib: use hog or cnn")
    return FacePipeline(
        primary,
        DlibEmbedder(models, views=settings.embed_views),
        fallback=fallback,
        landmarker=DlibLandmarker(models),
        min_face_px=settings.min_face_px,
        min_sharpness=settings.min_sharpness,
        age_estimator=load_age_estimator(settings, store, default=None),
        adult_age=settings.min_age + settings.age_margin,
    )
