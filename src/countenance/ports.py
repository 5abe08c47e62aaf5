"""The ports: small Protocols that the engine talks to, and adapters implement.

The engine is the only place where ports meet. Optional capability is a Protocol of its own,
checked with ``isinstance``, never a method that raises ``NotImplementedError``.

Example::

    from countenance.index.exact import ExactIndex
    index: VectorIndex = ExactIndex(space)
    index.add(np.array([7]), vectors)
    sims, ids = index.search(vectors[:1], k=5)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from countenance.types import Box, DetectedFace, EmbeddingSpace, Landmarks5, Provenance

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
RGB = npt.NDArray[np.uint8]


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an RGB image (H x W x 3, uint8): boxes, 5 landmarks, scores. No alignment."""

    name: str

    def detect(self, rgb: RGB) -> list[DetectedFace]: ...


@runtime_checkable
class Landmarker(Protocol):
    """Places five landmarks of ``scheme`` (see :class:`~countenance.types.Landmarks5`) on
    each face box, for detectors that give none or give another scheme than the embedder's."""

    scheme: str

    def landmarks(self, rgb: RGB, boxes: list[Box]) -> list[Landmarks5]: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns faces of an image into L2-normalised vectors of one :class:`EmbeddingSpace`.

    ``scheme`` names the landmarks it aligns by; :meth:`align` gives the aligned crops it
    embeds (quality is measured on them)."""

    space: EmbeddingSpace
    scheme: str

    def align(self, rgb: RGB, faces: list[DetectedFace]) -> list[RGB]: ...

    def embed(self, rgb: RGB, faces: list[DetectedFace]) -> Vectors:
        """float32[N, D], one row per face, in order; faces must carry landmarks."""
        ...


@runtime_checkable
class AgeEstimator(Protocol):
    """Estimates each face's age in years, so that likely minors are never indexed.

    A registered model by name (``ssrnet``), or an operator's own by import path
    (``COUNTENANCE_AGE_ESTIMATOR=package.module:Class``, built with no arguments).
    """

    def estimate(self, rgb: RGB, faces: list[DetectedFace]) -> list[float]: ...


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search over int64 face ids of one space. Stores no metadata and can
    always be rebuilt from the catalog. Similarities are inner products of unit vectors."""

    space: EmbeddingSpace

    @property
    def kind(self) -> str:
        """What the index is now, e.g. ``flat`` or ``ivf1024,flat``."""
        ...

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> int:
        """Remove ids; returns how many were present. The very next search sees it."""
        ...

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        """(similarities, ids), each [Q, k], best first; empty slots hold id -1."""
        ...

    def count(self) -> int: ...

    def ids(self) -> Ids:
        """Every id held, in no particular order."""
        ...


@runtime_checkable
class Persistent(Protocol):
    """An index that keeps itself on disk between runs."""

    def save(self) -> None: ...


@runtime_checkable
class Item(Protocol):
    """One photo a source offers: its provenance and a way to read its bytes."""

    @property
    def provenance(self) -> Provenance: ...

    def read(self, max_bytes: int) -> bytes:
        """The photo's bytes; raises BadImage(reason="too_large") past ``max_bytes``."""
        ...


@runtime_checkable
class Source(Protocol):
    """Where photos come from. Yields items with provenance; never touches the catalog."""

    kind: str

    def items(self) -> Iterator[Item]: ...
