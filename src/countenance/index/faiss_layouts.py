"""The three shapes a FAISS gallery takes as it grows: flat, HNSW and IVF.

:class:`~countenance.index.faiss.FaissIndex` decides which one to use and when to move; each
layout here holds the vectors one way and answers ``add`` / ``remove`` / ``search`` over
int64 face ids, always with exact cosine similarities in its results:

- :class:`FlatLayout`: ``IndexIDMap2(IndexFlatIP)``; exact, 4·d bytes per face.
- :class:`HnswLayout`: an HNSW graph over 8-bit codes of the top principal components
  (``IndexPreTransform(PCAMatrix, IndexIDMap(IndexHNSWSQ))``), ~d/2 + 8·M bytes per face,
  its short list re-ranked by the float vectors in a memory-mapped
  :class:`~countenance.index.vectorfile.VectorFile`. HNSW cannot delete, so a removed face's
  slot gets id -1 (a tombstone) and every search filters -1 out with a selector: removal is
  visible to the very next search. Tombstones are reclaimed by rebuilding (compaction) once
  they are a quarter of the graph.
- :class:`IvfPqLayout`: inverted lists of compressed codes in RAM, the float vectors in the
  vector file; each search takes ``rerank`` candidates per result from the codes and
  re-ranks them by their float vectors. The codes are RaBitQ's with 2 bits a dimension
  (``IndexIVFRaBitQFastScan``: 52 bytes per 128-d face, plus its 8-byte id): on galleries
  shaped like face descriptors they rank a person's faces far better than the 4-bit
  product-quantiser codes this layout used to hold (``IndexIVFPQFastScan``, still read).
  Wider vectors are projected first onto their top principal components, at most 128
  (``IndexPreTransform(PCAMatrix, IndexIVFRaBitQFastScan)``, by L2), so that a face keeps
  within 64 bytes at any dimension; an IVF file written without the projection still reads.

Both approximate layouts return exact similarities: whatever the codes, the final order is
by the float vectors.

Search breadth (efSearch, nprobe) is not fixed: each layout's ``tune`` sets it to the smallest
value whose recall@10 against exact search reaches the target, on held-out gallery faces as
probes (:mod:`countenance.index.calibration`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np

from countenance.index import EMPTY_ID, EMPTY_SIM
from countenance.index.calibration import (
    CALIBRATION_K,
    READ_CHUNK,
    SEED,
    Calibration,
    Gallery,
    smallest,
    tune,
)
from countenance.index.vectorfile import VectorFile
from countenance.ports import Ids, Vectors

# k-means wants at least this many training points per list (FAISS warns below it), and
# gains little from more than _TRAIN_PER_LIST: k-means cost grows with the sample.
_MIN_TRAIN_PER_LIST = 39
_TRAIN_PER_LIST = 40
# IVF with more lists than this finds lists (and trains them) through an HNSW graph.
HNSW_QUANTIZER_FROM = 4096
_ADD_EF_SEARCH = 32
_KMEANS_ITERATIONS = 10
_FILL_WAIT_S = 120.0  # at most, for the vector file's map before pairs are timed
# Steps of 32 where 10^6-face galleries land (each step there is ~10% of the search time).
_EF_SEARCH = (
    *(16, 24, 32, 48, 64, 96, 128, 160, 192),
    *(224, 256, 288, 320, 352, 384, 448, 512, 768, 1024),
)
# Below this many training faces the graph keeps every dimension (no projection).
_MIN_PCA_SAMPLE = 1_000
_BATCH = 1 << 16  # vectors per add call while building, to bound temporary memory


def choose_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: ~2*sqrt(n) as a power of two, >= 39 training points each.

    Fewer, longer lists than the usual 4*sqrt(n): at 10^7 faces 8,192 lists of RaBitQ codes
    reached recall 0.98 in ~10% less time than 16,384.

    Example: ``choose_nlist(1_000_000) == 2048``; ``choose_nlist(10**7) == 8192``.
    """
    if n < 2 * _MIN_TRAIN_PER_LIST:
        return 1
    nlist = 2 ** round(math.log2(2 * math.sqrt(n)))
    while nlist > 1 and nlist * _MIN_TRAIN_PER_LIST > n:
        nlist //= 2
    return int(nlist)


