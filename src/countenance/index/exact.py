"""The reference vector index: brute-force inner products in numpy.

Exact by construction, so the contract suite measures every other backend against it, and unit
tests use it as the fake index. It keeps nothing on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from countenance.index import check_add, check_ids, check_queries, empty_hits
from countenance.ports import Ids, Vectors
from countenance.types import EmbeddingSpace

# Bounds the [Q, N] similarity matrix of one search step (in float32 cells, ~256 MiB).
_MAX_CELLS = 64 * 1024 * 1024


class ExactIndex:
    """Exact nearest neighbours of one space, held in memory as a matrix and an id array.

    Adding an id that is already present replaces its vector, so ids stay unique.

    Example::

        index = ExactIndex(space)
        index.add(np.array([7, 8]), vectors)       # float32[2, space.dim], unit rows
        sims, ids = index.search(vectors[:1], k=3)  # ids[0] == [7, 8, -1]
    """

    def __init__(self, space: EmbeddingSpace, directory: Path | None = None, **_: Any) -> None:
        # ``directory`` and options are accepted so that open_index can build any backend alike.
        self.space = space
        self._ids: Ids = np.zeros(0, dtype=np.int64)
        self._vectors: Vectors = np.zeros((0, space.dim), dtype=np.float32)

    @property
    def kind(self) -> str:
        return "exact"

    def count(self) -> int:
        return len(self._ids)

    def ids(self) -> Ids:
        return self._ids.copy()

    def add(self, ids: Ids, vectors: Vectors) -> None:
        ids, vectors = check_add(self.space, ids, vectors)
        if len(ids) == 0:
            return
        keep = ~np.isin(self._ids, ids)
        self._ids = np.concatenate([self._ids[keep], ids])
        self._vectors = np.concatenate([self._vectors[keep], vectors])

    def remove(self, ids: Ids) -> int:
        ids = check_ids(ids)
        if len(ids) == 0 or self.count() == 0:
            return 0
        gone = np.isin(self._ids, ids)
        removed = int(gone.sum())
        if removed:
            self._ids = self._ids[~gone]
            self._vectors = self._vectors[~gone]
        return removed

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        queries = check_queries(self.space, queries, k)
        return self._search(queries, int(k))

    def _search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        sims, ids = empty_hits(len(queries), k)
        n = self.count()
        if n == 0:
            return sims, ids
        top = min(k, n)
        step = max(1, _MAX_CELLS // n)
        for start in range(0, len(queries), step):
            block = queries[start : start + step] @ self._vectors.T  # [q, n]
            if top < n:
                cand = np.argpartition(-block, top - 1, axis=1)[:, :top]
            else:
                cand = np.broadcast_to(np.arange(n), block.shape)
            cand_sims = np.take_along_axis(block, cand, axis=1)
            # Stable sort: equal similarities keep insertion order, which is deterministic.
            order = np.argsort(-cand_sims, axis=1, kind="stable")
            rows = slice(start, start + len(block))
            sims[rows, :top] = np.take_along_axis(cand_sims, order, axis=1)
            ids[rows, :top] = self._ids[np.take_along_axis(cand, order, axis=1)]
        return sims, ids
