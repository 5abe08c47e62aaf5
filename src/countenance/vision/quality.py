"""Face quality: is a face large and sharp enough to be worth indexing?

Example::

    q = assess(face.box, chip, min_face_px=20, min_sharpness=2.0)
    if q.skip_reason: ...
"""

from __future__ import annotations

import math

import numpy as np

from countenance.ports import RGB
from countenance.types import Box, Quality

# Faces this wide or wider, and chips this sharp or sharper, get full marks for that term.
_GOOD_SIZE_PX = 80
_GOOD_SHARPNESS = 100.0


def sharpness(chip: RGB) -> float:
    """Variance of the Laplacian of the aligned crop's grey levels: low means blurry.

    Measured on the fixed-size aligned chip, so it does not depend on the photo's resolution.
    """
    grey = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


def assess(box: Box, chip: RGB, *, min_face_px: int, min_sharpness: float) -> Quality:
    """A :class:`Quality` for one face; ``skip_reason`` is ``too_small`` or ``blurry``."""
    size = min(box.width, box.height)
    sharp = sharpness(chip)
    size_term = min(1.0, size / _GOOD_SIZE_PX)
    sharp_term = min(1.0, math.log1p(sharp) / math.log1p(_GOOD_SHARPNESS))
    score = round(math.sqrt(max(0.0, size_term) * max(0.0, sharp_term)), 4)
    reason = None
    if size < min_face_px:
        reason = "too_small"
    elif sharp < min_sharpness:
        reason = "blurry"
    return Quality(score=score, size_px=size, sharpness=round(sharp, 2), skip_reason=reason)