# RaBitQ bits per dimension in the IVF layout's codes: with 1 bit a 200-deep short list holds
# too little of the true top 10 (recall 0.83 at 10^7 faces reading 256 of 4,096 lists,
# against 0.96 with 2 bits).
RABITQ_BITS = 2
_FAST_SCAN_IMPLEM = 10


@functools.cache
def rabitq_code_bytes(dim: int, bits: int = RABITQ_BITS) -> int:
    """Bytes of one face's RaBitQ code (its id is 8 more).

    Example: ``rabitq_code_bytes(128) == 52``: 16 B of sign bits, 16 B of the second bit,
    and the scalars that correct each estimate.
    """
    index = faiss.IndexIVFRaBitQFastScan(
        faiss.IndexFlatIP(dim), dim, 1, faiss.METRIC_INNER_PRODUCT, 32, True, bits
    )
    return int(index.code_size)


# -- layouts -------------------------------------------------------------------------------------


class FlatLayout:
    """Exact inner-product search; every face's vector in RAM."""

    name = "flat"
    FILTERS_HIDDEN = False  # never tuned

    def __init__(self, dim: int, index: Any = None) -> None:
        # IDMap2 (not IDMap) can reconstruct vectors, which moving to another layout needs.
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def kind(self) -> str:
        return "flat"

    def count(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> Ids:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self.remove(ids)  # FAISS would hold an id twice; the catalog never does
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: Ids) -> int:
        # IndexIDMap2 rebuilds its whole reverse map on every remove_ids, so skip the call
        # when none of the ids is held (the common case for a plain add).
        if not np.isin(ids, self.ids()).any():
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        sims, ids = self.index.search(queries, k)
        return sims, ids

    def contents(self) -> Iterator[tuple[Ids, Vectors]]:
        inner = faiss.downcast_index(self.index.index)
        ids = self.ids()
        for start in range(0, len(ids), READ_CHUNK):
            stop = min(start + READ_CHUNK, len(ids))
            yield ids[start:stop], inner.reconstruct_n(start, stop - start)

    def tune(self, calibration: Calibration, target_recall: float) -> None:
        pass  # exact

    def ram_bytes(self) -> int:
        return self.count() * (self.index.d * 4 + 8 + 32)  # vectors, ids, reverse map


class _CodesAndFile:
    """What HNSW and IVF share: codes in a FAISS index, float vectors in a VectorFile."""

    vectors: VectorFile
    _max_id: int

    def ids(self) -> Ids:
        raise NotImplementedError

    def remove(self, ids: Ids) -> int:
        raise NotImplementedError

    def add_codes(self, ids: Ids, vectors: Vectors) -> None:
        raise NotImplementedError

    def add(self, ids: Ids, vectors: Vectors) -> None:
        if ids.min() <= self._max_id:  # new faces have new, larger ids: skip the scan then
            self.remove(ids)
        self.vectors.write(ids, vectors)  # before the codes: a held id always has its vector
        self.add_codes(ids, vectors)

    def contents(self) -> Iterator[tuple[Ids, Vectors]]:
        ids = np.sort(self.ids())
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start : start + READ_CHUNK]
            yield chunk, self.vectors.read(chunk)


