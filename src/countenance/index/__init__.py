"""Vector indexes: backends by name, imported lazily, and the checks every backend shares.

Each backend implements :class:`~countenance.ports.VectorIndex` over int64 face ids (catalog
row ids) of one :class:`~countenance.types.EmbeddingSpace`. Similarity is the inner product of
L2-normalised float32 vectors, i.e. cosine in [-1, 1]. A search result is ``(sims, ids)``, each
``[Q, k]`` and best first; a slot with no neighbour holds id ``-1`` and similarity ``-inf``.

Example::

    index = open_index("faiss", space, Path("data/index"))
    index.add(np.array([7, 8]), vectors)
    sims, ids = index.search(vectors[:1], k=5)   # ids[0, 0] == 7, sims[0, 0] ~= 1.0
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from countenance.errors import BackendUnavailable, InvalidArgument, SpaceMismatch
from countenance.ports import Ids, VectorIndex, Vectors
from countenance.types import EmbeddingSpace

__all__ = [
    "EMPTY_ID",
    "EMPTY_SIM",
    "INDEXES",
    "check_add",
    "check_ids",
    "check_queries",
    "empty_hits",
    "open_index",
]

INDEXES: dict[str, str] = {
    "exact": "countenance.index.exact:ExactIndex",
    "faiss": "countenance.index.faiss:FaissIndex",
    "milvus": "countenance.index.milvus:MilvusIndex",
}

# How to get a backend's package when it is missing. faiss-cpu is a core dependency, so it has
# no extra of its own; every other backend is named after its extra.
_INSTALL: dict[str, str] = {"faiss": "pip install faiss-cpu"}

EMPTY_ID = -1
"""The id of a result slot with no neighbour (fewer stored vectors than ``k``)."""

EMPTY_SIM = np.float32(-np.inf)
"""The similarity of a result slot with no neighbour: below every real cosine."""


def open_index(
    backend: str, space: EmbeddingSpace, directory: Path | None = None, **options: Any
) -> VectorIndex:
    """The index named ``backend`` for ``space``, kept under ``directory`` if it persists.

    ``options`` go to the backend's constructor (e.g. ``approx_threshold`` for FAISS).
    Raises :class:`InvalidArgument` for an unknown name and :class:`BackendUnavailable` when
    the backend's package is not installed.

    Example: ``open_index("exact", space)``.
    """
    target = INDEXES.get(backend)
    if target is None:
        known = ", ".join(sorted(INDEXES))
        raise InvalidArgument(f"unknown index backend {backend!r}; choose one of: {known}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # A missing module of our own is a bug, not a missing optional dependency.
        if exc.name is None or exc.name.split(".")[0] == "countenance":
            raise
        hint = _INSTALL.get(backend, f"pip install 'countenance[{backend}]'")
        raise BackendUnavailable(
            f"index backend {backend!r} needs the package {exc.name!r}: {hint}"
        ) from exc
    cls = getattr(module, class_name)
    index: VectorIndex = cls(space, directory, **options)
    return index


def check_ids(ids: Any) -> Ids:
    """``ids`` as a 1-D int64 array; raises :class:`InvalidArgument` otherwise."""
    arr = np.asarray(ids)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgument(f"ids must be a 1-D integer array, got {arr.dtype}{list(arr.shape)}")
    return arr.astype(np.int64, copy=False)


def check_add(space: EmbeddingSpace, ids: Any, vectors: Any) -> tuple[Ids, Vectors]:
    """Validated ``(ids, vectors)`` for an add: int64[N] and C-contiguous float32[N, D].

    Ids must be unique and >= 0 (-1 marks an empty result slot); vectors must be finite and
    of the space's dimension (else :class:`SpaceMismatch`).
    """
    ids = check_ids(ids)
    vectors = _check_matrix(space, vectors, "vectors")
    if len(ids) != len(vectors):
        raise InvalidArgument(f"{len(ids)} ids for {len(vectors)} vectors")
    if len(ids) == 0:
        return ids, vectors
    if ids.min() < 0:
        raise InvalidArgument("ids must be >= 0")
    if len(np.unique(ids)) != len(ids):
        raise InvalidArgument("ids must be unique within one add")
    if not np.isfinite(vectors).all():
        raise InvalidArgument("vectors must be finite")
    return ids, vectors


def check_queries(space: EmbeddingSpace, queries: Any, k: int) -> Vectors:
    """Validated queries, C-contiguous float32[Q, D]; ``k`` must be a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidArgument(f"k must be an integer >= 1, got {k!r}")
    return _check_matrix(space, queries, "queries")


def empty_hits(n_queries: int, k: int) -> tuple[Vectors, Ids]:
    """``(sims, ids)`` of shape [Q, k] with every slot empty."""
    sims = np.full((n_queries, k), EMPTY_SIM, dtype=np.float32)
    ids = np.full((n_queries, k), EMPTY_ID, dtype=np.int64)
    return sims, ids


def _check_matrix(space: EmbeddingSpace, values: Any, what: str) -> Vectors:
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise InvalidArgument(f"{what} must be 2-D [N, {space.dim}], got shape {list(arr.shape)}")
    if arr.shape[1] != space.dim:
        raise SpaceMismatch(
            f"{what} have dimension {arr.shape[1]}, the space {space.key} has {space.dim}"
        )
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidArgument(f"{what} must be numeric, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
