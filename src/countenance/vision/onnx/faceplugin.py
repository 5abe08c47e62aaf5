"""faceplugin's landmark, embedding and age models (MIT, npm ``faceplugin-face-recognition-js``
0.0.1) on ONNX Runtime, with five-point ArcFace alignment in place of the package's own.

- :class:`FrLandmarker`: 68 landmarks (iBUG order) on a 64 x 64 grey crop of the box, reduced
  to the five ``arcface5`` points;
- :class:`FrEmbedder`: a 512-d ArcFace-style embedding of the 112 x 112 aligned crop (and its
  mirror image), L2-normalised, compared by cosine;
- :class:`FrAgeEstimator`: SSR-Net age in years from a 64 x 64 crop of the box enlarged 1.4x.

The package's JavaScript aligns by a three-point affine warp (eyes and nose), which shears the
face; here the crop is the least-squares similarity of all five points onto insightface's
template (:mod:`countenance.vision.align`). Sessions are made in the constructors, nothing at
import. Every model has a fixed batch of 1, so faces run one at a time.

Example::

    from countenance.vision.onnx.embedding import arcface_crops, unit_vectors
from countenance.vision.onnx.runtime import Runtime

    runtime = Runtime.choose(threads=2)
    models = model_dir / FACEPLUGIN_DIR
    landmarker = FrLandmarker(models / LANDMARK_FILE, runtime)
    embedder = FrEmbedder(models / FEATURE_FILE, runtime)
    faces = [DetectedFace(box, 1.0, "hog", lm)
             for box, lm in zip(boxes, landmarker.landmarks(rgb, boxes))]
    vectors = embedder.embed(rgb, faces)             # float32[N, 512], unit rows
    ages = FrAgeEstimator(models / AGE_FILE, runtime).estimate(rgb, faces)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from countenance.ports import RGB, Vectors
from countenance.types import Box, DetectedFace, EmbeddingSpace, Landmarks5, Point
from countenance.vision.align import ARCFACE_SCHEME, crop_resize
from countenance.vision.onnx.embedding import arcface_crops, unit_vectors
from countenance.vision.onnx.runtime import Runtime

__all__ = [
    "AGE_FILE",
    "FACEPLUGIN_DIR",
    "FEATURE_FILE",
    "LANDMARK_FILE",
    "FrAgeEstimator",
    "FrEmbedder",
    "FrLandmarker",
    "faceplugin_space",
    "fit_crop",
    "five_from_68",
    "merge_age",
]

# where the model files lie under a model directory, as the npm package ships them
FACEPLUGIN_DIR = Path("faceplugin-face-recognition-js@0.0.1") / "model"
LANDMARK_FILE = "fr_landmark.onnx"
FEATURE_FILE = "fr_feature.onnx"
AGE_FILE = "fr_age.onnx"

LANDMARK_SIZE = 64
FEATURE_SIZE = 112
AGE_SIZE = 64
AGE_CROP_SCALE = 1.4  # the framing fr_age.js gives SSR-Net: the box enlarged 1.4x
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as OpenCV's
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# SSR-Net's stage outputs, in the order mergeAge reads them
_AGE_OUTPUTS = (
    "prob_stage_1",
    "prob_stage_2",
    "prob_stage_3",
    "stage1_delta_k",
    "stage2_delta_k",
    "stage3_delta_k",
    "index_offset_stage1",
    "index_offset_stage2",
    "index_offset_stage3",
)
_AGE_RANGE = 101  # SSR-Net's V: ages 0..100


def faceplugin_space(mirror: bool = True, bgr: bool = True) -> EmbeddingSpace:
    """The space of fr_feature vectors: ``1+mirror`` averages the crop and its mirror image;
    feeding RGB instead of BGR (``+rgb``) gives other vectors and so another space."""
    version = "1+mirror" if mirror else "1"
    if not bgr:
        version += "+rgb"
    return EmbeddingSpace("faceplugin_fr_feature", version, 512)


def fit_crop(box: Box, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop faceplugin's JavaScript takes around ``box``: enlarged ``scale`` times about
    its centre (less where the photo is too small), then shifted to lie inside the photo.

    Example: ``fit_crop(Box(0, 10, 100, 110), 1.4, 250, 250) == (0, 0, 140, 140)``.
    """
    bw, bh = max(1, box.width), max(1, box.height)
    s = min((height - 1) / bh, (width - 1) / bw, scale)
    new_w, new_h = bw * s, bh * s
    cx, cy = box.x1 + bw / 2, box.y1 + bh / 2
    x1, y1 = cx - new_w / 2, cy - new_h / 2
    x2, y2 = cx + new_w / 2, cy + new_h / 2
    if x1 < 0:
        x2, x1 = x2 - x1, 0.0
    if y1 < 0:
        y2, y1 = y2 - y1, 0.0
    if x2 > width - 1:
        x1, x2 = x1 - (x2 - width + 1), float(width - 1)
    if y2 > height - 1:
        y1, y2 = y1 - (y2 - height + 1), float(height - 1)
    left, top = max(int(x1), 0), max(int(y1), 0)
    return left, top, left + max(1, int(x2 - x1)), top + max(1, int(y2 - y1))


