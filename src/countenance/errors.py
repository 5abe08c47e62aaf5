"""One error tree for the whole engine.

Every error countenance raises on purpose derives from :class:`CountenanceError`, so a caller
can catch that one class. The edges translate it once: the CLI prints the message and exits
1; the server answers ``{"error": {"code": ..., "message": ...}}`` with a fitting status code.

::

    CountenanceError
    ├── BadImage              a file that cannot be decoded, is too large, or is not an image
    │   └── FetchRefused         a URL or archive entry that must not or could not be fetched
    ├── NotModified           an item unchanged since its last fetch (HTTP 304): nothing to do
    ├── NoFaceFound           a probe with no usable face in it
    ├── PolicyDenied          governance refused the operation (no lawful basis, ...)
    │   └── RateLimited          too many requests or searches in the last minute
    ├── SpaceMismatch         embeddings from two different EmbeddingSpaces met
    ├── NotFound              a named source, photo or face does not exist
    ├── InvalidArgument       a value outside what the operation accepts
    ├── BackendError          a storage backend failed (catalog, vector index)
    │   └── BackendUnavailable   an optional backend's package is not installed
    └── IndexOutOfSync        the vector index and the catalog disagree beyond repair

Example::

    try:
        db.search("probe.jpg")
    except countenance.NoFaceFound as exc:
        print(exc)
"""

from __future__ import annotations


class CountenanceError(Exception):
    """Base of every error countenance raises on purpose; ``code`` names it on the wire."""

    code = "error"


class BadImage(CountenanceError):
    """A file that cannot be used as an image; the message says why.

    ``reason`` is a short machine-readable tag (``corrupt``, ``truncated``, ``too_large``, ...).
    """

    code = "bad_image"

    def __init__(self, message: str, reason: str = "corrupt") -> None:
        super().__init__(message)
        self.reason = reason


class FetchRefused(BadImage):
    """A photo that was not collected: a private address, robots.txt, an HTTP error, a lying
    or oversized response, an unsafe archive entry. ``reason`` says which; the batch goes on.

    Example: ``FetchRefused("http://10.0.0.5/a.jpg: private address", reason="private_address")``.
    """

    code = "fetch_refused"


class NotModified(CountenanceError):
    """The photo at a URL has not changed since it was stored (the server answered 304 to a
    conditional request); ingest counts it as unchanged."""

    code = "not_modified"


class NoFaceFound(CountenanceError):
    """The probe photo holds no face that passes detection and quality checks."""

    code = "no_face_found"


class PolicyDenied(CountenanceError):
    """Governance refused the operation, e.g. a source without a lawful basis."""

    code = "policy_denied"


class RateLimited(PolicyDenied):
    """An actor or API key went past its rate limit; it may try again later."""

    code = "rate_limited"


class SpaceMismatch(CountenanceError):
    """Two embeddings from different EmbeddingSpaces were about to be compared."""

    code = "space_mismatch"


class NotFound(CountenanceError):
    """A named source, photo or face does not exist."""

    code = "not_found"


class InvalidArgument(CountenanceError, ValueError):
    """An argument outside what the operation accepts."""

    code = "invalid_argument"


class BackendError(CountenanceError):
    """A storage backend (catalog or vector index) failed."""

    code = "backend_error"


class BackendUnavailable(BackendError):
    """An optional backend was selected but its package is not installed.

    The message says what to install, e.g. ``pip install 'countenance[milvus]'``.
    """

    code = "backend_unavailable"


class IndexOutOfSync(BackendError):
    """The vector index and the catalog disagree and the index could not be repaired."""

    code = "index_out_of_sync"


class WriterBusy(BackendError):
    """Another process holds the store's writer lock."""

    code = "writer_busy"


class ModelMissing(BackendUnavailable):
    """A model file is not installed, or does not match its pinned sha256."""

    code = "model_missing"
