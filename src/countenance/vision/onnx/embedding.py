"""What every ArcFace-style ONNX embedder does the same way: five-point aligned crops, and unit
vectors from the model's raw output (optionally averaged with the mirror image's).

Example::

    crops = arcface_crops(rgb, faces, 112, "faceplugin_fr_feature")
    vectors = unit_vectors(crops, run_model, mirror=True, dim=512)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from countenance.errors import InvalidArgument
from countenance.ports import RGB, Vectors
from countenance.types import DetectedFace
from countenance.vision.align import ARCFACE_SCHEME, arcface_crop


def arcface_crops(rgb: RGB, faces: list[DetectedFace], size: int, model: str) -> list[RGB]:
    """Each face's ``size`` x ``size`` crop, aligned by its five ArcFace points; a face with
    other (or no) landmarks is refused, naming ``model``."""
    crops = []
    for i, face in enumerate(faces):
        if face.landmarks is None or face.landmarks.scheme != ARCFACE_SCHEME:
            got = "none" if face.landmarks is None else face.landmarks.scheme
            raise InvalidArgument(
                f"face {i}: {model} aligns by {ARCFACE_SCHEME} landmarks, not {got}"
            )
        crops.append(arcface_crop(rgb, face.landmarks, size))
    return crops


def unit_vectors(
    crops: list[RGB],
    run: Callable[[RGB], npt.NDArray[np.float32]],
    *,
    mirror: bool,
    dim: int,
) -> Vectors:
    """``run`` on each crop (plus its mirror image, summed, where ``mirror``), as unit rows."""
    if not crops:
        return np.zeros((0, dim), dtype=np.float32)
    rows = []
    for crop in crops:
        vector = run(crop)
        if mirror:
            vector = vector + run(crop[:, ::-1])
        rows.append(vector)
    raw = np.stack(rows)
    unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(unit, dtype=np.float32)
