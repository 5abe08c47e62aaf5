"""The Ultra-Light-Fast-Generic-Face-Detector-1MB (RFB-320) face detector, over ONNX Runtime.

The model file is faceplugin's ``fr_detect.onnx``: input ``input`` float32 [1, 3, 240, 320]
(RGB, ``(x - 127) / 128``, NCHW), outputs ``scores`` [1, 4420, 2] (background, face; already
softmaxed) and ``boxes`` [1, 4420, 4]. The boxes are already decoded from the priors: they are
``x1, y1, x2, y2`` as fractions of the input's width and height (checked by eye on real photos;
the package's JavaScript builds priors and then ignores them).

Small faces. 320x240 is small: shrunk to it, the faces of a large group photo fall under the
model's smallest anchor. The photo is therefore seen through windows of the input's 4:3
aspect, each resized to 320x240, and the detections of all windows are merged by one
non-maximum suppression (which also drops a box lying mostly inside a better one):

1. the whole photo, stretched to 320x240 as in training (at most 2x on one axis, padded
   beyond), at scale ``g`` (photo pixels per input pixel, of the more shrunk axis);
2. where ``g > 1.25``, a grid of overlapping tiles at scale ``s``: the scale at which a
   20-pixel face (the smallest the pipeline embeds, ``min_face_px``) reaches the model at
   16 pixels (LFW faces shrunk to 16 input pixels are found 99% of the time at
   ``min_score``), or the smallest scale above it whose grid has at most ``max_windows - 1``
   tiles. The tiles answer only for faces smaller than their overlap, ``32 g`` photo pixels
   (twice 16 input pixels of the whole-photo pass): each such face lies wholly inside some
   tile, and a larger face reaches the whole-photo pass at 24 input pixels wide or more
   (boxes are ~1.3x taller than wide), where it finds every shrunk LFW face. So a tile's
   larger boxes, and those that reach its inner edges, are dropped: they are faces cut by
   the tile, which another window sees whole.

The cost is bounded: at most ``max_windows`` runs of the model (about 2 ms each on one CPU
core), whatever the photo's size.

Threshold. ``min_score`` 0.8 is the highest score, in steps of 0.05, at which the model still
finds 99% of LFW faces shrunk to 16 input pixels, the size the tiles bring the smallest faces
to (every 18th LFW photo, shrunk into a 320x240 view of itself: 99% at 0.8, 97% at 0.9). False
detections stay rare there: 12% of LFW's 5,373 photos show a second detection away from the
labelled face at 0.8, but nearly all are real faces in the background (by eye, 6 of 40 drawn
between 0.8 and 0.9 were ears, hands or logos; fewer above).

Example::

    runtime = Runtime.choose("cpu", threads=1)
    detector = RfbDetector(model_dir / "model" / "fr_detect.onnx", runtime)
    faces = detector.detect(rgb)          # boxes only: landmarks come from a Landmarker
    faces[0].box, faces[0].score
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from countenance.errors import InvalidArgument
from countenance.ports import RGB
from countenance.types import Box, DetectedFace
from countenance.vision.onnx.runtime import Runtime

__all__ = ["RfbDetector"]

INPUT_W, INPUT_H = 320, 240
SMALLEST_FACE_PX = 20  # FacePipeline's default min_face_px: smaller faces are never embedded
MIN_INPUT_FACE_PX = 16  # at min_score 0.8, 99% of LFW faces shrunk to 16 input px are found
OVERLAP_FACES = 2.0  # tiles overlap by this many of the whole-photo pass's smallest faces
EDGE_PX = 2.0  # input pixels: a box this close to a tile's inner edge is a cut face
# two faces cannot share most of a place: a box mostly inside a better one is a part of that
# face (a tile's view of a cut face, a mouth); 0.5 as SAHI's merge of tiled detections
CONTAINED = 0.5
MAX_STRETCH = 2.0  # the most one axis is stretched against the other (portraits in training)
PAD_VALUE = 127  # normalises to 0: padding carries no signal

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _Window:
    """A 4:3 region of the photo seen by one run: its top-left corner and its scale (photo
    pixels per input pixel); which of its edges lie inside the photo (cut faces there), and
    the largest face (box side, photo pixels) it answers for."""

    x0: float
    y0: float
    scale: float
    inner: tuple[bool, bool, bool, bool] = (False, False, False, False)  # left top right bottom
    max_face: float = math.inf


class RfbDetector:
    """The RFB-320 face detector (boxes and scores, no landmarks) on whole photos and on
    overlapping tiles of large ones; see the module's docstring for the rule.

    Example: ``RfbDetector(path, Runtime.choose()).detect(rgb)``.
    """

    name = "rfb320"

    def __init__(
        self,
        model_path: Path,
        runtime: Runtime,
        *,
        min_score: float = 0.8,
        nms_iou: float = 0.4,
        max_windows: int = 16,
    ) -> None:
        if not 0.0 < min_score < 1.0:
            raise InvalidArgument(f"min_score must lie in (0, 1), not {min_score}")
        if not 0.0 < nms_iou <= 1.0:
            raise InvalidArgument(f"nms_iou must lie in (0, 1], not {nms_iou}")
        if max_windows < 1:
            raise InvalidArgument(f"max_windows must be at least 1, not {max_windows}")
        self.min_score = min_score
        self.nms_iou = nms_iou
        self.max_windows = max_windows
        self._session: Any = runtime.session(model_path)
        self._input = self._session.get_inputs()[0].name

    def detect(self, rgb: RGB) -> list[DetectedFace]:
        """Faces in an RGB image (H x W x 3, uint8), best score first; boxes in its pixels."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InvalidArgument(f"detect needs H x W x 3 uint8 RGB, not {rgb.dtype} {rgb.shape}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            return []
        return self._detect(rgb)

    def _detect(self, rgb: RGB) -> list[DetectedFace]:
        height, width = rgb.shape[:2]
        all_boxes, all_scores = [], []
        for window in windows(width, height, self.max_windows):
            boxes, scores = self._run(rgb, window)
            all_boxes.append(boxes)
            all_scores.append(scores)
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores)
        faces = []
        for i in nms(boxes, scores, self.nms_iou):
            x1, y1, x2, y2 = (round(float(v)) for v in boxes[i])
            box = Box(x1, y1, x2, y2).clip(width, height)
            if box.area > 0:
                faces.append(DetectedFace(box, float(scores[i]), self.name))
        return faces

    def _run(self, rgb: RGB, window: _Window) -> tuple[Floats, Floats]:
        """The detections of one window above ``min_score``, in photo pixels."""
        batch, (ox, oy, sx, sy) = _input(rgb, window)
        scores, boxes = self._session.run(None, {self._input: batch})
        scores, boxes = scores[0, :, 1], boxes[0]
        keep = scores >= self.min_score
        scores, boxes = scores[keep], boxes[keep] * (INPUT_W, INPUT_H, INPUT_W, INPUT_H)
        # a box reaching an inner edge of a tile is a face cut by it: the overlap rule makes
        # sure another window holds it whole
        left, top, right, bottom = window.inner
        cut = np.zeros(len(scores), dtype=bool)
        if left:
            cut |= boxes[:, 0] < EDGE_PX
        if top:
            cut |= boxes[:, 1] < EDGE_PX
        if right:
            cut |= boxes[:, 2] > INPUT_W - EDGE_PX
        if bottom:
            cut |= boxes[:, 3] > INPUT_H - EDGE_PX
        # input pixels -> photo pixels, by the exact scale of the resized crop on each axis
        photo = boxes * np.array([sx, sy, sx, sy]) + np.array([ox, oy, ox, oy])
        # a tile sees a large face's part as a face of its own; the whole-photo pass has it
        side = np.maximum(photo[:, 2] - photo[:, 0], photo[:, 3] - photo[:, 1])
        keep = ~cut & (side < window.max_face)
        return photo[keep].astype(np.float32), scores[keep].astype(np.float32)


