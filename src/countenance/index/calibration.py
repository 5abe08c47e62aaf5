"""How a layout is tuned: held-out gallery faces as probes, their exact neighbours, and the
search for the smallest breadth that reaches a target recall.

:class:`Gallery` reads ids and vectors from RAM or a :class:`~countenance.index.vectorfile.
VectorFile` in chunks (a gallery may be larger than RAM); :class:`Calibration` holds probes out
of the index and knows their true neighbours among the rest; :func:`tune` and
:func:`smallest` bisect a breadth (efSearch, nprobe) that recall grows with.

Example::

    calibration = Calibration(Gallery(ids, vectors), queries=1_000)
    with calibration.hold_out(layout):       # the probes leave the index meanwhile
        layout.tune(calibration, 0.99)       # e.g. IvfPqLayout: tune(nprobe, ...) inside
        calibration.recall(lambda q, k: layout.search(q, k)[1])  # recall@10, probes still out
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import faiss
import numpy as np

from countenance.index.vectorfile import VectorFile
from countenance.ports import Ids, Vectors

# Probes to tune with (by default; each layout says how many it can afford), for recall of
# this many neighbours.
CALIBRATION_QUERIES = 200
CALIBRATION_K = 10
_STRANGER_HIDES = 8  # a stranger probe's nearest faces held out with it (its other photos)
SEED = 20240601  # the same gallery always yields the same lists, codes, probes and parameters
READ_CHUNK = 1 << 18  # vectors per chunk when a gallery or a layout's contents are read


class Editable(Protocol):
    """A layout the probes can be taken out of and put back into."""

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> int: ...


class Gallery:
    """Ids and their vectors, from an array (in RAM or memory-mapped) or a VectorFile, read
    in chunks so that a gallery larger than RAM can be indexed."""

    def __init__(self, ids: Ids, vectors: Vectors | VectorFile) -> None:
        self.ids = ids
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: Ids) -> Vectors:
        """The vectors at positions ``rows`` (sorted positions read fastest)."""
        if isinstance(self.vectors, VectorFile):
            return self.vectors.read(self.ids[rows])
        return np.ascontiguousarray(self.vectors[rows], dtype=np.float32)

    def chunks(self) -> Iterator[tuple[Ids, Vectors]]:
        for start in range(0, len(self.ids), READ_CHUNK):
            stop = min(start + READ_CHUNK, len(self.ids))
            yield self.ids[start:stop], self.take(np.arange(start, stop))

    def sample(self, size: int, seed: int) -> Vectors:
        """A seeded sample of ``size`` vectors (all of them when there are fewer).

        A vector file is read in order, chunk by chunk: picking scattered rows of a file
        larger than RAM would cost a disk seek per row (10^6 rows of a 10^8-face gallery: a
        quarter of an hour here, against a minute to stream all of it).
        """
        size = min(size, len(self.ids))
        rows = np.sort(np.random.default_rng(seed).choice(len(self.ids), size=size, replace=False))
        if not isinstance(self.vectors, VectorFile):
            return self.take(rows)
        parts = [np.zeros((0, self.vectors.dim), dtype=np.float32)]
        for start in range(0, len(self.ids), READ_CHUNK):
            stop = min(start + READ_CHUNK, len(self.ids))
            picked = rows[np.searchsorted(rows, start) : np.searchsorted(rows, stop)]
            if len(picked):
                parts.append(self.take(np.arange(start, stop))[picked - start])
        return np.concatenate(parts)


class Calibration:
    """Held-out gallery faces as probes, and their exact neighbours among the rest.

    A face that is itself in the index is found too easily (an HNSW walk ends on it, an IVF
    list holds it), which flatters recall; real probes are new photos. So the probes are
    taken out of the index while it is tuned (:meth:`held`, :meth:`hold_out`) and their
    neighbours are sought among the other faces only. Searches are also made for people the
    gallery does not hold, whose neighbours are all strangers and harder to find: half the
    probes stand for them, by holding out their ``_STRANGER_HIDES`` nearest faces as well
    (their likely other photos: ``hidden_ids``).

    A graph's tuning keeps the hidden faces in the graph and leaves them out of results
    (``held(hidden=False)``; :class:`~countenance.index.faiss_layouts.HnswLayout`). Eight
    nearest faces are more than a person's own photos (in the benchmark's gallery a person
    has 4 to 8), so taking them out of the graph left a stranger probe in a hole that a
    newcomer's photo does not meet, with the nodes that lead to its nearest strangers gone:
    at 10^6 faces the tuning chose efSearch 256, where the benchmark's new faces reached 0.99
    at 192. Kept as nodes a walk may pass, the probes read 0.9863 at 192 and 0.9901 at 224
    where the benchmark's queries got 0.9880 and 0.9927 on the same graph (docs/scaling.md).
    The probes themselves stay out: a walk aimed at a face in the graph ends on it, and its
    links are its neighbours.

    Recall is estimated from ``queries`` probes of ``CALIBRATION_K`` neighbours each: with
    200 its standard error near 0.99 is ~0.002, enough to pick efSearch 320 or 384 by
    chance (measured on one 10^6-face graph, held faces filtered out of results: 0.990 to
    0.9945 at 320 over four draws of 200; 0.9926 with 1,000 and with 2,000), so layouts that
    can afford it ask for more.
    """

    def __init__(self, gallery: Gallery, queries: int = CALIBRATION_QUERIES) -> None:
        rng = np.random.default_rng(SEED + 1)
        n = len(gallery)
        count = min(queries, n // (2 * (_STRANGER_HIDES + 1)))
        rows = np.sort(rng.choice(n, size=count, replace=False))
        self.queries = gallery.take(rows)
        self.own = gallery.ids[rows]
        # the second half become strangers: their nearest faces leave the gallery too
        strangers = self.queries[count // 2 :]
        _, near = _exact(gallery, strangers, _STRANGER_HIDES, exclude=self.own)
        hidden_rows = np.unique(near[near >= 0])
        self.hidden_ids = gallery.ids[hidden_rows]
        self._hidden_vectors = gallery.take(hidden_rows)
        self.k = min(CALIBRATION_K, n - count - len(hidden_rows))
        self.truth: list[set[int]] = []
        if self.k >= 1 and count:
            _, truth_rows = _exact(gallery, self.queries, self.k, exclude=self.held()[0])
            self.truth = [{int(gallery.ids[r]) for r in row if r >= 0} for row in truth_rows]

    def held(self, hidden: bool = True) -> tuple[Ids, Vectors]:
        """The faces the index must not hold while it is tuned: the probes, and the hidden
        unless the layout filters them out of its results itself (``hidden`` false)."""
        if not hidden:
            return self.own, self.queries
        ids = np.concatenate([self.own, self.hidden_ids])
        return ids, np.concatenate([self.queries, self._hidden_vectors])

    @contextlib.contextmanager
    def hold_out(self, layout: Editable, hidden: bool = True) -> Iterator[None]:
        """Take the held faces (see :meth:`held`) out of ``layout`` for the block."""
        ids, vectors = self.held(hidden)
        layout.remove(ids)
        try:
            yield
        finally:
            if len(ids):
                layout.add(ids, vectors)

    def recall(self, search: Callable[[Vectors, int], Ids]) -> float:
        """recall@k of ``search`` (queries, k) -> ids against the exact neighbours."""
        if not self.truth:
            return 1.0
        return self.found_share(search(self.queries, self.k))

    def found_share(self, found: Ids) -> float:
        """The share of the exact neighbours that rows of ``found`` (one per probe, any
        width) hold."""
        if not self.truth:
            return 1.0
        hits = sum(
            len(want & set(row.tolist())) for want, row in zip(self.truth, found, strict=True)
        )
        return hits / sum(len(want) for want in self.truth)


def _exact(gallery: Gallery, queries: Vectors, k: int, exclude: Ids) -> tuple[Vectors, Ids]:
    """Exact top ``k`` (similarities, gallery positions) of ``queries``, streaming the
    gallery in chunks and leaving out the faces of ``exclude``."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    start = 0
    for ids, block in gallery.chunks():
        positions = np.arange(start, start + len(ids))
        start += len(ids)
        keep = ~np.isin(ids, exclude)
        if not keep.any() or len(queries) == 0:
            continue
        block = np.ascontiguousarray(block[keep])
        sims, at = faiss.knn(queries, block, min(k, len(block)), faiss.METRIC_INNER_PRODUCT)
        kept = positions[keep]
        found = np.where(at >= 0, kept[np.maximum(at, 0)], -1)
        if found.shape[1] < k:  # a chunk smaller than k: pad with empty slots
            pad = k - found.shape[1]
            found = np.pad(found, ((0, 0), (0, pad)), constant_values=-1)
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
        heap.add_result(np.ascontiguousarray(sims, dtype=np.float32), found)
    heap.finalize()
    return heap.D, heap.I


def tune(
    values: Sequence[int],
    apply: Callable[[int], None],
    search: Callable[[Vectors, int], Ids],
    calibration: Calibration,
    target_recall: float,
) -> int:
    """Apply and return the smallest of ``values`` (ascending) whose recall reaches
    ``target_recall``; the largest when none does (the most the layout can give)."""

    def enough(value: int) -> bool:
        apply(value)
        return calibration.recall(search) >= target_recall

    value = smallest(values, enough)
    apply(value)
    return value


def smallest(values: Sequence[int], enough: Callable[[int], bool]) -> int:
    """The smallest of ``values`` (ascending) that is ``enough``, the last when none is.

    Recall grows with breadth, so the values are bisected: ~log2(len(values)) evaluations,
    not one per value (an IVF index of 16,384 lists has 29 nprobe steps).
    """
    low, high = 0, len(values) - 1  # values[high] is enough, or is the last
    while low < high:
        middle = (low + high) // 2
        if enough(values[middle]):
            high = middle
        else:
            low = middle + 1
    return values[high]
