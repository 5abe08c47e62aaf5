"""Face alignment by a similarity transform: five landmarks onto the ArcFace template.

A similarity (rotation, uniform scale, translation) keeps the face's proportions; a three-point
affine warp fits any three points exactly and shears the face to do it. The transform is the
least-squares fit of all five points (Umeyama), as insightface aligns its training data.

Coordinates follow the usual landmark convention: pixel ``(i, j)`` has its centre at ``(i, j)``
(x right, y down), so a template point ``(38.29, 51.70)`` means the same thing here as in
insightface's ``norm_crop``.

Example::

    m = similarity_transform(face.landmarks.points, ARCFACE_112)
    crop = warp(rgb, m, 112)            # 112 x 112 x 3, uint8
    crop = arcface_crop(rgb, face.landmarks)  # the same, from arcface5 landmarks
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from countenance.errors import InvalidArgument
from countenance.ports import RGB
from countenance.types import Landmarks5

__all__ = [
    "ARCFACE_112",
    "arcface_crop",
    "arcface_template",
    "crop_resize",
    "similarity_transform",
    "warp",
]

Matrix = npt.NDArray[np.float64]

# insightface's arcface_dst: eye centre, eye centre, nose tip, mouth corner, mouth corner in a
# 112 x 112 crop, each pair in image order
ARCFACE_112: npt.NDArray[np.float64] = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SCHEME = "arcface5"


def arcface_template(size: int = 112) -> Matrix:
    """The template for a ``size`` x ``size`` crop, scaled as insightface scales it (sizes
    not a multiple of 112 are taken as multiples of 128 with an 8-pixel margin on x)."""
    if size < 1:
        raise InvalidArgument(f"crop size must be positive, not {size}")
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112)
    ratio = size / 128
    return (ARCFACE_112 + np.array([8.0, 0.0])) * ratio


def similarity_transform(
    src_pts: Sequence[Sequence[float]] | npt.ArrayLike,
    dst_pts: Sequence[Sequence[float]] | npt.ArrayLike,
) -> Matrix:
    """The 2 x 3 matrix ``[sR | t]`` of the similarity that best maps ``src_pts`` onto
    ``dst_pts`` (least squares, Umeyama 1991; no reflection, no shear).

    Example: ``m = similarity_transform(points, ARCFACE_112); m @ [x, y, 1]`` is where
    ``(x, y)`` lands in the crop.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise InvalidArgument(
            f"need two equal lists of at least 2 (x, y) points, not {src.shape} and {dst.shape}"
        )
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = float((src_c**2).sum()) / len(src)
    if src_var <= 1e-12:
        raise InvalidArgument("the source points coincide: no transform fits them")
    cov = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    # flip the weakest axis rather than fit a mirror image: a face is never reflected
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum()) / src_var
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp(rgb: RGB, matrix: npt.ArrayLike, size: int | tuple[int, int]) -> RGB:
    """``rgb`` warped by the 2 x 3 ``matrix`` (image -> crop) into a crop of ``size``
    (an int for a square, or ``(width, height)``), bilinear; outside the image is black.

    Example: ``crop = warp(rgb, similarity_transform(points, ARCFACE_112), 112)``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise InvalidArgument(f"an affine matrix is 2 x 3, not {m.shape}")
    width, height = (size, size) if isinstance(size, int) else size
    forward = np.vstack([m, [0.0, 0.0, 1.0]])
    try:
        inverse = np.linalg.inv(forward)
    except np.linalg.LinAlgError as exc:
        raise InvalidArgument("the transform is singular: it maps the image to a line") from exc
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    # bilinear sampling alone aliases when it shrinks more than 2x (a large face in a large
    # photo): average blocks of pixels first, and sample the smaller image instead
    factor = int(np.sqrt(abs(np.linalg.det(inverse[:2, :2]))) + 1e-6)  # image px per crop px
    if factor >= 2:
        image = image.reduce(factor)
        # reduced pixel k averages pixels k*f .. k*f+f-1: its centre is k*f + (f-1)/2
        shift = (factor - 1) / 2 / factor
        to_reduced = np.array([[1 / factor, 0, -shift], [0, 1 / factor, -shift], [0, 0, 1]])
        inverse = to_reduced @ inverse
    a = inverse[:2, :2]
    # Pillow samples at pixel centres (i + 0.5); landmarks put centres at i: shift both ends
    offset = inverse[:2, 2] + 0.5 - a @ np.array([0.5, 0.5])
    coeffs = (a[0, 0], a[0, 1], offset[0], a[1, 0], a[1, 1], offset[1])
    out = image.transform(
        (width, height), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(out)


def arcface_crop(rgb: RGB, landmarks: Landmarks5, size: int = 112) -> RGB:
    """The ``size`` x ``size`` ArcFace crop of the face with ``arcface5`` ``landmarks``.

    Example: ``crop = arcface_crop(rgb, Landmarks5(points, "arcface5"))``.
    """
    if landmarks.scheme != ARCFACE_SCHEME:
        raise InvalidArgument(
            f"ArcFace alignment needs {ARCFACE_SCHEME} landmarks, not {landmarks.scheme}"
        )
    return warp(rgb, similarity_transform(landmarks.points, arcface_template(size)), size)


def crop_resize(rgb: RGB, box: tuple[float, float, float, float], size: int) -> RGB:
    """The region ``box = (x1, y1, x2, y2)`` (pixel edges, x2/y2 exclusive, as
    :class:`~countenance.types.Box`) resized to ``size`` x ``size``, bilinear, as OpenCV's
    crop-then-resize samples it; outside the image is black.

    Example: ``grey_input = crop_resize(rgb, (10, 20, 110, 120), 64)``.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise InvalidArgument(f"an empty region: {box}")
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    # edges map to edges: pixel centres sit half a pixel inside them on both sides
    matrix = [[sx, 0.0, sx * (0.5 - x1) - 0.5], [0.0, sy, sy * (0.5 - y1) - 0.5]]
    return warp(rgb, matrix, size)