def five_from_68(points: npt.ArrayLike) -> Landmarks5:
    """The ``arcface5`` landmarks of 68 iBUG points (x, y): the centres of the eyes' six
    points (36-41, 42-47), the nose tip (30), the mouth corners (48, 54), pairs by x.

    Example: ``five_from_68(shape_68).points[2]`` is the nose tip.
    """
    p = np.asarray(points, dtype=np.float64).reshape(68, 2)
    eyes = sorted([p[36:42].mean(axis=0), p[42:48].mean(axis=0)], key=lambda q: q[0])
    mouth = sorted([p[48], p[54]], key=lambda q: q[0])
    five = [*eyes, p[30], *mouth]
    pts: list[Point] = [(float(x), float(y)) for x, y in five]
    return Landmarks5((pts[0], pts[1], pts[2], pts[3], pts[4]), ARCFACE_SCHEME)


def _input_name(session: Any) -> str:
    return str(session.get_inputs()[0].name)


class FrLandmarker:
    """faceplugin's 68-point landmark model, giving ``arcface5`` landmarks for face boxes.

    The crop is the box itself (shifted inside the photo), 64 x 64 grey, pixel / 256; the
    model answers 68 points in box-relative units.

    Example: ``FrLandmarker(path, Runtime()).landmarks(rgb, [Box(60, 70, 190, 200)])``.
    """

    scheme = ARCFACE_SCHEME

    def __init__(self, model_path: Path, runtime: Runtime) -> None:
        self._session = runtime.session(Path(model_path))
        self._input = _input_name(self._session)

    def landmarks(self, rgb: RGB, boxes: list[Box]) -> list[Landmarks5]:
        return [five_from_68(p) for p in self.landmarks68(rgb, boxes)]

    def landmarks68(self, rgb: RGB, boxes: list[Box]) -> list[npt.NDArray[np.float64]]:
        """The 68 points of each box, float64[68, 2] in photo pixels (iBUG order)."""
        h, w = rgb.shape[:2]
        out = []
        for box in boxes:
            x1, y1, x2, y2 = fit_crop(box, 1.0, w, h)
            crop = crop_resize(rgb, (x1, y1, x2, y2), LANDMARK_SIZE)
            grey = np.rint(crop.astype(np.float32) @ _GREY) / 256.0
            raw = self._session.run(None, {self._input: grey[None, None].astype(np.float32)})[0]
            rel = np.asarray(raw, dtype=np.float64).reshape(68, 2)
            # the JavaScript maps back by the box it was given; the crop is what the model saw
            out.append(rel * [x2 - x1, y2 - y1] + [x1, y1])
        return out