def windows(width: int, height: int, max_windows: int = 16) -> list[_Window]:
    """The windows a ``width`` x ``height`` photo is seen through: the whole photo, then, where
    it is large, a grid of overlapping tiles (at most ``max_windows`` in all)."""
    whole = max(width / INPUT_W, height / INPUT_H)
    found: list[_Window] = [_Window(0.0, 0.0, whole)]
    scale = SMALLEST_FACE_PX / MIN_INPUT_FACE_PX
    if whole <= scale or max_windows < 2:
        return found
    # the tiles answer for the faces the whole-photo pass may miss: each must fit wholly
    # inside some tile
    overlap = OVERLAP_FACES * MIN_INPUT_FACE_PX * whole
    while True:
        tile_w, tile_h = INPUT_W * scale, INPUT_H * scale
        over = min(overlap, tile_h / 2)
        xs = _starts(width, tile_w, over)
        ys = _starts(height, tile_h, over)
        if len(xs) * len(ys) <= max_windows - 1:
            break
        scale *= 1.1
    for y in ys:
        for x in xs:
            inner = (x > 0, y > 0, x + tile_w < width, y + tile_h < height)
            found.append(_Window(x, y, scale, inner, over))
    return found


def _starts(length: int, tile: float, overlap: float) -> list[float]:
    """Evenly spaced tile starts covering ``length`` with at least ``overlap`` shared."""
    if length <= tile:
        return [0.0]
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    step = (length - tile) / (n - 1)
    return [i * step for i in range(n)]