class HnswLayout(_CodesAndFile):
    """An HNSW graph over compact codes; float vectors on disk for re-ranking.

    A graph walk compares the query with thousands of faces, so what one comparison costs
    sets the speed. The graph holds each face as 8-bit codes of its top principal components
    (those holding ``VARIANCE`` of the variance, in steps of 16; all of them below
    ``_MIN_PCA_SAMPLE`` training faces), ~4x fewer bytes than its components in float and
    ~8x fewer than the whole float vector; distances are L2 there, which ranks unit vectors as
    cosine does. Codes only need to bring a face into the short list: ``RERANK`` candidates
    per result are re-ranked by their float vectors, so returned similarities are exact.
    Measured at 10^6 faces shaped like dlib descriptors (64 components of 128, 5 candidates
    per result): with M = 32, efSearch 352 as tuned, recall@10 0.9932 at 13.7x the exact scan
    with 344 B per face, where the graph over floats gave 10.1x with 792 B
    (``benchmarks/search.py``; the encodings compared in ``benchmarks/hnsw_codes.py``).

    What misses a neighbour is the walk, not the codes: an exact scan of the same codes
    brings every true neighbour into a short list of 50, and deeper short lists behind the
    walk found none more. So the graph is better connected than FAISS's default: ``M`` 48
    links a face (96 on the ground layer), and on the benchmark's queries the walk reaches
    0.99 at efSearch 192 where M = 32 needed 320: 17% less time (1.15 against 1.39 ms, timed
    in alternation) for ~130 B more per face and ~1.6x the build time. efConstruction 400
    gave no more than 200 (0.992 against 0.991 at efSearch 192). Tuned on probes that keep
    the faces hidden for strangers in the graph (see Calibration), it chose efSearch 224:
    recall 0.9928 at 18x the exact scan (docs/scaling.md).
    """

    M = 48
    EF_CONSTRUCTION = 200
    VARIANCE = 0.97
    RERANK = 5  # candidates re-ranked per result asked for
    MIN_POOL = 50
    TRAIN = 100_000  # faces sampled to fit the projection and the code ranges
    # Probes to tune with: re-ranking reads from RAM here, so 1,000 cost ~1 s at 10^6 faces
    # and measure recall to ~0.001 (see Calibration).
    CALIBRATION_QUERIES = 1_000
    # A stranger probe's hidden faces stay in the graph while it is tuned, left out of
    # results: taken out, they leave a hole no newcomer's photo meets (see Calibration).
    FILTERS_HIDDEN = True

    def __init__(self, index: Any, vectors: VectorFile) -> None:
        self.index = index  # IndexPreTransform(PCA or nothing, IndexIDMap(IndexHNSWSQ))
        self.vectors = vectors
        id_map: Any = faiss.downcast_index(index.index)
        self._ids = id_map
        self._graph: Any = faiss.downcast_index(id_map.index)
        self._dead = int((self._labels() == EMPTY_ID).sum())
        self._max_id = int(self._labels().max()) if index.ntotal else -1
        # Tombstones hold id -1; a selector of ids >= 0 keeps them out of every result.
        self._live_ids = faiss.IDSelectorRange(0, np.iinfo(np.int64).max)

    @classmethod
    def train(cls, dim: int, gallery: Gallery, vectors: VectorFile) -> HnswLayout:
        """An empty graph whose projection and code ranges are fitted to a sample of
        ``gallery``."""
        sample = gallery.sample(cls.TRAIN, SEED)
        components = cls.components(sample)
        codes: Any = faiss.ScalarQuantizer.QT_8bit
        graph = faiss.IndexHNSWSQ(components, codes, cls.M, faiss.METRIC_L2)
        graph.hnsw.efConstruction = cls.EF_CONSTRUCTION
        index = faiss.IndexPreTransform(faiss.IndexIDMap(graph))
        if components < dim:
            index.prepend_transform(faiss.PCAMatrix(dim, components))
        index.train(sample)
        return cls(index, vectors)

    @classmethod
    def components(cls, sample: Vectors) -> int:
        """Principal components the graph keeps: the fewest, in steps of 16, holding
        ``VARIANCE`` of ``sample``'s variance; every dimension for a small sample."""
        dim = int(sample.shape[1])
        if len(sample) < max(_MIN_PCA_SAMPLE, 4 * dim):
            return dim
        variances = np.linalg.eigvalsh(np.cov(sample, rowvar=False))[::-1]
        share = np.cumsum(np.clip(variances, 0.0, None)) / max(float(variances.sum()), 1e-30)
        needed = int(np.searchsorted(share, cls.VARIANCE)) + 1
        return min(dim, -(-needed // 16) * 16)

    @property
    def kind(self) -> str:
        transform = f",pca{self._graph.d}" if self.index.chain.size() else ""
        return f"hnsw{self._links}{transform},sq8"

    @property
    def _links(self) -> int:
        """M of this graph, which files written before M changed keep."""
        return int(self._graph.hnsw.nb_neighbors(1))

    @property
    def ef_search(self) -> int:
        return int(self._graph.hnsw.efSearch)

    @property
    def tombstones(self) -> int:
        return self._dead

    def _labels(self) -> Ids:
        # A view of the id map, not a copy: writing -1 into it is how a face is removed. It
        # is fetched afresh each time, since an add may move the map's storage.
        if self._ids.ntotal == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(self._ids.id_map.data(), self._ids.id_map.size())

    def count(self) -> int:
        return int(self.index.ntotal) - self._dead

    def ids(self) -> Ids:
        labels = self._labels()
        return labels[labels != EMPTY_ID].copy()

    def add_codes(self, ids: Ids, vectors: Vectors) -> None:
        """Add to the graph ids whose float vectors are already in the vector file."""
        for start in range(0, len(ids), _BATCH):
            self.index.add_with_ids(vectors[start : start + _BATCH], ids[start : start + _BATCH])
        if len(ids):
            self._max_id = max(self._max_id, int(ids.max()))

    def remove(self, ids: Ids) -> int:
        labels = self._labels()
        hit = np.flatnonzero(np.isin(labels, ids))
        labels[hit] = EMPTY_ID
        self._dead += len(hit)
        if len(hit):
            self.vectors.wipe(ids)
        return len(hit)

    def search(self, queries: Vectors, k: int, passing: Any = None) -> tuple[Vectors, Ids]:
        """The top ``k``. ``passing`` (an IDSelector) names the faces a result may hold;
        the walk still passes through the others."""
        pool = min(max(k * self.RERANK, self.MIN_POOL), self.count())
        walk = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        # efSearch was tuned for 10 results; a longer list needs a proportionally wider walk
        walk.efSearch = max(self.ef_search, self.ef_search * k // CALIBRATION_K, pool)
        if self._dead:  # tombstones hold id -1: only live ids may be returned
            passing = (
                self._live_ids if passing is None else faiss.IDSelectorAnd(self._live_ids, passing)
            )
        if passing is not None:  # held in a local until the search returns: faiss keeps a pointer
            walk.sel = passing
        params = faiss.SearchParametersPreTransform()
        params.index_params = walk
        _, candidates = self.index.search(queries, pool, params=params)
        return rerank(self.vectors, queries, candidates, k)

    def tune(self, calibration: Calibration, target_recall: float) -> None:
        """The smallest efSearch reaching ``target_recall``, the stranger probes' hidden
        faces in the graph but out of the results."""

        def apply(value: int) -> None:
            self._graph.hnsw.efSearch = value

        hidden = faiss.IDSelectorNot(faiss.IDSelectorBatch(calibration.hidden_ids))
        tune(
            _EF_SEARCH,
            apply,
            lambda q, k: self.search(q, k, passing=hidden)[1],
            calibration,
            target_recall,
        )

    @classmethod
    def bytes_per_face(cls, dim: int) -> int:
        """RAM a face takes in the graph, planning on half the dimensions kept: its codes,
        its id, ~2M links and their offsets."""
        return cls._bytes_per_face(max(1, dim // 2))

    @classmethod
    def _bytes_per_face(cls, components: int, links: int | None = None) -> int:
        return components + 8 + 4 * (2 * (links or cls.M) + 2) + 12

    def ram_bytes(self) -> int:
        return int(self.index.ntotal) * self._bytes_per_face(int(self._graph.d), self._links)


def rerank(vectors: VectorFile, queries: Vectors, candidates: Ids, k: int) -> tuple[Vectors, Ids]:
    """The top ``k`` of each row of ``candidates`` by exact similarity to its query, from the
    float vectors in ``vectors``."""
    sims = np.full((len(queries), k), EMPTY_SIM, dtype=np.float32)
    ids = np.full((len(queries), k), EMPTY_ID, dtype=np.int64)
    for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
        found = np.sort(found[found != EMPTY_ID])  # sorted reads suit the memory map
        exact = vectors.read(found) @ query
        best = np.argsort(-exact, kind="stable")[:k]
        sims[row, : len(best)] = exact[best]
        ids[row, : len(best)] = found[best]
    return sims, ids


class IvfPqLayout(_CodesAndFile):
    """Quantised codes in inverted lists; float vectors on disk for re-ranking.

    A search finds its ``nprobe`` lists by comparing the query with every centroid, even
    where adds go through an HNSW graph over them: at the breadths a search needs (10^7
    faces: ~700 of 8,192 lists) the graph would have to look twice as wide, and for 1,024 of
    16,384 centroids that took 3.9 ms against 0.4 ms for the flat scan.

    A code of 2 bits a dimension grows with the vector (148 B for 512-d), so faces wider
    than 128 dimensions are first projected onto their top principal components (see
    :meth:`components`), fitted to the sample the lists are trained on; lists, codes and
    centroids then live in that space and compare by L2. Only the short list is chosen
    there: it is re-ranked by the full float vectors, so similarities stay exact.
    """

    RERANK = (10, 20, 40, 80, 160, 320)  # candidates re-ranked per result asked for
    MIN_POOL = 100
    # Tuning takes the hidden faces out of the lists: a list is the same without them.
    FILTERS_HIDDEN = False
    # Probes to tune with: each is scanned once per nprobe tried, as deep as the deepest
    # short list (at 10^8 faces reading every list, ~0.5 s a probe). With 200, recall was
    # measured to ~+-0.005, and at 10^7 faces that decided between short lists of 200 and
    # 400 by chance (0.9817 against 0.98 with 1,000 probes; the benchmark's queries: 0.9847).
    CALIBRATION_QUERIES = 1_000
    # Of them, those that time the pairs left to compare: real searches, which re-rank from
    # disk where the gallery is past RAM (~1,500 reads/s here), so not all 1,000.
    TIMED_QUERIES = 200

    # RAM a face may take in codes and id: docs/scaling.md's target at 10^7 faces.
    FACE_BYTES = 64
    # Wider vectors keep the fewest principal components, in steps of PCA_STEP (16 B of
    # 2-bit code), holding VARIANCE of the variance of the training sample, but never more
    # than fit FACE_BYTES (128: a 52 B code, 60 B with the id; 192 would take 76 B), which
    # leaves a few bytes a face for the centroids and the projection.
    PCA_STEP = 64
    VARIANCE = 0.97

    def __init__(self, index: Any, vectors: VectorFile, rerank: int = RERANK[0]) -> None:
        self.index = index  # the IVF index, or IndexPreTransform(PCAMatrix, IVF) (d > 128)
        self.ivf: Any = ivf_of(index)
        if self.ivf is None:
            raise TypeError(f"not an IVF layout's index: {type(index).__name__}")
        self._projection: Any = None
        if isinstance(index, faiss.IndexPreTransform):
            chain: Any = index.chain
            self._projection = faiss.downcast_VectorTransform(chain.at(0))
        self.vectors = vectors
        self.rerank = rerank
        self._max_id = int(self.ids().max()) if self.ivf.ntotal else -1
        if isinstance(self.ivf, faiss.IndexIVFRaBitQFastScan):
            # The same results as faiss's default kernel (implem 12) at ~7% less time per
            # query at 10^7 faces; faiss does not save the choice, so it is made on load too.
            self.ivf.implem = _FAST_SCAN_IMPLEM
        # The flat index of the lists' centroids that searches scan. An HNSW quantizer serves
        # adds only, and an added face needs its one nearest list: a narrow walk will do
        # (~4x faster adds than a search-wide one; files written before kept it wide).
        quantizer = faiss.downcast_index(self.ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSWFlat):
            quantizer.hnsw.efSearch = _ADD_EF_SEARCH
            quantizer = faiss.downcast_index(quantizer.storage)
        self._centroids = quantizer

    @classmethod
    def train(cls, dim: int, gallery: Gallery, vectors: VectorFile) -> IvfPqLayout:
        """An empty IVF index for ``gallery``'s size, trained on a sample of it."""
        n = len(gallery)
        nlist = choose_nlist(n)
        sample = gallery.sample(max(_TRAIN_PER_LIST * nlist, 256 * _MIN_TRAIN_PER_LIST), SEED)
        coded = cls.components(sample)
        # A projection keeps L2 distances between faces, less what the dropped components
        # held, and L2 ranks unit vectors as cosine does; it does not keep inner products,
        # since it subtracts the sample's mean first.
        metric = faiss.METRIC_INNER_PRODUCT if coded == dim else faiss.METRIC_L2
        quantizer: Any
        if nlist > HNSW_QUANTIZER_FROM:
            # Comparing every vector with every centroid costs nlist dot products per face
            # (1e7 faces x 16384 lists: hours on two cores); an HNSW graph over the centroids
            # finds a face's list in a few hundred. k-means assigns through one as well.
            quantizer = faiss.IndexHNSWFlat(coded, 32, metric)
            quantizer.hnsw.efSearch = 128  # while training assigns the sample to its lists
        else:
            quantizer = faiss.IndexFlat(coded, metric)
        ivf = faiss.IndexIVFRaBitQFastScan(quantizer, coded, nlist, metric, 32, True, RABITQ_BITS)
        if nlist > HNSW_QUANTIZER_FROM:
            clustering = faiss.IndexHNSWFlat(coded, 32, metric)
            ivf.clustering_index = clustering
        ivf.cp.niter = _KMEANS_ITERATIONS
        ivf.cp.seed = SEED
        index: Any = ivf
        pca = None
        if coded < dim:  # the projection is fitted to the sample the lists are trained on
            pca = faiss.PCAMatrix(dim, coded)
            index = faiss.IndexPreTransform(pca, ivf)
        index.train(sample)  # faiss's wrappers keep ``quantizer`` and ``ivf`` alive with it
        if pca is not None:
            # Every eigenvector (1 MB at 512-d, 1 B a face at 10^6) is needed only to make
            # the projection's matrix, which holds the kept ones: training is done.
            pca.PCAMat.clear()
        return cls(index, vectors)

    @classmethod
    def max_components(cls) -> int:
        """The most dimensions a code may have, in steps of ``PCA_STEP``, for a face (code
        and id) to take at most ``FACE_BYTES``: 128."""
        components = cls.PCA_STEP
        while rabitq_code_bytes(components + cls.PCA_STEP) + 8 <= cls.FACE_BYTES:
            components += cls.PCA_STEP
        return components

    @classmethod
    def code_dim(cls, dim: int) -> int:
        """The most dimensions the codes of ``dim``-d vectors have: all up to 128, else 128."""
        return dim if dim <= cls.max_components() else cls.max_components()

    @classmethod
    def components(cls, sample: Vectors) -> int:
        """Dimensions the codes keep of ``sample``'s: every one where a face's code fits
        ``FACE_BYTES`` (d <= 128, unchanged from before); beyond, the fewest principal
        components in steps of ``PCA_STEP`` holding ``VARIANCE`` of the sample's variance,
        at most :meth:`max_components` (all of them for a sample too small to measure)."""
        dim, cap = int(sample.shape[1]), cls.max_components()
        if dim <= cap:
            return dim
        if len(sample) < max(_MIN_PCA_SAMPLE, 4 * dim):
            return cap
        # ~100,000 rows spread over the sample (in gallery order) measure it as well as all:
        # at 10^8 faces it holds 655,360, 2.7 GB in float64
        spread = sample[:: max(1, len(sample) // HnswLayout.TRAIN)]
        variances = np.linalg.eigvalsh(np.cov(spread, rowvar=False))[::-1]
        share = np.cumsum(np.clip(variances, 0.0, None)) / max(float(variances.sum()), 1e-30)
        needed = int(np.searchsorted(share, cls.VARIANCE)) + 1
        return min(cap, -(-needed // cls.PCA_STEP) * cls.PCA_STEP)

    @property
    def kind(self) -> str:
        ivf = self.ivf
        if isinstance(ivf, faiss.IndexIVFPQFastScan):  # written before RaBitQ
            return f"ivf{ivf.nlist},pq{ivf.pq.M}x{ivf.pq.nbits}fs"
        transform = "" if self._projection is None else f",pca{ivf.d}"
        return f"ivf{ivf.nlist}{transform},rabitq{ivf.rabitq.nb_bits}fs"

    @property
    def nlist(self) -> int:
        return int(self.ivf.nlist)

    @property
    def nprobe(self) -> int:
        return int(self.ivf.nprobe)

    def _set_nprobe(self, value: int) -> None:
        self.ivf.nprobe = value

    def count(self) -> int:
        return int(self.ivf.ntotal)

    def ids(self) -> Ids:
        return list_ids(self.ivf)

    def add_codes(self, ids: Ids, vectors: Vectors) -> None:
        """Add codes for ids whose float vectors are already in the vector file."""
        for start in range(0, len(ids), _BATCH):
            stop = start + _BATCH
            self.index.add_with_ids(vectors[start:stop], ids[start:stop])
        if len(ids):
            self._max_id = max(self._max_id, int(ids.max()))

    def remove(self, ids: Ids) -> int:
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        if removed:
            self.vectors.wipe(ids)
        return removed

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        return rerank(self.vectors, queries, self._short_list(queries, self._pool(k)), k)

    def _pool(self, k: int, rerank: int | None = None) -> int:
        depth = self.rerank if rerank is None else rerank
        return min(max(k * depth, self.MIN_POOL), self.count())

    def _short_list(self, queries: Vectors, pool: int) -> Ids:
        """The ``pool`` ids whose codes rank best, best first, in ``nprobe`` lists."""
        if self._projection is not None:
            queries = self._projection.apply(queries)
        # faiss wants exactly nprobe lists per query (-1 where there are fewer)
        near, lists = self._centroids.search(queries, self.nprobe)
        _, candidates = self.ivf.search_preassigned(queries, pool, lists, near)
        return np.asarray(candidates, dtype=np.int64)

    def tune(self, calibration: Calibration, target_recall: float) -> None:
        """The fastest (nprobe, re-ranking depth) pair reaching ``target_recall``.

        Codes rank coarsely, so a deeper short list lifts the recall that any number of
        lists can give, at the cost of reading more vectors. Re-ranking by exact similarity
        keeps every true neighbour that reaches the short list, so a depth's recall is the
        share of neighbours in that many of the codes' best candidates: one scan of the
        codes at the deepest depth gives every depth's recall, and tuning reads no vectors
        (at 10^8 faces they are on disk, ~1,500 reads a second). Each depth gets its
        smallest sufficient nprobe; a pair that reads as many lists as a shallower one and
        more vectors is dropped untimed (at 10^7 faces depths 40 to 320 all needed 609
        lists), and the rest are timed as a search is made: one probe at a time. Where no
        depth reaches the target even reading every list, the most accurate pair (every
        list, the deepest short list) is kept.
        """
        nlist = self.nlist
        probes = probe_steps(nlist)
        k = max(calibration.k, 1)
        deepest = self._pool(k, self.RERANK[-1])
        scans: dict[int, Ids] = {}

        def share(nprobe: int, rerank: int) -> float:
            if nprobe not in scans:
                self._set_nprobe(nprobe)
                scans[nprobe] = self._short_list(calibration.queries, deepest)
            return calibration.found_share(scans[nprobe][:, : self._pool(k, rerank)])

        def reaches(nprobe: int, rerank: int) -> bool:
            return share(nprobe, rerank) >= target_recall

        pairs: list[tuple[int, int]] = []  # (nprobe, depth), deepest first
        for rerank in reversed(self.RERANK):  # deepest first: it bounds what the others reach
            if not reaches(nlist, rerank):
                break  # shallower depths reach even less
            nprobe = smallest(probes, functools.partial(reaches, rerank=rerank))
            pairs = [(p, d) for p, d in pairs if p < nprobe]  # as many lists, more vectors
            pairs.append((nprobe, rerank))
        best = (nlist, self.RERANK[-1])  # the target is out of reach: the most accurate pair
        if len(pairs) == 1:
            best = pairs[0]
        elif pairs:
            seconds = self._seconds_per_probe(calibration, pairs)
            best = pairs[int(np.argmin(seconds))]
        self._set_nprobe(best[0])
        self.rerank = best[1]

    def _seconds_per_probe(
        self, calibration: Calibration, pairs: list[tuple[int, int]]
    ) -> list[float]:
        """The median time of a search for one probe of ``calibration`` with each
        (nprobe, depth) of ``pairs``.

        The pairs take turns probe by probe, in an order that rotates, and the median is
        compared (the benchmark's p50). Timed one pair after the other, the first (the
        deepest) met a vector file whose map was still being filled in after the build, and
        at 10^7 faces the tuning kept (724, 200) in two runs of four: 8.8 ms in the
        benchmark, where (609, 400) took 7.6 ms. The fill is waited for as well, since
        searches after a build meet a filled map.
        """
        queries = calibration.queries[:: max(1, len(calibration.queries) // self.TIMED_QUERIES)]
        k = max(calibration.k, 1)
        self.vectors.open_map()
        self.vectors.wait_filled(_FILL_WAIT_S)
        times = np.zeros((len(pairs), len(queries)))
        for row in range(len(queries)):
            for turn in range(len(pairs)):
                which = (row + turn) % len(pairs)
                self._set_nprobe(pairs[which][0])
                self.rerank = pairs[which][1]
                started = time.perf_counter()
                self.search(queries[row : row + 1], k)
                times[which, row] = time.perf_counter() - started
        return [float(t) for t in np.median(times, axis=1)] if len(queries) else [0.0] * len(pairs)

    def face_bytes(self) -> int:
        """RAM one face takes: its code and its 8-byte id."""
        return int(self.ivf.code_size) + 8

    def ram_bytes(self) -> int:
        """Every face's code and id, the centroids, and the projection's matrices."""
        centroids = self.nlist * int(self.ivf.d) * 4
        projection = 0
        if self._projection is not None:
            pca = self._projection
            arrays = (pca.A, pca.b, pca.mean, pca.eigenvalues, pca.PCAMat)
            projection = 4 * sum(int(a.size()) for a in arrays)
        return self.count() * self.face_bytes() + centroids + projection


def probe_steps(nlist: int) -> list[int]:
    """The nprobe values tuning chooses from: 1 to ``nlist`` in steps of 2^(1/4).

    At 10^7 faces a search's time grows in proportion to nprobe, and recall crossed 0.98
    between 512 lists (0.974) and 724 (0.987), so steps of sqrt(2) could cost ~40% more
    lists than the target needs; a quarter power costs at most ~19%, for one more
    calibration scan.
    """
    steps = 4 * int(math.log2(nlist)) + 4
    return sorted({min(round(2 ** (i / 4)), nlist) for i in range(steps)})


def ivf_of(index: Any) -> Any:
    """The inverted lists' index of an IVF layout's ``index``, bare or behind its projection;
    None for anything else."""
    if isinstance(index, faiss.IndexPreTransform):
        chain: Any = index.chain  # a C++ vector, not the list faiss's stubs say
        if chain.size() != 1:
            return None
        inner = faiss.downcast_index(index.index)
        transform = faiss.downcast_VectorTransform(chain.at(0))
        pca = isinstance(transform, faiss.PCAMatrix)
        return inner if pca and isinstance(inner, faiss.IndexIVFRaBitQFastScan) else None
    ivfs = faiss.IndexIVFRaBitQFastScan | faiss.IndexIVFPQFastScan
    return index if isinstance(index, ivfs) else None


def list_ids(index: Any) -> Ids:
    """Every id an IVF index holds, read list by list (~15 ms for 10^6 ids)."""
    lists = index.invlists
    parts = [np.zeros(0, dtype=np.int64)]
    for list_no in range(index.nlist):
        size = lists.list_size(list_no)
        if size:
            ptr = lists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(ptr, size).copy())
            lists.release_ids(list_no, ptr)
    return np.concatenate(parts).astype(np.int64, copy=False)
