"""Plain, frozen data that crosses module boundaries.

Boxes are in pixels of the original (EXIF-oriented) image, ``x2``/``y2`` exclusive.
Similarity is cosine in [-1, 1] between L2-normalised embeddings.

Example::

    box = Box(10, 20, 110, 140)
    assert box.width == 100 and box.area == 12_000
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any

from countenance.errors import InvalidArgument


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
    """Five facial landmarks in original-image pixels, in the order of ``scheme``:

    - ``dlib5`` (dlib's 5-point model): right eye outer, right eye inner, left eye outer,
      left eye inner, nose base (right/left of the person in the photo);
    - ``arcface5`` (the ArcFace alignment template): eye centre, eye centre, nose tip, mouth
      corner, mouth corner, each pair in image order (smaller x first).

    An embedder aligns by the scheme it was trained on; the pipeline pairs them.
    """

    points: tuple[Point, Point, Point, Point, Point]
    scheme: str = "dlib5"

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


class Band(enum.StrEnum):
    """How strong a lead is, from the model's stated false-match rates (see :class:`Bands`)."""

    STRONG = "strong"
    POSSIBLE = "possible"
    WEAK = "weak"


BAND_FMRS = (("weak", 1e-2), ("possible", 1e-3), ("erase", 1e-4), ("strong", 1e-5))
"""Each band edge of :class:`Bands` and the false-match rate it is calibrated at."""


@dataclass(frozen=True, slots=True)
class Bands:
    """Similarity bands of one space, from the false-match rates its model shows on strangers.

    A band's lower edge is the cosine similarity that pairs of photos of *different* people
    exceed at a stated false-match rate (FMR), measured once per space on all impostor pairs
    of LFW (``benchmarks/calibrate_bands.py``). They are fixed by rule, never tuned:

    =========  ======================  ===========================================
    band       FMR of its lower edge   meaning
    =========  ======================  ===========================================
    strong     1 in 100,000            a lead worth acting on after human review
    possible   1 in 1,000              a lead to check
    weak       1 in 100                expect strangers among these
    =========  ======================  ===========================================

    ``erase`` is the edge at FMR 1 in 10,000: erasure by photo removes the faces the person's
    photo matches that well, so that strangers stay untouched.

    Example::

        bands.band(0.97)                               # Band.STRONG
        bands.expected_false_leads(0.93, 1_000_000)    # strangers expected at or above 0.93
    """

    strong: float
    possible: float
    weak: float
    erase: float = 1.0

    def band(self, similarity: float) -> Band | None:
        """The band of ``similarity``, or None below the weak band."""
        if similarity >= self.strong:
            return Band.STRONG
        if similarity >= self.possible:
            return Band.POSSIBLE
        if similarity >= self.weak:
            return Band.WEAK
        return None

    @property
    def same_person(self) -> float:
        """The threshold ``verify`` uses to call two faces one person: FMR 1 in 1,000."""
        return self.possible

    def false_match_rate(self, similarity: float) -> float:
        """The fraction of strangers' faces expected to score ``similarity`` or more.

        Log-linear between the four calibrated edges (FMR 1e-2 ... 1e-5), and along the
        nearest segment's slope beyond them (an extrapolation, capped to [1e-12, 1]).
        """
        edges = sorted((getattr(self, name), math.log10(rate)) for name, rate in BAND_FMRS)
        i = sum(1 for x, _ in edges[1:-1] if similarity >= x)  # the segment, or the end one
        (x0, y0), (x1, y1) = edges[i], edges[i + 1]
        slope = (y1 - y0) / (x1 - x0) if x1 > x0 else 0.0
        return float(min(1.0, max(1e-12, 10 ** (y0 + slope * (similarity - x0)))))

    def similarity_at(self, fmr: float) -> float:
        """The similarity strangers exceed at false-match rate ``fmr``: the inverse of
        :meth:`false_match_rate`, on the same log-linear segments."""
        edges = sorted((math.log10(rate), getattr(self, name)) for name, rate in BAND_FMRS)
        y = math.log10(min(1.0, max(1e-12, fmr)))
        i = sum(1 for x, _ in edges[1:-1] if y >= x)
        (x0, s0), (x1, s1) = edges[i], edges[i + 1]
        return float(s0 + (s1 - s0) * (y - x0) / (x1 - x0))

    def expected_false_leads(self, similarity: float, gallery_size: int) -> float:
        """How many strangers a search of ``gallery_size`` faces is expected to return at
        ``similarity`` or above: each face of the gallery is one impostor comparison, so
        ``gallery_size x FMR(similarity)``. A lead whose figure is near 1 or more stands
        among strangers; one far below 1 is unlikely to be chance."""
        return gallery_size * self.false_match_rate(similarity)


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    """The space a vector lives in. Vectors of two different spaces are never compared.

    ``bands`` are the space's own calibrated similarity bands (from the model registry); they
    take no part in a space's identity.

    Example: ``EmbeddingSpace("dlib_resnet_v1", "1", 128, Metric.COSINE)``.
    """

    model: str
    version: str
    dim: int
    metric: Metric = Metric.COSINE
    bands: Bands | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        """A file-name-safe identifier, e.g. ``dlib_resnet_v1-1-128-cosine``."""
        return f"{self.model}-{self.version}-{self.dim}-{self.metric.value}"


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


SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_RETENTION_DAYS = 36_500  # a hundred years: longer is a mistake, and overflows dates


def source_name(name: object) -> str:
    """A source's name as the catalog, the CLI, the API and the UI's URLs accept it: 1 to 100
    ASCII letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit (so no
    ``/``, no ``..``, no blanks, nothing that reads like another name). Raises
    InvalidArgument otherwise.

    Example: ``source_name("press-2024")`` is ``"press-2024"``; ``source_name("../x")`` raises.
    """
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name) or ".." in name:
        raise InvalidArgument(
            f"a source name is 1 to 100 letters, digits, '.', '_' or '-', starting with a"
            f" letter or digit (no '/', no '..'), not {name!r}"
        )
    return name


