"""Plain, frozen data that crosses module boundaries.

Boxes are in pixels of the original (EXIF-oriented) image, ``x2``/``y2`` exclusive.
Similarity is cosine in [-1, 1] between L2-normalised embeddings.

Example::

    box = Box(10, 20, 110, 140)
    assert box.width == 100 and box.area == 12_000
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Box:
    """A face rectangle: ``Box(x1, y1, x2, y2)``, pixels of the original image, x2/y2 exclusive."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]

    def is_whole(self, width: int, height: int) -> bool:
        """Whether the box lies wholly inside a ``width`` x ``height`` photo (not cut by its
        edge); a face cut by the edge is a partial face."""
        return self.x1 > 0 and self.y1 > 0 and self.x2 < width and self.y2 < height

    def principal_key(self, width: int, height: int) -> tuple[bool, int]:
        """Sort key of the rule that names a photo's principal (labelled) face: the largest
        face wholly inside the photo, else the largest face. Sort descending."""
        return (self.is_whole(width, height), self.area)

    def clip(self, width: int, height: int) -> Box:
        """This box cut to an image of ``width`` x ``height``."""
        return Box(
            max(0, min(self.x1, width)),
            max(0, min(self.y1, height)),
            max(0, min(self.x2, width)),
            max(0, min(self.y2, height)),
        )


Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Landmarks5:
    """Five facial landmarks in original-image pixels, in dlib's 5-point order:
    right eye outer, right eye inner, left eye outer, left eye inner, nose base
    (right/left of the person in the photo)."""

    points: tuple[Point, Point, Point, Point, Point]

    def as_list(self) -> list[list[float]]:
        return [[round(x, 2), round(y, 2)] for x, y in self.points]


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """One face found by a :class:`~countenance.ports.Detector`, before alignment.

    ``score`` is the detector's own confidence; ``detector`` names which one found it.
    """

    box: Box
    score: float
    detector: str
    landmarks: Landmarks5 | None = None


class Metric(enum.StrEnum):
    """How two vectors of one space are compared."""

    COSINE = "cosine"


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    """The space a vector lives in. Vectors of two different spaces are never compared.

    Example: ``EmbeddingSpace("dlib_resnet_v1", "1", 128, Metric.COSINE)``.
    """

    model: str
    version: str
    dim: int
    metric: Metric = Metric.COSINE

    @property
    def key(self) -> str:
        """A file-name-safe identifier, e.g. ``dlib_resnet_v1-1-128-cosine``."""
        return f"{self.model}-{self.version}-{self.dim}-{self.metric.value}"


class Band(enum.StrEnum):
    """How strong a lead is, from the model's stated false-match rates (see scoring)."""

    STRONG = "strong"
    POSSIBLE = "possible"
    WEAK = "weak"


@dataclass(frozen=True, slots=True)
class Quality:
    """Quality of one face: ``score`` in [0, 1]; ``skip_reason`` set when below the minimum."""

    score: float
    size_px: int
    sharpness: float
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a photo came from: ``uri`` (a path or URL) and optional ``page_url``.

    A source may also state, per photo, where it was taken (``jurisdiction``, an ISO 3166
    code that overrides EXIF GPS and the source's own) and that it shows ``minors``, and the
    photo's own ``licence``, ``consent_ref`` and ``taken_at`` (ISO 8601), stored with it.

    Example: ``Provenance("https://example.org/a.jpg", page_url="https://example.org/a")``.
    """

    uri: str
    page_url: str | None = None
    jurisdiction: str | None = None
    minors: bool = False
    licence: str | None = None
    consent_ref: str | None = None
    taken_at: str | None = None


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A declared source of photos and the lawful basis the operator states for it."""

    name: str
    lawful_basis: str
    kind: str = "folder"
    jurisdiction: str | None = None
    consent_ref: str | None = None
    licence: str | None = None
    retention_days: int | None = None
    created_at: str | None = None
    retired_at: str | None = None
    minors: bool = False
    id: int | None = None
    photos: int = 0
    faces: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """One lead: a stored face similar to a probe face. A lead, never a verdict."""

    face_id: int
    similarity: float
    band: Band | None
    photo: str
    source: str
    box: Box
    photo_id: int = 0
    page_url: str | None = None  # the page the photo was found on, when a source said
    uri: str = ""  # the photo itself (path or URL); ``photo`` is page_url or else this
    also_at: tuple[str, ...] = ()  # where near-duplicates of the photo were found

    def to_json(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "similarity": round(self.similarity, 4),
            "band": self.band.value if self.band else None,
            "photo": self.photo,
            "page_url": self.page_url,
            "uri": self.uri,
            "also_at": list(self.also_at),
            "source": self.source,
            "box": self.box.as_list(),
        }


@dataclass(frozen=True, slots=True)
class ProbeFace:
    """One face of a probe photo and its best matches, most similar first."""

    box: Box
    quality: float
    matches: tuple[Match, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"box": self.box.as_list(), "matches": [m.to_json() for m in self.matches]}


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The answer to one probe photo: one :class:`ProbeFace` per face found in it."""

    faces: tuple[ProbeFace, ...]
    probe_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"faces": [f.to_json() for f in self.faces]}


@dataclass(frozen=True, slots=True)
class Verification:
    """Whether two photos show the same person: similarity of their largest faces."""

    same: bool
    similarity: float
    band: Band | None
    box_a: Box
    box_b: Box

    def to_json(self) -> dict[str, Any]:
        return {
            "same": self.same,
            "similarity": round(self.similarity, 4),
            "band": self.band.value if self.band else None,
            "a": {"box": self.box_a.as_list()},
            "b": {"box": self.box_b.as_list()},
        }


@dataclass(slots=True)
class IngestSummary:
    """What an ingest did: counts of photos and faces, and why anything was skipped."""

    source: str
    seen: int = 0
    photos: int = 0
    faces: int = 0
    unchanged: int = 0
    duplicates: int = 0
    near_duplicates: int = 0  # stored as links to a stored photo, not embedded again
    excluded: int = 0
    suppressed: int = 0
    minors: int = 0
    skipped_faces: dict[str, int] = field(default_factory=dict)
    bad_files: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "seen": self.seen,
            "photos": self.photos,
            "faces": self.faces,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "near_duplicates": self.near_duplicates,
            "excluded": self.excluded,
            "suppressed": self.suppressed,
            "minors": self.minors,
            "skipped_faces": dict(sorted(self.skipped_faces.items())),
            "bad_files": dict(sorted(self.bad_files.items())),
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Status:
    """Counts across the store, and the index kind and embedding space in use."""

    sources: int
    photos: int
    faces: int
    indexed: int
    skipped: int
    index: str
    space: EmbeddingSpace
    duplicates: int = 0  # photos stored as near-duplicates of another photo

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "photos": self.photos,
            "faces": self.faces,
            "indexed": self.indexed,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "index": self.index,
            "space": {
                "model": self.space.model,
                "version": self.space.version,
                "dim": self.space.dim,
                "metric": self.space.metric.value,
            },
        }