class FrEmbedder:
    """faceplugin's 512-d face embedding on ArcFace-aligned 112 x 112 crops.

    Input is (pixel - 127) / 128 in BGR order (``bgr=False`` feeds RGB, as the package's
    JavaScript does; see the LFW figures in ``benchmarks/onnx_lfw.py``). With ``mirror`` the
    crop and its mirror image are embedded and summed before normalising.

    Example: ``FrEmbedder(path, Runtime()).embed(rgb, faces)  # float32[N, 512]``.
    """

    scheme = ARCFACE_SCHEME

    def __init__(
        self, model_path: Path, runtime: Runtime, *, mirror: bool = True, bgr: bool = True
    ) -> None:
        self.space = faceplugin_space(mirror, bgr)
        self._mirror = mirror
        self._bgr = bgr
        self._session = runtime.session(Path(model_path))
        self._input = _input_name(self._session)

    def align(self, rgb: RGB, faces: list[DetectedFace]) -> list[RGB]:
        return arcface_crops(rgb, faces, FEATURE_SIZE, self.space.model)

    def embed(self, rgb: RGB, faces: list[DetectedFace]) -> Vectors:
        return unit_vectors(
            self.align(rgb, faces), self._run, mirror=self._mirror, dim=self.space.dim
        )

    def embed_crop(self, crop: RGB) -> npt.NDArray[np.float32]:
        """The raw (unnormalised) 512-d output for one 112 x 112 RGB crop, no mirror."""
        return self._run(crop)

    def _run(self, crop: RGB) -> npt.NDArray[np.float32]:
        channels = crop[:, :, ::-1] if self._bgr else crop
        x = (channels.astype(np.float32) - 127.0) / 128.0
        batch = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        out = self._session.run(None, {self._input: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


class FrAgeEstimator:
    """faceplugin's SSR-Net age model: years, from the box enlarged 1.4x, 64 x 64 RGB with
    ImageNet mean and deviation, merged over its three stages as ``mergeAge`` does.

    Example: ``FrAgeEstimator(path, Runtime()).estimate(rgb, faces)  # [34.2, ...]``.
    """

    def __init__(self, model_path: Path, runtime: Runtime) -> None:
        self._session = runtime.session(Path(model_path))
        self._input = _input_name(self._session)

    def estimate(self, rgb: RGB, faces: list[DetectedFace]) -> list[float]:
        h, w = rgb.shape[:2]
        ages = []
        for face in faces:
            crop = crop_resize(rgb, fit_crop(face.box, AGE_CROP_SCALE, w, h), AGE_SIZE)
            x = (crop.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
            batch = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
            outs = self._session.run(list(_AGE_OUTPUTS), {self._input: batch})
            ages.append(merge_age(*(np.asarray(o, dtype=np.float64).reshape(-1) for o in outs)))
        return ages


def merge_age(
    p1: npt.NDArray[np.float64],
    p2: npt.NDArray[np.float64],
    p3: npt.NDArray[np.float64],
    d1: npt.NDArray[np.float64],
    d2: npt.NDArray[np.float64],
    d3: npt.NDArray[np.float64],
    o1: npt.NDArray[np.float64],
    o2: npt.NDArray[np.float64],
    o3: npt.NDArray[np.float64],
) -> float:
    """SSR-Net's soft stagewise regression (fr_age.js ``mergeAge`` with 3 bins a stage and
    both lambdas 1): each stage refines the last by its probabilities ``p``, bin offsets
    ``o`` and width change ``d``; the sum is a fraction of the 0..100 range."""
    bins = np.arange(3, dtype=np.float64)
    w1 = 3 * (1 + d1[0])
    w2 = w1 * 3 * (1 + d2[0])
    w3 = w2 * 3 * (1 + d3[0])
    a = float(((bins + o1) * p1).sum()) / w1
    b = float(((bins + o2) * p2).sum()) / w2
    c = float(((bins + o3) * p3).sum()) / w3
    return float((a + b + c) * _AGE_RANGE)
