"""The embedded default vector index: FAISS, exact while small, IVF once the gallery grows.

Up to ``approx_threshold`` vectors the index is ``IndexIDMap2(IndexFlatIP)``: exact, and as fast
as anything at that size. The first ``add`` that takes it past the threshold rebuilds it as
``IndexIVFFlat`` with about ``4 * sqrt(n)`` lists, and sets ``nprobe`` to the smallest power of
two that reaches ``target_recall`` (recall@10 against exact search on a sample of the gallery).
Each time the gallery has grown about fourfold since, an ``add`` retrains it (more lists, nprobe
tuned again), so lists and nprobe keep fitting the data at an amortised cost; that ``add``
briefly holds a second copy of the vectors. The index stays IVF whatever is removed;
:meth:`FaissIndex.rebuild` chooses afresh.

On disk it is one file, ``<directory>/<space.key>.faiss``, replaced atomically by :meth:`save`.
FAISS writes ``nprobe`` into the IVF file itself, so no side file is needed.

The index is not safe for concurrent writes; the engine serialises them.
"""

from __future__ import annotations

import glob
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from countenance.errors import BackendError, InvalidArgument, SpaceMismatch
from countenance.index import EMPTY_ID, EMPTY_SIM, check_add, check_ids, check_queries, empty_hits
from countenance.ports import Ids, Vectors
from countenance.types import EmbeddingSpace

# k-means wants at least this many training points per list (FAISS warns below it), and gains
# nothing from more than _MAX_TRAIN_PER_LIST (FAISS would subsample to that itself).
_MIN_TRAIN_PER_LIST = 39
_MAX_TRAIN_PER_LIST = 256
# nprobe is tuned on this many gallery vectors as queries, for recall of this many neighbours.
_CALIBRATION_QUERIES = 200
_CALIBRATION_K = 10
# Fixed seeds: the same gallery always yields the same lists and the same nprobe.
_SEED = 20240601


