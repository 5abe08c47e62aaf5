"""countenance: lawful face search.

Index every face in photo sources you declare (each with a lawful basis) and find where a
person appears, from a probe photo.

Example::

    import countenance
    db = countenance.open("countenance-data")
    db.add_source("family", basis="consent")
    db.ingest("photos/", source="family")
    hits = db.search("probe.jpg", actor="alice", purpose="missing person", case="17")

Nothing is loaded at import: models load on the first ingest or search.
"""

from countenance.config import Settings
from countenance.engine import Engine, open
from countenance.errors import (
    BackendError,
    BackendUnavailable,
    BadImage,
    CountenanceError,
    IndexOutOfSync,
    InvalidArgument,
    NoFaceFound,
    NotFound,
    PolicyDenied,
    SpaceMismatch,
)
from countenance.sources.folder import FolderSource
from countenance.types import (
    Band,
    Box,
    DetectedFace,
    EmbeddingSpace,
    IngestSummary,
    Landmarks5,
    Match,
    Metric,
    ProbeFace,
    Provenance,
    SearchResult,
    SourceInfo,
    Status,
    Verification,
)

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "BadImage",
    "Band",
    "Box",
    "CountenanceError",
    "DetectedFace",
    "EmbeddingSpace",
    "Engine",
    "FolderSource",
    "IndexOutOfSync",
    "IngestSummary",
    "InvalidArgument",
    "Landmarks5",
    "Match",
    "Metric",
    "NoFaceFound",
    "NotFound",
    "PolicyDenied",
    "ProbeFace",
    "Provenance",
    "SearchResult",
    "Settings",
    "SourceInfo",
    "SpaceMismatch",
    "Status",
    "Verification",
    "open",
]