def retention_days(days: object) -> int | None:
    """A retention in days: None (keep), or 1 to ``MAX_RETENTION_DAYS``."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS:
        raise InvalidArgument(
            f"retention_days must be a whole number of days from 1 to {MAX_RETENTION_DAYS:,}"
        )
    return days


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
    adults_only: bool = False  # declared to hold no minors: faces are not age-estimated
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
    # strangers a search of this gallery is expected to return at this similarity or above
    expected_false_leads: float | None = None
    person: int | None = None  # the person the face belongs to, None: unassigned

    def to_json(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "person": self.person,
            "similarity": round(self.similarity, 4),
            "band": self.band.value if self.band else None,
            "expected_false_leads": _sig(self.expected_false_leads),
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
    persons: tuple[PersonLead, ...] = ()  # the matches grouped by person, best first

    def to_json(self) -> dict[str, Any]:
        return {
            "box": self.box.as_list(),
            "matches": [m.to_json() for m in self.matches],
            "persons": [p.to_json() for p in self.persons],
        }


@dataclass(frozen=True, slots=True)
class PersonLead:
    """The matches of one probe face that belong to one person, with what is known of the
    person: how many faces and photos it has, from which sources, first and last seen."""

    person: int
    name: str | None
    similarity: float  # the best of the matched faces
    matched: tuple[int, ...]  # ids of the person's faces that matched, best first
    faces: int
    photos: int
    sources: tuple[str, ...]
    first_seen: str | None  # ISO 8601: when its first photo was ingested
    last_seen: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "name": self.name,
            "similarity": round(self.similarity, 4),
            "matched": list(self.matched),
            "faces": self.faces,
            "photos": self.photos,
            "sources": list(self.sources),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The answer to one probe photo: one :class:`ProbeFace` per face found in it."""

    faces: tuple[ProbeFace, ...]
    probe_sha256: str = ""
    gallery_faces: int = 0  # faces searched
    min_similarity: float = 0.0  # the floor this search applied (it rises with the gallery)

    def to_json(self) -> dict[str, Any]:
        return {
            "gallery_faces": self.gallery_faces,
            "min_similarity": round(self.min_similarity, 4),
            "faces": [f.to_json() for f in self.faces],
        }


def _sig(value: float | None) -> float | None:
    """Three significant figures: an expectation, not a measurement."""
    return None if value is None else float(f"{value:.3g}")


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
    persons: int = 0  # new persons the stored faces formed
    alerts: int = 0  # faces that matched a live watch
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
            "persons": self.persons,
            "alerts": self.alerts,
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