def _input(rgb: RGB, window: _Window) -> tuple[Floats, tuple[int, int, float, float]]:
    """The model's input for one window, and how to map it back: the origin in the photo of
    the part seen, and its photo pixels per input pixel on each axis."""
    from PIL import Image

    height, width = rgb.shape[:2]
    s = window.scale
    x1, y1 = max(0, round(window.x0)), max(0, round(window.y0))
    x2 = max(x1 + 1, min(width, round(window.x0 + INPUT_W * s)))
    y2 = max(y1 + 1, min(height, round(window.y0 + INPUT_H * s)))
    # the part is stretched to fill the input, as the model was trained (whole WIDER FACE
    # photos, landscape and portrait, resized to 320x240); beyond MAX_STRETCH it is padded
    sx, sy = (x2 - x1) / INPUT_W, (y2 - y1) / INPUT_H
    sx, sy = max(sx, sy / MAX_STRETCH), max(sy, sx / MAX_STRETCH)
    w_in = min(INPUT_W, max(1, round((x2 - x1) / sx)))
    h_in = min(INPUT_H, max(1, round((y2 - y1) / sy)))
    part = Image.fromarray(np.ascontiguousarray(rgb[y1:y2, x1:x2]))
    # Pillow's bilinear filter widens when shrinking (unlike cv2's INTER_LINEAR that the
    # package uses): a large photo shrunk 8x must not alias, small faces would drown in it
    part = part.resize((w_in, h_in), Image.Resampling.BILINEAR)
    canvas = np.full((INPUT_H, INPUT_W, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:h_in, :w_in] = np.asarray(part)
    batch = ((canvas.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(batch), (x1, y1, (x2 - x1) / w_in, (y2 - y1) / h_in)


def nms(boxes: Floats, scores: Floats, iou: float, contained: float = CONTAINED) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first: a box
    goes when its IoU with a better one exceeds ``iou``, or when more than ``contained`` of
    its area lies inside a better one."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        union = areas[i] + areas[rest] - inter
        apart = (inter <= iou * np.maximum(union, 1e-9)) & (inter <= contained * areas[rest])
        order = rest[apart]
    return keep
