"""Search speed, memory and recall of FAISS index kinds against exact search, in one run.

    python benchmarks/search.py --n 100000 1000000 --dim 128 --index exact faiss-hnsw --json

Galleries are synthetic but shaped like real faces: drawn from a model fitted to descriptors of
real photos (``--faces``, see ``benchmarks/_descriptors.py``), identities of 4-8 faces each.
Queries (``--queries``) are half new faces of enrolled identities, half faces of identities
never enrolled; a separate calibration set of the same mix tunes each approximate index
(efSearch, nprobe: the smallest that reaches ``--target-recall`` recall@10 against exact).

Per index kind and gallery size, one JSON row: p50/p99 single-query latency (top 10, one query
per call, one thread), recall@10 against exact, lead recall (of the exact top-100 above the
weak band's edge, the share the index's top 100 holds), bytes per face (the serialised index),
build time (all threads) and speed-up over ``exact`` at p50. IVF-PQ re-ranks ``--rerank``
candidates per 10 results asked for by their float vectors; its ``bytes_per_face`` counts
codes, ids and centroids (true when those vectors are memory-mapped from disk) and
``bytes_per_face_with_rerank`` adds the vectors held in RAM. ``exact`` is faiss IndexFlatIP as
faiss ships it (BLAS only when queries x dim >= 128,000); ``exact-blas`` is the same index with
that threshold at 0. ``batch_ms_per_query`` is all queries in one call on one thread, the case
the threshold decides.
Kinds that would not fit ``--ram-gb`` are skipped with a row saying what they need.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

# A sibling module: ``python benchmarks/search.py`` puts this folder on sys.path.
from _descriptors import (
    CACHE_DIR,
    CHUNK,
    Matrix,
    Synthesiser,
    check_model,
    fit_model,
    log,
    real_descriptors,
)

from countenance.index.faiss import choose_nlist
from countenance.scoring import bands_for
from countenance.vision.dlib_models import dlib_space

KINDS = ("exact", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq")
EF_SEARCH = (16, 32, 64, 128, 256, 512)
LEAD_POOL = 100  # leads are sought among the exact top 100
TOP = 10
GIB = 1 << 30
# IVF k-means learns from at most this many vectors per list, as countenance.index.faiss does.
TRAIN_PER_LIST = 256

Ids = npt.NDArray[np.int64]


@dataclass
class Built:
    """An index ready to search, with what it took to build and how it was tuned."""

    kind: str
    index: Any
    build_s: float
    params: dict[str, Any] = field(default_factory=dict)
    rerank_from: Matrix | None = None  # float vectors of the gallery, for IVF-PQ re-ranking
    rerank_pool: int = 0

    def search(self, queries: Matrix, k: int) -> Ids:
        """Ids of the top ``k`` per query (-1 where fewer were found)."""
        if self.rerank_from is None:
            return self.index.search(queries, k)[1]
        # The pool grows with k: rerank_pool candidates for each TOP results asked for.
        _, pool = self.index.search(queries, max(k, self.rerank_pool * k // TOP))
        found = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, ids) in enumerate(zip(queries, pool, strict=True)):
            ids = np.sort(ids[ids >= 0])  # sorted reads are kinder to memory-mapped vectors
            sims = np.asarray(self.rerank_from[ids]) @ query
            best = ids[np.argsort(-sims, kind="stable")[:k]]
            found[row, : len(best)] = best
        return found


# -- memory --------------------------------------------------------------------------------------


def index_bytes(kind: str, n: int, dim: int, hnsw_m: int, pq_m: int) -> int:
    """What ``kind`` holds in RAM for ``n`` vectors while it is built, roughly."""
    flat = n * dim * 4
    nlist = choose_nlist(n)
    train = min(n, TRAIN_PER_LIST * nlist) * dim * 4
    if kind == "exact":
        return flat
    if kind == "faiss-hnsw":  # 2M links at level 0, ~M/(M-1) more above, offsets and levels
        return flat + n * (4 * (2 * hnsw_m + 2) + 12)
    if kind == "faiss-ivf":
        return flat + n * 8 + nlist * dim * 4 + train
    return n * (pq_m + 8) + nlist * dim * 4 + train


def serialised_bytes(index: Any) -> int:
    """The size of the index as faiss writes it, counted without holding a copy."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total


