"""Fakes of the vision ports, for unit tests that need no model.

The fake detector finds one "face" per solid colour block; the fake embedder maps a block's
colour to a fixed unit vector, so two photos with the same colour "show the same person".
"""

from __future__ import annotations

import numpy as np

from countenance.config import Settings
from countenance.types import Box, DetectedFace, Landmarks5
from countenance.vision.models import space_of
from countenance.vision.registry import dlib_space

FAKE_SPACE = dlib_space(1)  # banded like dlib


def _points(box: Box) -> Landmarks5:
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    return Landmarks5(((cx - 10, cy), (cx - 5, cy), (cx + 10, cy), (cx + 5, cy), (cx, cy + 8)))


class FakeDetector:
    """One face: the bounding box of non-white pixels, if any."""

    name = "fake"

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        mask = (rgb < 250).any(axis=2)
        if not mask.any():
            return []
        ys, xs = np.nonzero(mask)
        box = Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        return [DetectedFace(box, 1.0, self.name, _points(box))]


class FakeLandmarker:
    """Landmarks placed on any box the way the fake detector places them."""

    scheme = "dlib5"

    def landmarks(self, rgb: np.ndarray, boxes: list[Box]) -> list[Landmarks5]:
        return [_points(b) for b in boxes]


class FakeEmbedder:
    """A unit vector seeded by the face's median colour."""

    space = FAKE_SPACE
    scheme = "dlib5"

    def align(self, rgb: np.ndarray, faces: list[DetectedFace]) -> list[np.ndarray]:
        from countenance.vision.dlib_models import face_chips

        return face_chips(rgb, faces)

    def embed(self, rgb: np.ndarray, faces: list[DetectedFace]) -> np.ndarray:
        out = []
        for face in faces:
            b = face.box
            colour = tuple(
                int(c) for c in np.median(rgb[b.y1 : b.y2, b.x1 : b.x2].reshape(-1, 3), 0)
            )
            v = np.random.default_rng(abs(hash(colour)) % 2**32).normal(size=self.space.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32).reshape(-1, self.space.dim)


class FakeWideEmbedder(FakeEmbedder):
    """The fake embedder in the default model's space (another space than FakeEmbedder's):
    a store can switch between the two."""

    space = space_of("faceplugin", Settings())


def fake_pipeline(embedder: FakeEmbedder | None = None):  # type: ignore[no-untyped-def]
    from countenance.vision.pipeline import FacePipeline

    return FacePipeline(
        FakeDetector(),
        embedder or FakeEmbedder(),
        landmarker=FakeLandmarker(),
        min_face_px=20,
        min_sharpness=0.0,
    )


def block_photo(colour: tuple[int, int, int] | None, size: int = 120) -> bytes:
    """A PNG: a coloured square (a fake 'face') with a sharp edge on a white background;
    ``colour=None`` gives a blank photo with no face."""
    import io

    from PIL import Image

    img = np.full((200, 200, 3), 255, np.uint8)
    if colour is not None:
        img[40 : 40 + size, 40 : 40 + size] = colour
        img[40 : 40 + size : 4, 40 : 40 + size] = 0  # stripes, so it is sharp
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def init_nothing(settings: object) -> None:
    """A worker set-up that loads no model."""


def die_on_request(data: bytes, name: str):  # type: ignore[no-untyped-def]
    """A worker task that kills its own process for the photo named ``die``."""
    import os

    from countenance.ingest import Analysis

    if name == "die":
        os._exit(1)
    return Analysis(width=len(data), height=1, format="FAKE")


class RedIsAChild:
    """An AgeEstimator stand-in: red faces look 12, the rest 40."""

    def estimate(self, rgb: np.ndarray, faces: list[DetectedFace]) -> list[float]:
        ages = []
        for face in faces:
            b = face.box
            r, g, _ = np.median(rgb[b.y1 : b.y2, b.x1 : b.x2].reshape(-1, 3), 0)
            ages.append(12.0 if r > g else 40.0)
        return ages
