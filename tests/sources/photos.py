"""Synthetic photos and an engine over the fake face pipeline, for the collecting tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from countenance.config import Settings
from countenance.engine import Engine
from tests.unit.fakes import fake_pipeline


def noise_png(seed: int, size: int = 48) -> bytes:
    """A distinct synthetic photo (coloured noise, no face) as PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_of(data: bytes, quality: int = 80, scale: float = 1.0) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def open_fake_engine(data: Path, **settings: Any) -> Engine:
    return Engine(Settings(data_dir=data, workers=1, **settings), pipeline=fake_pipeline())


def scene_png(seed: int, size: int = 160) -> bytes:
    """A distinct synthetic photo with structure at every scale, like a real one (smooth
    random shapes plus fine texture), as PNG. The fake detector sees it as one 'face'."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 250, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 12, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 249).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