class FaissIndex:
    """FAISS index of one space over int64 face ids; persistent when given a directory.

    Adding an id that is already present replaces its vector. ``remove`` is visible to the very
    next search. Nothing is written until :meth:`save`; without a directory ``save`` does
    nothing.

    Example::

        index = FaissIndex(space, Path("data/index"))   # loads data/index/<space.key>.faiss
        index.add(np.array([7, 8]), vectors)             # float32[2, space.dim], unit rows
        sims, ids = index.search(vectors[:1], k=5)       # ids[0, :3] == [7, 8, -1]
        index.save()
    """

    def __init__(
        self,
        space: EmbeddingSpace,
        directory: Path | None = None,
        *,
        approx_threshold: int = 200_000,
        target_recall: float = 0.99,
        **_: Any,
    ) -> None:
        if approx_threshold < 0:
            raise InvalidArgument(f"approx_threshold must be >= 0, got {approx_threshold}")
        if not 0.0 < target_recall <= 1.0:
            raise InvalidArgument(f"target_recall must be in (0, 1], got {target_recall}")
        self.space = space
        self.approx_threshold = approx_threshold
        self.target_recall = target_recall
        self._path = None if directory is None else Path(directory) / f"{space.key}.faiss"
        if self._path is not None and self._path.exists():
            self._index = self._load(self._path)
        else:
            self._index = self._new_flat()

    # -- what it is ------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``flat`` (exact), or ``ivf<nlist>,flat`` once past ``approx_threshold``."""
        if self._is_ivf:
            return f"ivf{self._index.nlist},flat"
        return "flat"

    @property
    def nprobe(self) -> int | None:
        """How many IVF lists a search visits; ``None`` while the index is flat."""
        return int(self._index.nprobe) if self._is_ivf else None

    @property
    def path(self) -> Path | None:
        """The index file, or ``None`` for an index held only in memory."""
        return self._path

    def count(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> Ids:
        if not self._is_ivf:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        return self._ivf_contents(vectors=False)[0]

    # -- writes ----------------------------------------------------------------------------

    def add(self, ids: Ids, vectors: Vectors) -> None:
        ids, vectors = check_add(self.space, ids, vectors)
        if len(ids):
            self._add(ids, vectors)

    def _add(self, ids: Ids, vectors: Vectors) -> None:
        # FAISS would happily hold an id twice; replacing keeps ids unique like the catalog's.
        self._remove(ids)
        self._index.add_with_ids(vectors, ids)
        if self._is_ivf:
            # Lists trained on a quarter of today's gallery no longer fit it, and nprobe was
            # tuned on that quarter: retrain. Growth by 4x each time keeps the cost amortised.
            if choose_nlist(self.count()) >= 2 * self._index.nlist:
                self._index = self._new_ivf(*self._ivf_contents(vectors=True))
        elif self.count() > self.approx_threshold:
            self._index = self._new_ivf(*self._flat_contents())

    def remove(self, ids: Ids) -> int:
        ids = check_ids(ids)
        if len(ids) == 0 or self.count() == 0:
            return 0
        return self._remove(ids)

    def _remove(self, ids: Ids) -> int:
        if not self._is_ivf:
            # IndexIDMap2 rebuilds its whole reverse map on every remove_ids, so skip the call
            # when none of the ids is held (the common case for a plain add).
            held = faiss.vector_to_array(self._index.id_map)
            if not np.isin(ids, held).any():
                return 0
        # remove_ids takes effect at once; IDSelectorBatch tests membership with a hash set.
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def rebuild(self, ids: Ids, vectors: Vectors) -> None:
        """Replace the whole contents with ``ids``/``vectors``, choosing flat or IVF by size.

        Use it to reindex from the catalog; like every write, it reaches disk at :meth:`save`.
        Example: ``index.rebuild(catalog_ids, catalog_vectors); index.save()``.
        """
        ids, vectors = check_add(self.space, ids, vectors)
        if len(ids) > self.approx_threshold:
            self._index = self._new_ivf(ids, vectors)
        else:
            index = self._new_flat()
            if len(ids):
                index.add_with_ids(vectors, ids)
            self._index = index

    # -- reads -----------------------------------------------------------------------------

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        queries = check_queries(self.space, queries, k)
        return self._search(queries, int(k))

    def _search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        sims, ids = empty_hits(len(queries), k)
        top = min(k, self.count())
        if top == 0 or len(queries) == 0:
            return sims, ids
        found_sims, found_ids = self._index.search(queries, top)
        # IVF may find fewer than ``top`` in the lists it probes; FAISS marks those slots with
        # id -1 and similarity -FLT_MAX, which we report as -inf like every backend.
        found_sims[found_ids == EMPTY_ID] = EMPTY_SIM
        sims[:, :top] = found_sims
        ids[:, :top] = found_ids
        return sims, ids

    # -- disk ------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the index to its file atomically: a crash mid-save leaves the old file whole."""
        if self._path is None:
            return
        directory = self._path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Temp files are only left behind by a crash during an earlier save.
            stale = glob.escape(str(directory / f".{self._path.name}.")) + "*.tmp"
            for leftover in glob.glob(stale):
                os.unlink(leftover)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self._path.name}.", suffix=".tmp")
            os.close(fd)
        except OSError as exc:
            raise BackendError(f"cannot save vector index to {directory}: {exc}") from exc
        try:
            faiss.write_index(self._index, tmp)
            _fsync_file(tmp)
            os.replace(tmp, self._path)
        except (OSError, RuntimeError) as exc:
            Path(tmp).unlink(missing_ok=True)
            raise BackendError(f"cannot save vector index to {self._path}: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(directory)

    def _load(self, path: Path) -> Any:
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError, OSError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"cannot read vector index {path}: {reason}") from exc
        flat = isinstance(index, faiss.IndexIDMap2) and isinstance(
            faiss.downcast_index(index.index), faiss.IndexFlat
        )
        if not (flat or isinstance(index, faiss.IndexIVFFlat)):
            raise BackendError(f"vector index {path} is a {type(index).__name__}, not one of ours")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise BackendError(f"vector index {path} does not use inner product")
        if index.d != self.space.dim:
            raise SpaceMismatch(
                f"vector index {path} has dimension {index.d}, the space {self.space.key} "
                f"has {self.space.dim}"
            )
        return index

    # -- building --------------------------------------------------------------------------

    @property
    def _is_ivf(self) -> bool:
        return isinstance(self._index, faiss.IndexIVF)

    def _new_flat(self) -> Any:
        # FAISS ids are int64; face ids are catalog rowids, so the id map carries them as-is.
        # IDMap2 (not IDMap) can reconstruct vectors, which the switch to IVF needs.
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.space.dim))

    def _flat_contents(self) -> tuple[Ids, Vectors]:
        inner = faiss.downcast_index(self._index.index)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        return ids, inner.reconstruct_n(0, inner.ntotal)

    def _ivf_contents(self, vectors: bool) -> tuple[Ids, Vectors]:
        # IVF keeps ids (and, being IVFFlat, raw float32 vectors) inside its inverted lists;
        # one pass over the lists reads them (~15 ms for the ids of 1e6 vectors).
        lists, d = self._index.invlists, self.space.dim
        id_parts = [np.zeros(0, dtype=np.int64)]
        vector_parts = [np.zeros((0, d), dtype=np.float32)]
        for list_no in range(self._index.nlist):
            size = lists.list_size(list_no)
            if not size:
                continue
            ptr = lists.get_ids(list_no)
            id_parts.append(faiss.rev_swig_ptr(ptr, size).copy())
            lists.release_ids(list_no, ptr)
            if vectors:
                ptr = lists.get_codes(list_no)
                codes = faiss.rev_swig_ptr(ptr, size * lists.code_size).copy()
                vector_parts.append(codes.view(np.float32).reshape(size, d))
                lists.release_codes(list_no, ptr)
        return np.concatenate(id_parts).astype(np.int64, copy=False), np.concatenate(vector_parts)

    def _new_ivf(self, ids: Ids, vectors: Vectors) -> Any:
        d = self.space.dim
        nlist = choose_nlist(len(ids))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(_SEED)
        n_train = min(len(ids), _MAX_TRAIN_PER_LIST * nlist)
        sample = np.sort(rng.choice(len(ids), size=n_train, replace=False))
        index.train(np.ascontiguousarray(vectors[sample]))
        index.add_with_ids(vectors, ids)
        index.nprobe = tune_nprobe(index, ids, vectors, self.target_recall)
        return index


