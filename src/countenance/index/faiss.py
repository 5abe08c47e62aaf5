"""The embedded default vector index: FAISS, exact while small, then HNSW, then IVF.

The gallery's layout follows its size and a memory budget
(:mod:`countenance.index.faiss_layouts` has the three):

============  ==============================  ====================================
layout        while                           RAM per 128-d face
============  ==============================  ====================================
flat (exact)  n <= ``approx_threshold``       ~550 B (vector, id, reverse map)
hnsw48,pca..  it fits ``memory_gb`` (and      ~480 B (8-bit codes of the top principal
              n <= ``ivfpq_threshold``)       components, id, graph links)
ivf,rabitq..  beyond                          ~60 B (52 B of 2-bit RaBitQ code, 8 B id)
============  ==============================  ====================================

IVF projects wider faces onto at most 128 of their principal components first (e.g.
``ivf2048,pca128,rabitq2fs`` for 512-d faces), so that an IVF face takes ~60 B at any
dimension.

Both approximate layouts keep the float vectors in a memory-mapped file, one row per face
id, and re-rank their short list by them. HNSW is kept as long as the budget allows because,
measured on galleries shaped like face descriptors (``benchmarks/search.py``), it reaches
recall 0.99 at a fraction of the cost IVF needs; IVF is what lets a gallery larger
than RAM be searched at all. (The layout is still named ``ivfpq``, in settings and on disk,
from when its codes were product-quantised; IVF-PQ indexes written then still load.)

The ``add`` that takes the gallery past a threshold rebuilds it in the next layout (training
IVF on a sample); an IVF gallery that has grown fourfold is retrained with more lists.
After each build the search breadth (HNSW's efSearch, IVF's nprobe and re-ranking depth) is
set to the smallest value whose recall@10 against exact search reaches ``target_recall``, on
held-out gallery faces as probes, and it is tuned again whenever the gallery has doubled
since (an HNSW graph by rebuilding it, at most twice the cost of one build overall). A layout
never shrinks by itself; :meth:`rebuild` (``countenance reindex``) chooses afresh, and
:meth:`compact` reclaims HNSW's tombstones.

Removal is visible to the very next search in every layout. Every result carries exact
cosine similarities (HNSW and IVF re-rank their short list by the float vectors).

On disk: ``<directory>/<space.key>.faiss`` (replaced atomically by :meth:`save`; FAISS writes
efSearch and nprobe into it) and, beyond flat, ``<space.key>.vectors`` (one row per face
id, memory-mapped, flushed before the index file is replaced, so a saved index never names a
face whose vector is not on disk) and, for IVF, ``<space.key>.json`` (the re-ranking
depth tuned with nprobe).

The index is not safe for concurrent writes; the engine serialises them.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from countenance.errors import BackendError, InvalidArgument, SpaceMismatch
from countenance.index import EMPTY_ID, EMPTY_SIM, check_add, check_ids, check_queries, empty_hits
from countenance.index.calibration import Calibration, Gallery
from countenance.index.faiss_layouts import (
    FlatLayout,
    HnswLayout,
    IvfPqLayout,
    choose_nlist,
    ivf_of,
    list_ids,
)
from countenance.index.vectorfile import VectorFile
from countenance.ports import Ids, Vectors
from countenance.types import EmbeddingSpace

__all__ = ["LAYOUTS", "FaissIndex", "choose_layout", "choose_nlist"]

log = logging.getLogger(__name__)

Layout = FlatLayout | HnswLayout | IvfPqLayout

LAYOUTS = ("flat", "hnsw", "ivfpq")
"""The layouts in the order a growing gallery moves through them."""

_GIB = 1 << 30
# HNSW keeps this many tombstones at most (as a share of its slots) before an add compacts it.
_MAX_TOMBSTONES = 0.25
# Below this many vectors IVF has too few lists to be worth training; flat is exact and fast.
_MIN_IVFPQ = 1_000


def choose_layout(
    n: int,
    dim: int,
    *,
    approx_threshold: int = 200_000,
    ivfpq_threshold: int = 100_000_000,
    memory_gb: float = 8.0,
) -> str:
    """The layout for ``n`` vectors of ``dim``: the first of flat, HNSW and IVF whose size
    limit ``n`` is within and whose RAM fits ``memory_gb``.

    Example: ``choose_layout(10**6, 128) == "hnsw"``; ``choose_layout(3 * 10**7, 128) == "ivfpq"``
    (HNSW's ~14 GB would exceed the default 8 GB).
    """
    budget = memory_gb * _GIB
    if n <= approx_threshold and n * (dim * 4 + 40) <= budget:
        return "flat"
    if n <= ivfpq_threshold and n * HnswLayout.bytes_per_face(dim) <= budget:
        return "hnsw"
    return "ivfpq"


class FaissIndex:
    """FAISS index of one space over int64 face ids; persistent when given a directory.

    Adding an id that is already present replaces its vector. ``remove`` is visible to the very
    next search. Nothing is written until :meth:`save`, except IVF's vector file; without a
    directory ``save`` does nothing. ``layout`` forces one layout instead of choosing by size.

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
        ivfpq_threshold: int = 100_000_000,
        memory_gb: float = 8.0,
        target_recall: float = 0.99,
        layout: str = "auto",
        **_: Any,
    ) -> None:
        if approx_threshold < 0 or ivfpq_threshold < 0:
            raise InvalidArgument("approx_threshold and ivfpq_threshold must be >= 0")
        if memory_gb <= 0:
            raise InvalidArgument(f"memory_gb must be > 0, got {memory_gb}")
        if not 0.0 < target_recall <= 1.0:
            raise InvalidArgument(f"target_recall must be in (0, 1], got {target_recall}")
        if layout != "auto" and layout not in LAYOUTS:
            raise InvalidArgument(f"layout must be auto or one of {', '.join(LAYOUTS)}")
        self.space = space
        self.approx_threshold = approx_threshold
        self.ivfpq_threshold = ivfpq_threshold
        self.memory_gb = memory_gb
        self.target_recall = target_recall
        self.forced = None if layout == "auto" else layout
        self._path = None if directory is None else Path(directory) / f"{space.key}.faiss"
        self._vectors_path = None if directory is None else Path(directory) / f"{space.key}.vectors"
        self._store: VectorFile | None = None
        self._layout: Layout = FlatLayout(space.dim)
        self._tuned_at = 0
        if self._path is not None and self._path.exists():
            self._layout = self._load(self._path)
            self._tuned_at = self._layout.count()
        if self.forced is not None and self._name(self._layout) != self.forced:
            self._build(self.forced, self._gallery())

    # -- what it is ------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``flat``, ``hnsw<M>[,pca<d>],sq8`` or ``ivf<nlist>[,pca<d>],rabitq<bits>fs``."""
        return self._layout.kind

    @property
    def layout(self) -> str:
        """``flat``, ``hnsw`` or ``ivfpq``."""
        return self._name(self._layout)

    @property
    def nprobe(self) -> int | None:
        """IVF lists a search visits; ``None`` unless the layout is IVF."""
        return self._layout.nprobe if isinstance(self._layout, IvfPqLayout) else None

    @property
    def ef_search(self) -> int | None:
        """HNSW's search breadth; ``None`` unless the layout is HNSW."""
        return self._layout.ef_search if isinstance(self._layout, HnswLayout) else None

    @property
    def _meta_path(self) -> Path:
        assert self._path is not None
        return self._path.with_suffix(".json")

    @property
    def path(self) -> Path | None:
        """The index file, or ``None`` for an index held only in memory."""
        return self._path

    @property
    def vectors_path(self) -> Path:
        """Where IVF keeps the float vectors it re-ranks with (a temporary folder for an
        index without a directory, removed with the index)."""
        if self._vectors_path is None:
            scratch = tempfile.mkdtemp(prefix="countenance-vectors-")
            weakref.finalize(self, shutil.rmtree, scratch, ignore_errors=True)
            self._vectors_path = Path(scratch) / f"{self.space.key}.vectors"
        return self._vectors_path

    def ram_bytes(self) -> int:
        """What the index holds in RAM (IVF's memory-mapped vectors not counted)."""
        return self._layout.ram_bytes()

    def count(self) -> int:
        return self._layout.count()

    def ids(self) -> Ids:
        return self._layout.ids()

    # -- writes ----------------------------------------------------------------------------

    def add(self, ids: Ids, vectors: Vectors) -> None:
        ids, vectors = check_add(self.space, ids, vectors)
        if not len(ids):
            return
        self._layout.add(ids, vectors)
        self._grow()

    def remove(self, ids: Ids) -> int:
        ids = check_ids(ids)
        if len(ids) == 0 or self.count() == 0:
            return 0
        return self._layout.remove(ids)

    def rebuild(self, ids: Ids, vectors: Vectors | VectorFile) -> None:
        """Replace the whole contents, choosing the layout by size (or the forced one).

        ``vectors`` may be memory-mapped, or this index's own :class:`VectorFile` already
        holding them (how a gallery larger than RAM is indexed). Like every write, it reaches
        disk at :meth:`save`. Example: ``index.rebuild(catalog_ids, catalog_vectors)``.
        """
        if isinstance(vectors, VectorFile):
            ids = check_ids(ids)
        else:
            ids, vectors = check_add(self.space, ids, vectors)
        self._build(self.forced or self._choose(len(ids)), Gallery(ids, vectors))

    def compact(self) -> None:
        """Rebuild the current layout from the live faces, dropping HNSW's tombstones."""
        self._build(self.layout, self._gallery())

    def _choose(self, n: int) -> str:
        return choose_layout(
            n,
            self.space.dim,
            approx_threshold=self.approx_threshold,
            ivfpq_threshold=self.ivfpq_threshold,
            memory_gb=self.memory_gb,
        )

    def _grow(self) -> None:
        """After an add: move to the next layout, rebuild, compact or retune, as size asks."""
        layout, n = self._layout, self.count()
        wanted = self.forced or self._choose(n)
        doubled = n >= 2 * max(self._tuned_at, 1)
        if LAYOUTS.index(wanted) > LAYOUTS.index(self.layout):
            self._build(wanted, self._gallery())
        elif isinstance(layout, IvfPqLayout) and choose_nlist(n) >= 2 * layout.nlist:
            self._build("ivfpq", self._gallery())  # lists trained on a quarter of today's
        elif isinstance(layout, HnswLayout) and (
            doubled or layout.tombstones > _MAX_TOMBSTONES * (n + layout.tombstones)
        ):
            # A graph is retuned by rebuilding it: taking the calibration faces out and back
            # would leave tombstones. Rebuilding at each doubling costs at most twice one build.
            self._build("hnsw", self._gallery())
        elif isinstance(layout, IvfPqLayout) and doubled:
            self._retune()

    # -- reads -----------------------------------------------------------------------------

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        queries = check_queries(self.space, queries, k)
        sims, ids = empty_hits(len(queries), k)
        top = min(int(k), self.count())
        if top == 0 or len(queries) == 0:
            return sims, ids
        found_sims, found_ids = self._layout.search(queries, top)
        # Approximate layouts may find fewer than ``top``; FAISS marks those slots with id -1
        # and similarity -FLT_MAX, which we report as -inf like every backend.
        found_sims[found_ids == EMPTY_ID] = EMPTY_SIM
        sims[:, :top] = found_sims
        ids[:, :top] = found_ids
        return sims, ids

    # -- building --------------------------------------------------------------------------

    def _gallery(self) -> Gallery:
        if isinstance(self._layout, IvfPqLayout | HnswLayout):
            return Gallery(np.sort(self._layout.ids()), self._layout.vectors)
        return Gallery(*self._everything())

    def _everything(self) -> tuple[Ids, Vectors]:
        parts = list(self._layout.contents())
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.space.dim), np.float32)
        return np.concatenate([i for i, _ in parts]), np.concatenate([v for _, v in parts])

    def _build(self, name: str, gallery: Gallery) -> None:
        started = time.monotonic()
        dim = self.space.dim
        if name == "ivfpq" and len(gallery) < _MIN_IVFPQ:
            name = "flat"  # too few vectors to train a quantizer: exact costs nothing here
        if name == "hnsw" and len(gallery) == 0:
            name = "flat"  # nothing to fit codes to: the first add builds the graph
        layout: Layout
        if name in ("hnsw", "ivfpq"):
            store = self._vector_file()
            held = gallery.vectors
            if not (isinstance(held, VectorFile) and held.path == store.path):
                store.truncate()
                for ids, vectors in gallery.chunks():
                    store.write(ids, vectors)
            gallery = Gallery(np.sort(gallery.ids), store)
            trainer = IvfPqLayout if name == "ivfpq" else HnswLayout
            layout = trainer.train(dim, gallery, store)
        else:
            layout = FlatLayout(dim)
            if self._store is not None:
                self._store.truncate()  # no vectors outlive the layout that needed them
        # The calibration faces join the index only once it is tuned (see Calibration).
        calibration = None
        if not isinstance(layout, FlatLayout) and len(gallery) > 1:
            calibration = Calibration(gallery, layout.CALIBRATION_QUERIES)
        hold_hidden = not layout.FILTERS_HIDDEN
        later = np.zeros(0, np.int64)
        if calibration is not None:
            later = calibration.held(hold_hidden)[0]
        for ids, vectors in gallery.chunks():
            keep = ~np.isin(ids, later)
            if not keep.any():
                continue
            if isinstance(layout, IvfPqLayout | HnswLayout):
                layout.add_codes(ids[keep], vectors[keep])  # the vector file has them
            else:
                layout.add(ids[keep], np.ascontiguousarray(vectors[keep]))
        if calibration is not None:
            layout.tune(calibration, self.target_recall)
            held_ids, held_vectors = calibration.held(hold_hidden)
            if len(held_ids):
                layout.add(held_ids, held_vectors)
        self._layout = layout
        self._tuned_at = self.count()
        log.info(
            "vector index built as %s for %d faces in %.1f s",
            layout.kind,
            len(gallery),
            time.monotonic() - started,
        )

    def _retune(self) -> None:
        if not isinstance(self._layout, FlatLayout):
            calibration = Calibration(self._gallery(), self._layout.CALIBRATION_QUERIES)
            with calibration.hold_out(self._layout, not self._layout.FILTERS_HIDDEN):
                self._layout.tune(calibration, self.target_recall)
        self._tuned_at = self.count()

    def _vector_file(self) -> VectorFile:
        if self._store is None:
            self._store = VectorFile(self.vectors_path, self.space.dim)
        return self._store

    @staticmethod
    def _name(layout: Layout) -> str:
        if isinstance(layout, HnswLayout):
            return "hnsw"
        return "ivfpq" if isinstance(layout, IvfPqLayout) else "flat"

    def __deepcopy__(self, memo: dict[int, Any]) -> FaissIndex:
        """An independent copy held in memory (no directory): IVF's vectors are copied to
        a temporary file of its own, so writes to either index never reach the other."""
        clone = copy.copy(self)
        clone._path = clone._vectors_path = None
        clone._store = None
        index = faiss.clone_index(self._layout.index)
        if isinstance(self._layout, IvfPqLayout | HnswLayout):
            self._layout.vectors.flush()
            shutil.copyfile(self._layout.vectors.path, clone.vectors_path)
        if isinstance(self._layout, IvfPqLayout):
            clone._layout = IvfPqLayout(index, clone._vector_file(), self._layout.rerank)
        elif isinstance(self._layout, HnswLayout):
            clone._layout = HnswLayout(index, clone._vector_file())
        else:
            clone._layout = FlatLayout(self.space.dim, index)
        return clone

    # -- disk ------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the index to its file atomically: a crash mid-save leaves the old file whole."""
        if self._path is None:
            return
        if isinstance(self._layout, IvfPqLayout | HnswLayout):
            self._layout.vectors.flush()  # every id the file names has its vector on disk
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
            if isinstance(self._layout, IvfPqLayout):
                # Written before the index it describes; read only with an IVF index.
                _write_json(self._meta_path, {"rerank": self._layout.rerank})
            faiss.write_index(self._layout.index, tmp)
            _fsync_file(tmp)
            os.replace(tmp, self._path)
        except (OSError, RuntimeError) as exc:
            Path(tmp).unlink(missing_ok=True)
            raise BackendError(f"cannot save vector index to {self._path}: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(directory)

    def _load(self, path: Path) -> Layout:
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError, OSError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"cannot read vector index {path}: {reason}") from exc
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else None
        graph = _graph_of(index)
        ivf = ivf_of(index)  # IVF's lists, bare or behind their projection
        ours = (
            (
                isinstance(index, faiss.IndexIDMap)
                and isinstance(inner, faiss.IndexFlat | faiss.IndexHNSWFlat)
            )
            or isinstance(index, faiss.IndexIVFFlat)
            or ivf is not None
            or graph is not None
        )
        if not ours:
            raise BackendError(f"vector index {path} is a {type(index).__name__}, not one of ours")
        # the graph over codes and projected IVF codes compare by L2 (which ranks unit vectors
        # as cosine does: a projection that subtracts a mean keeps distances, not products)
        projected = graph is not None or (
            ivf is not None and isinstance(index, faiss.IndexPreTransform)
        )
        metric, metric_name = (
            (faiss.METRIC_L2, "L2") if projected else (faiss.METRIC_INNER_PRODUCT, "IP")
        )
        inner_most = graph if graph is not None else ivf if ivf is not None else index
        if inner_most.metric_type != metric:
            raise BackendError(f"vector index {path} does not use {metric_name}")
        if index.d != self.space.dim:
            raise SpaceMismatch(
                f"vector index {path} has dimension {index.d}, the space {self.space.key} "
                f"has {self.space.dim}"
            )
        if graph is not None:
            return HnswLayout(index, self._vector_file())
        if isinstance(index, faiss.IndexIDMap2) and isinstance(inner, faiss.IndexFlat):
            return FlatLayout(self.space.dim, index)
        if isinstance(index, faiss.IndexIDMap) and isinstance(inner, faiss.IndexHNSWFlat):
            # Written by countenance 0.2: a graph over float vectors, which it holds.
            storage = faiss.downcast_index(inner.storage)
            labels = faiss.vector_to_array(index.id_map).astype(np.int64)
            live = labels != EMPTY_ID
            vectors = storage.reconstruct_n(0, int(index.ntotal))[live]
            log.info("vector index %s is an HNSW graph of floats; rebuilding it", path)
            self._layout = FlatLayout(self.space.dim)
            gallery = Gallery(labels[live], vectors)
            self._build(self.forced or self._choose(len(gallery)), gallery)
            return self._layout
        if ivf is not None:
            meta = _read_json(self._meta_path)
            return IvfPqLayout(index, self._vector_file(), int(meta.get("rerank", 10)))
        if isinstance(index, faiss.IndexIVFFlat):
            # Written by countenance 0.1 (flat, then IVF-Flat): its lists hold the vectors.
            ids, vectors = _ivf_flat_contents(index)
            log.info("vector index %s is IVF-Flat; moving it to the current layouts", path)
            self._layout = FlatLayout(self.space.dim)
            self._build(self.forced or self._choose(len(ids)), Gallery(ids, vectors))
            return self._layout
        raise BackendError(f"vector index {path} is a {type(index).__name__}, not one of ours")


def _graph_of(index: Any) -> Any:
    """The HNSW graph of an index in the current HNSW layout, or None for anything else."""
    if not isinstance(index, faiss.IndexPreTransform):
        return None
    ids = faiss.downcast_index(index.index)
    if not isinstance(ids, faiss.IndexIDMap):
        return None
    graph = faiss.downcast_index(ids.index)
    return graph if isinstance(graph, faiss.IndexHNSWSQ) else None


def _ivf_flat_contents(index: Any) -> tuple[Ids, Vectors]:
    # IVF-Flat's codes are the float vectors themselves, list by list like its ids
    lists, d = index.invlists, index.d
    vector_parts = [np.zeros((0, d), dtype=np.float32)]
    for list_no in range(index.nlist):
        size = lists.list_size(list_no)
        if size:
            ptr = lists.get_codes(list_no)
            codes = faiss.rev_swig_ptr(ptr, size * lists.code_size).copy()
            vector_parts.append(codes.view(np.float32).reshape(size, d))
            lists.release_codes(list_no, ptr)
    return list_ids(index), np.concatenate(vector_parts)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value))
    _fsync_file(str(tmp))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