# -- faiss settings ------------------------------------------------------------------------------


@contextlib.contextmanager
def blas_threshold(value: int) -> Iterator[None]:
    """faiss uses BLAS for exact search only when queries x dim >= this (128,000 by default)."""
    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = value
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# -- exact truth ---------------------------------------------------------------------------------


def exact_top(gallery: Matrix, queries: Matrix, k: int) -> tuple[Matrix, Ids]:
    """Exact top ``k`` (similarities, rows) of each query, streaming the gallery in chunks so a
    memory-mapped gallery never has to fit in RAM."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    with blas_threshold(0):  # untimed: take the fast path whatever the batch size
        for start in range(0, len(gallery), CHUNK):
            block = np.ascontiguousarray(gallery[start : start + CHUNK])
            sims, rows = faiss.knn(queries, block, min(k, len(block)), faiss.METRIC_INNER_PRODUCT)
            heap.add_result(sims, rows + start)
    heap.finalize()
    return heap.D, heap.I


def recall_at(found: Ids, truth: Ids, k: int) -> float:
    """Mean share of each query's exact top ``k`` that ``found``'s top ``k`` holds."""
    hits = sum(
        len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)
    )
    return hits / (k * len(truth))


def lead_recall(found: Ids, truth_sims: Matrix, truth: Ids, min_similarity: float) -> float | None:
    """Of the exact top-100 with similarity >= ``min_similarity``, the share in ``found``."""
    wanted = held = 0
    for f, sims, ids in zip(found, truth_sims, truth, strict=True):
        leads = set(ids[sims >= min_similarity].tolist())
        wanted += len(leads)
        held += len(leads & set(f.tolist()))
    return held / wanted if wanted else None


# -- building ------------------------------------------------------------------------------------


def add_in_chunks(index: Any, gallery: Matrix) -> None:
    for start in range(0, len(gallery), CHUNK):
        index.add(np.ascontiguousarray(gallery[start : start + CHUNK]))


def train_sample(gallery: Matrix, nlist: int, seed: int) -> Matrix:
    size = min(len(gallery), TRAIN_PER_LIST * nlist)
    rows = np.sort(np.random.default_rng(seed).choice(len(gallery), size=size, replace=False))
    return np.ascontiguousarray(gallery[rows])


def build(kind: str, gallery: Matrix, args: argparse.Namespace, pq_m: int) -> Built:
    """Build ``kind`` over ``gallery`` with every thread; tuning comes later."""
    dim = gallery.shape[1]
    ip = faiss.METRIC_INNER_PRODUCT
    started = time.perf_counter()
    params: dict[str, Any] = {}
    if kind == "exact":
        index: Any = faiss.IndexFlatIP(dim)
    elif kind == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(dim, args.hnsw_m, ip)
        params = {"M": args.hnsw_m, "efConstruction": int(index.hnsw.efConstruction)}
    else:
        nlist = choose_nlist(len(gallery))
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "faiss-ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
            params = {"nlist": nlist}
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, 8, ip)
            params = {"nlist": nlist, "pq_m": pq_m, "pq_bits": 8, "rerank": args.rerank}
        # faiss's Python wrapper keeps ``quantizer`` alive as long as ``index``.
        index.train(train_sample(gallery, nlist, args.seed))
    add_in_chunks(index, gallery)
    built = Built(kind, index, time.perf_counter() - started, params)
    if kind == "faiss-ivfpq":
        built.rerank_from, built.rerank_pool = gallery, args.rerank
    return built


def tune(
    built: Built,
    values: Sequence[int],
    apply: Callable[[int], None],
    name: str,
    queries: Matrix,
    truth: Ids,
    target: float,
) -> None:
    """Set ``name`` to the smallest of ``values`` whose recall@10 on the calibration queries
    reaches ``target``; where none does (IVF-PQ's codes can cap recall), the smallest within
    half a point of the best, since larger ones cost time for no recall. Records the choice
    in ``built.params``."""
    recalls: list[float] = []
    for value in values:
        apply(value)
        recalls.append(recall_at(built.search(queries, TOP), truth, TOP))
        if recalls[-1] >= target:
            break
    reached = recalls[-1] >= target
    pick = (
        len(recalls) - 1
        if reached
        else next(i for i, r in enumerate(recalls) if r >= max(recalls) - 0.005)
    )
    apply(values[pick])
    built.params.update(
        {
            name: values[pick],
            "calibration_recall_at_10": round(recalls[pick], 4),
            "target_reached": reached,
        }
    )


def tune_built(built: Built, queries: Matrix, truth: Ids, target: float) -> None:
    index = built.index
    if built.kind == "faiss-hnsw":

        def set_ef(value: int) -> None:
            index.hnsw.efSearch = value

        tune(built, EF_SEARCH, set_ef, "efSearch", queries, truth, target)
    elif built.kind in ("faiss-ivf", "faiss-ivfpq"):
        nlist = int(index.nlist)
        probes = [min(2**i, nlist) for i in range(int(math.log2(nlist)) + 2)]

        def set_nprobe(value: int) -> None:
            index.nprobe = value

        tune(built, sorted(set(probes)), set_nprobe, "nprobe", queries, truth, target)


# -- measuring -----------------------------------------------------------------------------------


def measure(built: Built, queries: Matrix) -> dict[str, Any]:
    """Single-query latencies (top 10, one thread), their results, and batch time per query."""
    with threads(1):
        for query in queries[:10]:  # warm caches and lazily built tables
            built.search(query[None, :], TOP)
        found = np.empty((len(queries), TOP), dtype=np.int64)
        times = np.empty(len(queries))
        for i in range(len(queries)):
            started = time.perf_counter()
            found[i] = built.search(queries[i : i + 1], TOP)[0]
            times[i] = time.perf_counter() - started
        started = time.perf_counter()
        built.search(queries, TOP)
        batch = (time.perf_counter() - started) / len(queries)
    return {
        "found": found,
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "batch_ms_per_query": batch * 1e3,
    }


@dataclass
class Case:
    """One gallery size and dimension, with its queries and their exact answers."""

    n: int
    dim: int
    gallery: Matrix
    placement: str  # "ram" or "mmap"
    queries: Matrix
    truth_sims: Matrix
    truth: Ids
    calibration: Matrix
    calibration_truth: Ids
    lead_min_similarity: float
    dim_note: str | None
    exact_p50_ms: float | None = None


def row_for(case: Case, built: Built, name: str, timing: dict[str, Any]) -> dict[str, Any]:
    """The JSON row of one index kind (``name`` tells exact from exact-blas)."""
    pool = built.search(case.queries, LEAD_POOL)
    size = serialised_bytes(built.index)
    per_face = size / case.n
    with_rerank = per_face + 4 * case.dim if built.rerank_from is not None else None
    p50 = timing["p50_ms"]
    speedup = None if case.exact_p50_ms is None else case.exact_p50_ms / p50
    leads = [int((s >= case.lead_min_similarity).sum()) for s in case.truth_sims]
    row: dict[str, Any] = {
        "index": name,
        "n": case.n,
        "dim": case.dim,
        "p50_ms": round(p50, 4),
        "p99_ms": round(timing["p99_ms"], 4),
        "recall_at_10": round(recall_at(timing["found"], case.truth, TOP), 4),
        "lead_recall": _rounded(
            lead_recall(pool, case.truth_sims, case.truth, case.lead_min_similarity)
        ),
        "bytes_per_face": round(per_face, 1),
        "bytes_per_face_with_rerank": _rounded(with_rerank, 1),
        "build_s": round(built.build_s, 3),
        "speedup_vs_exact": _rounded(speedup, 2),
        "batch_ms_per_query": round(timing["batch_ms_per_query"], 4),
        "params": {k: v for k, v in built.params.items() if not k.startswith("_")},
        "leads_per_query": round(float(np.mean(leads)), 1),
        "lead_min_similarity": round(case.lead_min_similarity, 4),
        "queries": len(case.queries),
        "gallery": case.placement,
    }
    if built.rerank_from is not None:
        # bytes_per_face counts codes, ids and centroids: true when the vectors it re-ranks
        # from are memory-mapped from disk; bytes_per_face_with_rerank holds them in RAM too.
        row["rerank_vectors"] = case.placement
    if case.dim_note:
        row["dim_note"] = case.dim_note
    return row


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- driving -------------------------------------------------------------------------------------


def place_gallery(
    synth: Synthesiser, n: int, ram: int, scratch: Path
) -> tuple[Matrix | None, str, Path | None]:
    """The gallery in RAM when it fits twice (a flat index copies it), else memory-mapped
    in ``scratch`` when the disk has room; ``None`` when neither."""
    size = n * synth.dim * 4
    path: Path | None = None
    if 2 * size <= ram:
        gallery: Matrix = np.empty((n, synth.dim), dtype=np.float32)
        placement = "ram"
    else:
        scratch.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(scratch).free < size * 1.05:
            return None, f"needs {size / GIB:.1f} GiB of RAM or disk for the vectors", None
        fd, name = tempfile.mkstemp(dir=scratch, prefix="gallery-", suffix=".f32")
        path = Path(name)
        with open(fd, "wb"):
            pass
        gallery = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, synth.dim))
        placement = "mmap"
    for start, vectors in synth.gallery_chunks(n):
        gallery[start : start + len(vectors)] = vectors
    return gallery, placement, path


def run_case(
    synth: Synthesiser, n: int, args: argparse.Namespace, lead_edge: float
) -> list[dict[str, Any]]:
    dim, ram = synth.dim, int(args.ram_gb * GIB)
    pq_m = args.pq_m or min(64, dim // 4)
    log(f"n={n:,} d={dim}: generating gallery")
    gallery, placement, path = place_gallery(synth, n, ram, args.cache)
    if gallery is None:
        return [{"index": k, "n": n, "dim": dim, "skipped": placement} for k in args.index]
    try:
        queries, _ = synth.queries(args.queries, n, tag=1)
        calibration, _ = synth.queries(args.calibration_queries, n, tag=2)
        log(f"n={n:,} d={dim}: exact truth for {len(queries) + len(calibration)} queries")
        truth_sims, truth = exact_top(gallery, queries, LEAD_POOL)
        calibration_truth = exact_top(gallery, calibration, TOP)[1]
        case = Case(
            n,
            dim,
            gallery,
            placement,
            queries,
            truth_sims,
            truth,
            calibration,
            calibration_truth,
            lead_edge,
            synth.dim_note,
        )
        in_ram = n * dim * 4 if placement == "ram" else 0
        rows = []
        for kind in args.index:  # exact comes first: it is the baseline of the others
            need = index_bytes(kind, n, dim, args.hnsw_m, pq_m) + in_ram
            if need > ram:
                reason = f"needs {need / GIB:.2f} GiB, --ram-gb is {args.ram_gb:g}"
                names = ("exact", "exact-blas") if kind == "exact" else (kind,)
                rows += [{"index": k, "n": n, "dim": dim, "skipped": reason} for k in names]
                log(f"n={n:,} d={dim}: {kind} skipped: {reason}")
                continue
            rows += run_kind(case, kind, args, pq_m)
        return rows
    finally:
        del gallery
        gc.collect()
        if path is not None:
            path.unlink(missing_ok=True)


def run_kind(case: Case, kind: str, args: argparse.Namespace, pq_m: int) -> list[dict[str, Any]]:
    log(f"n={case.n:,} d={case.dim}: building {kind}")
    if args.build_blas_threshold is None:
        built = build(kind, case.gallery, args, pq_m)
    else:
        with blas_threshold(args.build_blas_threshold):
            built = build(kind, case.gallery, args, pq_m)
    log(f"n={case.n:,} d={case.dim}: {kind} built in {built.build_s:.1f} s, tuning")
    tune_built(built, case.calibration, case.calibration_truth, args.target_recall)
    rows = []
    if kind == "exact":
        timing = measure(built, case.queries)
        case.exact_p50_ms = timing["p50_ms"]
        rows.append(row_for(case, built, "exact", timing))
        with blas_threshold(0):
            timing = measure(built, case.queries)
        rows.append(row_for(case, built, "exact-blas", timing))
    else:
        rows.append(row_for(case, built, kind, measure(built, case.queries)))
    for row in rows:
        log(
            f"  {row['index']}: p50 {row['p50_ms']:.3f} ms, recall@10 {row['recall_at_10']}, "
            f"lead recall {row['lead_recall']}, params {row['params']}"
        )
    del built
    gc.collect()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("index", "n", "dim", "p50_ms", "p99_ms", "recall_at_10", "lead_recall")
    head += ("bytes_per_face", "build_s", "speedup_vs_exact")
    lines = ["  ".join(f"{h:>14}" for h in head)]
    for row in rows:
        if "skipped" in row:
            lines.append(f"{row['index']:>14}  {row['n']:>14}  {row['dim']:>14}  {row['skipped']}")
            continue
        lines.append("  ".join(f"{'-' if row[h] is None else row[h]!s:>14}" for h in head))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000], help="gallery sizes")
    parser.add_argument("--dim", type=int, nargs="+", default=[128], help="128 and/or 512")
    parser.add_argument("--index", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--queries", type=int, default=500, help="measured queries")
    parser.add_argument("--calibration-queries", type=int, default=200)
    parser.add_argument("--target-recall", type=float, default=0.99)
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--fit-photos", type=int, default=1500, help="real photos to fit on")
    parser.add_argument("--pca-dims", type=int, default=0, help="full-covariance components")
    parser.add_argument(
        "--cache", type=Path, default=CACHE_DIR, help="descriptor cache and memory-mapped vectors"
    )
    parser.add_argument("--ram-gb", type=float, default=20.0)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--pq-m", type=int, default=0, help="PQ sub-vectors (0: d/4, <= 64)")
    parser.add_argument(
        "--rerank", type=int, default=100, help="IVF-PQ candidates re-ranked per 10 results"
    )
    parser.add_argument(
        "--build-blas-threshold",
        type=int,
        default=None,
        help="faiss BLAS threshold while building (default: faiss's own, as the engine runs;"
        " 0 speeds up k-means of short PQ sub-vectors)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the JSON list only")
    args = parser.parse_args()
    # exact always runs, first: every other kind is measured against it.
    args.index = ["exact"] + [k for k in dict.fromkeys(args.index) if k != "exact"]

    vectors, labels = real_descriptors(args.faces, args.fit_photos, args.cache)
    model = fit_model(vectors, labels, args.pca_dims)
    log(f"model: {model.faces} real faces of {model.identities} people")
    bands = bands_for(dlib_space(1))
    log(f"bands of dlib_resnet_v1/1: weak {bands.weak} (FMR 1e-2), possible {bands.possible}")
    rows: list[dict[str, Any]] = []
    for dim in args.dim:
        synth = Synthesiser(model, dim, args.seed)
        edges = check_model(synth, vectors, labels)
        # The band edges are the model's own at 128-d; elsewhere the same rule (impostors'
        # FMR 1e-2) is applied to the synthetic faces.
        lead_edge = bands.weak if dim == model.dim else edges["fmr_1e-2"]
        for n in args.n:
            rows += run_case(synth, n, args, lead_edge)
    if not args.json:
        print(table(rows))
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