def choose_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: ~4*sqrt(n) as a power of two, >= 39 training points each.

    Example: ``choose_nlist(1_000_000) == 4096``; ``choose_nlist(2_000) == 32``.
    """
    if n < 2 * _MIN_TRAIN_PER_LIST:
        return 1
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and nlist * _MIN_TRAIN_PER_LIST > n:
        nlist //= 2
    return int(nlist)


def tune_nprobe(index: Any, ids: Ids, vectors: Vectors, target_recall: float) -> int:
    """The smallest power-of-two nprobe whose recall@10 reaches ``target_recall``.

    Queries are up to 200 gallery vectors (seeded); truth is exact search over ``vectors``.
    Each query's own id is left out of both sides: it is always found, and would flatter
    the recall of the neighbours that matter. Stops at ``nlist`` (exhaustive). Leaves
    ``index.nprobe`` as it was.
    Example: ``index.nprobe = tune_nprobe(index, ids, vectors, 0.99)``.
    """
    nlist = int(index.nlist)
    k = min(_CALIBRATION_K, len(ids) - 1)
    if nlist == 1 or k < 1:
        return 1
    rng = np.random.default_rng(_SEED + 1)
    rows = rng.choice(len(ids), size=min(_CALIBRATION_QUERIES, len(ids)), replace=False)
    queries = np.ascontiguousarray(vectors[rows])
    own = ids[rows]
    _, truth_rows = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = [_others(ids[found], me, k) for found, me in zip(truth_rows, own, strict=True)]
    before, nprobe = index.nprobe, 1
    try:
        while True:
            index.nprobe = nprobe
            _, found_ids = index.search(queries, k + 1)
            hits = sum(
                len(want & _others(found, me, k))
                for want, found, me in zip(truth, found_ids, own, strict=True)
            )
            if hits / (k * len(truth)) >= target_recall or nprobe >= nlist:
                return nprobe
            nprobe = min(2 * nprobe, nlist)
    finally:
        index.nprobe = before


def _others(found: Ids, me: int, k: int) -> set[int]:
    """The first ``k`` ids of one result row, other than the query's own id and empty slots."""
    return set([int(i) for i in found if i != me and i != EMPTY_ID][:k])


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
