"""Search speed, memory and recall of countenance's FAISS layouts against exact search, in one run.

    python benchmarks/search.py --n 100000 1000000 --dim 128 --index exact faiss-hnsw --json
    python benchmarks/search.py --model faceplugin --dim 512 --n 100000 --index exact faiss-ivfpq

Galleries are synthetic but shaped like real faces: drawn from a model fitted to descriptors of
real photos (``--faces``, see ``benchmarks/_descriptors.py``) computed by the pipeline
``--model`` (dlib's 128-d by default, or faceplugin's 512-d), identities of 4-8 faces each.
Queries (``--queries``) are half new faces of enrolled identities, half faces of identities
never enrolled.

Each kind is countenance's own :class:`~countenance.index.faiss.FaissIndex` with its layout
forced, built by ``rebuild`` exactly as ``countenance reindex`` builds it, and tuned by it
(efSearch, nprobe, re-ranking depth: the smallest reaching ``--target-recall`` recall@10 on
gallery vectors as queries): ``exact`` is the flat layout (faiss ``IndexFlatIP`` as faiss ships
it: BLAS only when queries x dim >= 128,000), ``exact-blas`` the same with that threshold at 0,
``faiss-hnsw`` the HNSW layout (a graph over 8-bit codes of the top principal components),
``faiss-ivfpq`` IVF (2-bit RaBitQ codes in inverted lists); both re-rank their short list
from memory-mapped float vectors.

Per kind and gallery size, one JSON row: p50/p99 single-query latency (top 10, one query per
call, one thread, through ``FaissIndex.search``), recall@10 against exact, lead recall (of the
exact top 10 with similarity at or above the weak band's edge, the share the index's top 10
holds: what a user of ``search --top 10`` loses; the band is ``--model``'s own, or where
``--dim`` is wider than the model, the similarity 1% of synthetic impostor pairs exceed) and
``lead_recall_at_100`` (the same for top
100), bytes per face in RAM (the serialised index: the approximate layouts' float vectors are
memory-mapped, not counted; ``bytes_per_face_on_disk`` counts them), build time including
tuning (all threads) and speed-up over ``exact`` at p50: the exact index is kept, and the
queries are searched in blocks of ``ALTERNATE`` by the measured kind, then by exact
(``exact_p50_ms``, ``exact_timed_alongside``), so that drift in the machine's speed during a
long run moves both sides of the ratio alike (where RAM cannot hold both, the exact row's own
p50 is used). Blocks, not single queries: an exact scan right before each search evicts what
a stream of searches keeps in the CPU's caches, and made an HNSW search at 10^6 faces ~45%
slower (2.0 ms against 1.4 ms) than in any deployment, which runs no exact scans.
``batch_ms_per_query`` is all queries in one call on one thread, the case faiss's BLAS
threshold decides.
Kinds that would not fit ``--ram-gb`` are skipped with a row saying what they need; a gallery
that does not fit in RAM is generated straight into IVF's vector file on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

# A sibling module: ``python benchmarks/search.py`` puts this folder on sys.path.
from _descriptors import (
    CACHE_DIR,
    CHUNK,
    MODELS,
    Matrix,
    Synthesiser,
    check_model,
    components_holding,
    fit_model,
    log,
    model_space,
    real_descriptors,
)

from countenance.index.faiss import FaissIndex
from countenance.index.faiss_layouts import (
    HnswLayout,
    IvfPqLayout,
    choose_nlist,
    rabitq_code_bytes,
)
from countenance.index.vectorfile import VectorFile
from countenance.scoring import bands_for
from countenance.types import EmbeddingSpace
from countenance.vision.registry import dlib_space

KINDS = ("exact", "faiss-hnsw", "faiss-ivfpq")
LAYOUT = {"exact": "flat", "faiss-hnsw": "hnsw", "faiss-ivfpq": "ivfpq"}
LEAD_POOL = 100
TOP = 10
ALTERNATE = 20  # queries per turn when the measured kind and exact take turns
COMPLETE = "gallery-complete"  # marks a kept gallery file as whole and untouched
GIB = 1 << 30
RAM_GALLERY_SHARE = 8  # a gallery up to this share of --ram-gb is generated in RAM

Ids = npt.NDArray[np.int64]


# -- memory --------------------------------------------------------------------------------------


def index_bytes(kind: str, n: int, dim: int) -> int:
    """What ``kind`` holds in RAM for ``n`` vectors while it is built, roughly."""
    flat = n * dim * 4
    if kind == "exact":
        return flat + n * 48  # ids and IDMap2's reverse map
    if kind == "faiss-hnsw":
        return n * HnswLayout.bytes_per_face(dim)
    nlist = choose_nlist(n)
    train = max(64 * nlist, 9984) * dim * 4
    coded = IvfPqLayout.code_dim(dim)  # wider faces are coded in 128 principal components
    # codes and ids, centroids, the k-means sample, and one chunk of vectors being added
    return n * (rabitq_code_bytes(coded) + 8) + nlist * coded * 4 + train + (1 << 18) * dim * 4


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


def mate_recall(
    found: Ids, truth_sims: Matrix, truth: Ids, mates: list[Ids], min_similarity: float, k: int
) -> float | None:
    """Of the probe's own identity's faces in the exact top ``k`` at or above
    ``min_similarity``, the share ``found``'s top ``k`` holds: the leads that are the person."""
    wanted = held = 0
    for f, sims, ids, own in zip(found, truth_sims, truth, mates, strict=True):
        leads = set(ids[:k][sims[:k] >= min_similarity].tolist()) & set(own.tolist())
        wanted += len(leads)
        held += len(leads & set(f[:k].tolist()))
    return held / wanted if wanted else None


def lead_recall(
    found: Ids, truth_sims: Matrix, truth: Ids, min_similarity: float, k: int
) -> float | None:
    """Of the exact top ``k`` with similarity >= ``min_similarity``, the share ``found``'s top
    ``k`` holds."""
    wanted = held = 0
    for f, sims, ids in zip(found, truth_sims, truth, strict=True):
        leads = set(ids[:k][sims[:k] >= min_similarity].tolist())
        wanted += len(leads)
        held += len(leads & set(f[:k].tolist()))
    return held / wanted if wanted else None


# -- measuring -----------------------------------------------------------------------------------


def measure(
    index: FaissIndex,
    queries: Matrix,
    batch: bool = True,
    baseline: FaissIndex | None = None,
) -> dict[str, Any]:
    """Single-query latencies (top 10, one thread), their results, and batch time per query
    (unless ``batch`` is false).

    With a ``baseline`` (the exact index), the queries are also searched there, in blocks
    of ``ALTERNATE`` taking turns with the index's, and its p50 is returned as
    ``exact_p50_ms``: a machine that slows down or speeds up during the run (this one drifts
    by 10-20% over minutes) moves both alike and their ratio holds. Each block of the index
    starts with an untimed search (the block before's last query), so that what the exact
    scan evicted from the CPU's caches is back as a stream of searches keeps it.
    """
    with threads(1):
        for query in queries[:10]:  # warm caches and lazily built tables
            index.search(query[None, :], TOP)
            if baseline is not None:
                baseline.search(query[None, :], TOP)
        found = np.empty((len(queries), TOP), dtype=np.int64)
        times = np.empty(len(queries))
        exact_times = np.empty(len(queries))
        for start in range(0, len(queries), ALTERNATE):
            block = range(start, min(start + ALTERNATE, len(queries)))
            if baseline is not None:
                # untimed, warm again: the block before's last query (the first block: the
                # last query, timed long after)
                index.search(queries[start - 1][None, :], TOP)
            for i in block:
                started = time.perf_counter()
                found[i] = index.search(queries[i : i + 1], TOP)[1][0]
                times[i] = time.perf_counter() - started
            if baseline is not None:
                for i in block:
                    started = time.perf_counter()
                    baseline.search(queries[i : i + 1], TOP)
                    exact_times[i] = time.perf_counter() - started
        per_query = None
        if batch:
            started = time.perf_counter()
            index.search(queries, TOP)
            per_query = (time.perf_counter() - started) / len(queries) * 1e3
    return {
        "found": found,
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "batch_ms_per_query": per_query,
        "exact_p50_ms": None if baseline is None else float(np.percentile(exact_times, 50) * 1e3),
    }


@dataclass
class Case:
    """One gallery size and dimension, with its queries and their exact answers."""

    n: int
    dim: int
    gallery: Matrix
    placement: str  # "ram" or "mmap"
    directory: Path  # where the indexes keep their files (the mmap gallery is IVF's)
    queries: Matrix
    truth_sims: Matrix
    truth: Ids
    mates: list[Ids]
    lead_min_similarity: float
    dim_note: str | None
    fitted_to: str  # the space of the real descriptors the gallery's model is fitted to
    exact_p50_ms: float | None = None
    cached: bool = True  # in RAM or in the page cache: batches are timed too
    baseline: FaissIndex | None = None  # the exact index, kept to time the others against


def row_for(
    case: Case,
    index: FaissIndex,
    name: str,
    timing: dict[str, Any],
    build_s: float,
    pool_queries: int | None = None,
) -> dict[str, Any]:
    """The JSON row of one index kind (``name`` tells exact from exact-blas); the top-100
    figure is over the first ``pool_queries`` queries (all when None)."""
    m = len(timing["found"])  # exact-blas is timed on the first queries only
    truth, truth_sims = case.truth[:m], case.truth_sims[:m]
    p = m if pool_queries is None else min(m, pool_queries)
    pool = index.search(case.queries[:p], LEAD_POOL)[1]
    per_face = serialised_bytes(index._layout.index) / case.n
    on_disk = per_face + 4 * case.dim if index.layout in ("hnsw", "ivfpq") else None
    p50 = timing["p50_ms"]
    exact_p50 = timing["exact_p50_ms"] or case.exact_p50_ms
    speedup = None if exact_p50 is None else exact_p50 / p50
    edge = case.lead_min_similarity
    leads = [int((s[:TOP] >= edge).sum()) for s in truth_sims]
    params: dict[str, Any] = {"kind": index.kind, "target_recall": index.target_recall}
    if index.ef_search is not None:
        params["efSearch"] = index.ef_search
        params["rerank_per_result"] = index._layout.RERANK  # type: ignore[union-attr]
    if index.nprobe is not None:
        params["nprobe"] = index.nprobe
        params["rerank_per_result"] = index._layout.rerank  # type: ignore[union-attr]
    row: dict[str, Any] = {
        "index": name,
        "n": case.n,
        "dim": case.dim,
        "p50_ms": round(p50, 4),
        "p99_ms": round(timing["p99_ms"], 4),
        "recall_at_10": round(recall_at(timing["found"], truth, TOP), 4),
        "lead_recall": _rounded(lead_recall(timing["found"], truth_sims, truth, edge, TOP)),
        "mate_recall": _rounded(
            mate_recall(timing["found"], truth_sims, truth, case.mates[:m], edge, TOP)
        ),
        "lead_recall_at_100": _rounded(
            lead_recall(pool, truth_sims[:p], truth[:p], edge, LEAD_POOL)
        ),
        "bytes_per_face": round(per_face, 1),
        "bytes_per_face_on_disk": _rounded(on_disk, 1),
        "build_s": round(build_s, 3),
        "speedup_vs_exact": _rounded(speedup, 2),
        "exact_p50_ms": _rounded(exact_p50),
        "exact_timed_alongside": timing["exact_p50_ms"] is not None,
        "batch_ms_per_query": _rounded(timing["batch_ms_per_query"]),
        "params": params,
        "leads_per_query": round(float(np.mean(leads)), 2),
        "lead_min_similarity": round(edge, 4),
        "fitted_to": case.fitted_to,
        "queries": m,
        "queries_at_100": p,
        "gallery": case.placement,
    }
    if case.dim_note:
        row["dim_note"] = case.dim_note
    return row


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- for sibling benchmarks (ivf_sweep.py, hnsw_codes.py) ----------------------------------------


@dataclass
class Workload:
    """A synthetic gallery in RAM, its queries, and their exact top 100."""

    gallery: Matrix
    queries: Matrix
    mates: list[Ids]
    truth_sims: Matrix
    truth: Ids
    lead_edge: float  # the weak band's edge at 128-d


def add_workload_arguments(parser: argparse.ArgumentParser, fit_photos: int) -> None:
    parser.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--fit-photos", type=int, default=fit_photos, help="real photos to fit on")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the JSON list only")


def load_workload(args: argparse.Namespace) -> Workload:
    """The 128-d gallery, queries and exact answers that ``args`` describe."""
    vectors, labels = real_descriptors(args.faces, args.fit_photos, CACHE_DIR)
    synth = Synthesiser(fit_model(vectors, labels), 128, args.seed)
    gallery = np.empty((args.n, synth.dim), dtype=np.float32)
    for start, chunk in synth.gallery_chunks(args.n):
        gallery[start : start + len(chunk)] = chunk
    queries, _ = synth.queries(args.queries, args.n, tag=1)
    truth_sims, truth = exact_top(gallery, queries, LEAD_POOL)
    return Workload(
        gallery,
        queries,
        synth.mates(args.queries, args.n, tag=1),
        truth_sims,
        truth,
        bands_for(dlib_space(1)).weak,
    )


def timed(search: Any, queries: Matrix) -> tuple[float, Ids]:
    """p50 ms of ``search`` (one query, as a 1-row matrix, to its top-10 ids) over ``queries``,
    one at a time, and what it found."""
    times, found = [], []
    for i in range(len(queries)):
        started = time.perf_counter()
        found.append(search(queries[i : i + 1]))
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3), np.array(found)


def exact_p50_ms(gallery: Matrix, queries: Matrix) -> float:
    """p50 of the exact scan (faiss ``IndexFlatIP``, one thread) over ``queries``."""
    flat = faiss.IndexFlatIP(gallery.shape[1])
    flat.add(gallery)
    with threads(1):
        ms, _ = timed(lambda q: flat.search(q, TOP)[1][0], queries)
    log(f"exact p50 {ms:.2f} ms")
    return ms


# -- driving -------------------------------------------------------------------------------------


def space_of(dim: int) -> EmbeddingSpace:
    return EmbeddingSpace("synthetic", "1", dim)


def place_gallery(
    synth: Synthesiser, n: int, ram: int, directory: Path
) -> tuple[Matrix | None, str]:
    """The gallery in RAM when it is small beside ``ram``, else written straight into the
    approximate layouts' vector file in ``directory`` (row i is face id i) when the disk has
    room. A vector file that ``directory`` already holds complete (``keep_gallery``) is
    reused.

    A gallery in RAM is held three times while an approximate layout is timed (the array,
    the exact index's copy, the layout's own vector file in the page cache); at 10^7 faces
    that left too little page cache for the vector file, and re-ranking reads went to disk
    (IVF 11.5 ms there against 9 ms in a process holding the index alone). In the file it
    is held once for all of them, as the page cache holds the vector file of a deployment.
    """
    size = n * synth.dim * 4
    path = directory / f"{space_of(synth.dim).key}.vectors"
    complete = directory / COMPLETE
    if RAM_GALLERY_SHARE * size <= ram:
        gallery: Matrix = np.empty((n, synth.dim), dtype=np.float32)
        placement = "ram"
    elif complete.is_file() and path.is_file() and path.stat().st_size == size:
        log(f"  reusing the gallery in {path}")
        complete.unlink()  # until the run ends: the index writes into this file
        return np.memmap(path, dtype=np.float32, mode="r", shape=(n, synth.dim)), "mmap"
    else:
        if shutil.disk_usage(directory).free < size * 1.05:
            return None, f"needs {size / GIB:.1f} GiB of RAM or disk for the vectors"
        store = VectorFile(path, synth.dim)  # creates it; rows are written through the map
        store.close()
        with open(path, "r+b") as fh:
            fh.truncate(size)
        gallery = np.memmap(path, dtype=np.float32, mode="r+", shape=(n, synth.dim))
        placement = "mmap"
    for start, vectors in synth.gallery_chunks(n):
        gallery[start : start + len(vectors)] = vectors
        if start and start % (CHUNK * 40) == 0:
            log(f"  {start:,} of {n:,} generated")
    if isinstance(gallery, np.memmap):
        gallery.flush()
    return gallery, placement


def run_case(
    synth: Synthesiser, n: int, args: argparse.Namespace, lead_edge: float
) -> list[dict[str, Any]]:
    dim, ram = synth.dim, int(args.ram_gb * GIB)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.keep_gallery:  # one folder per gallery, kept for the next run
        directory = args.cache / f"gallery-{synth.key}-n{n}"
        directory.mkdir(exist_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(dir=args.cache, prefix="search-bench-"))
    log(f"n={n:,} d={dim}: generating gallery")
    gallery, placement = place_gallery(synth, n, ram, directory)
    if gallery is None:
        shutil.rmtree(directory, ignore_errors=True)
        return [{"index": k, "n": n, "dim": dim, "skipped": placement} for k in args.index]
    try:
        queries, _ = synth.queries(args.queries, n, tag=1)
        mates = synth.mates(args.queries, n, tag=1)
        log(f"n={n:,} d={dim}: exact truth for {len(queries)} queries")
        truth_sims, truth = exact_top(gallery, queries, LEAD_POOL)
        case = Case(
            n,
            dim,
            gallery,
            placement,
            directory,
            queries,
            truth_sims,
            truth,
            mates,
            lead_edge,
            synth.dim_note,
            model_space(args.model).key,
        )
        # in RAM, or in the vector file that the page cache holds while the others run
        case.cached = placement == "ram" or 2 * n * dim * 4 <= ram
        in_ram = n * dim * 4 if case.cached else 0
        rows = []
        for kind in args.index:  # exact comes first: it is the baseline of the others
            need = index_bytes(kind, n, dim) + in_ram
            if case.baseline is not None and need + index_bytes("exact", n, dim) > ram:
                case.baseline = None  # no room to keep it: ratios use its own run's p50
                gc.collect()
            if need > ram or (not case.cached and kind != "faiss-ivfpq"):
                reason = (
                    "the gallery does not fit in RAM (it is on disk)"
                    if not case.cached
                    else f"needs {need / GIB:.2f} GiB, --ram-gb is {args.ram_gb:g}"
                )
                names = ("exact", "exact-blas") if kind == "exact" else (kind,)
                rows += [{"index": k, "n": n, "dim": dim, "skipped": reason} for k in names]
                log(f"n={n:,} d={dim}: {kind} skipped: {reason}")
                continue
            rows += run_kind(case, kind, args)
        return rows
    finally:
        del gallery
        gc.collect()
        if not args.keep_gallery:
            shutil.rmtree(directory, ignore_errors=True)
        else:  # the index files go; the gallery stays, whole again once every index is done
            for leftover in directory.iterdir():
                if not leftover.name.endswith(".vectors"):
                    leftover.unlink()
            if placement == "mmap":
                (directory / COMPLETE).touch()


def run_kind(case: Case, kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    log(f"n={case.n:,} d={case.dim}: building {kind}")
    index = FaissIndex(
        space_of(case.dim), case.directory, layout=LAYOUT[kind], target_recall=args.target_recall
    )
    ids = np.arange(case.n, dtype=np.int64)
    started = time.perf_counter()
    if case.placement == "mmap" and kind != "exact":  # already in the layout's vector file
        index.rebuild(ids, VectorFile(index.vectors_path, case.dim))
    else:
        index.rebuild(ids, case.gallery)
    build_s = time.perf_counter() - started
    log(f"n={case.n:,} d={case.dim}: {index.kind} built and tuned in {build_s:.1f} s")
    rows = []
    if kind == "exact":
        timing = measure(index, case.queries)
        case.exact_p50_ms = timing["p50_ms"]
        case.baseline = index
        rows.append(row_for(case, index, "exact", timing, build_s, args.pool_queries))
        with blas_threshold(0):  # ~5x slower one at a time: a sample of queries says so
            timing = measure(index, case.queries[: args.blas_queries])
        rows.append(row_for(case, index, "exact-blas", timing, build_s, args.pool_queries))
    else:  # a gallery on disk: one batch would take as long as all the single queries
        timing = measure(index, case.queries, batch=case.cached, baseline=case.baseline)
        rows.append(row_for(case, index, kind, timing, build_s, args.pool_queries))
    for row in rows:
        log(
            f"  {row['index']}: p50 {row['p50_ms']:.3f} ms ({row['speedup_vs_exact']}x "
            f"exact's {row['exact_p50_ms']} ms), "
            f"recall@10 {row['recall_at_10']}, lead recall {row['lead_recall']} "
            f"(mates {row['mate_recall']}) "
            f"(top 100: {row['lead_recall_at_100']}), {row['bytes_per_face']} B/face, "
            f"params {row['params']}"
        )
    del index
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
    parser.add_argument("--target-recall", type=float, default=0.99)
    parser.add_argument(
        "--blas-queries", type=int, default=100, help="queries timed for exact-blas"
    )
    parser.add_argument(
        "--pool-queries",
        type=int,
        default=None,
        help="queries searched for the top-100 lead recall (default: all; fewer at 10^8)",
    )
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="dlib",
        help="the pipeline whose real descriptors the gallery's model is fitted to (its bands"
        " give the lead edge)",
    )
    parser.add_argument("--fit-photos", type=int, default=1500, help="real photos to fit on")
    parser.add_argument("--pca-dims", type=int, default=0, help="full-covariance components")
    parser.add_argument(
        "--cache", type=Path, default=CACHE_DIR, help="descriptor cache and scratch index files"
    )
    parser.add_argument("--ram-gb", type=float, default=20.0)
    parser.add_argument(
        "--keep-gallery",
        action="store_true",
        help="keep a gallery too large for RAM in --cache and reuse it next time (51 GB at 1e8)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the JSON list only")
    args = parser.parse_args()
    # exact always runs, first: every other kind is measured against it.
    args.index = ["exact"] + [k for k in dict.fromkeys(args.index) if k != "exact"]

    vectors, labels = real_descriptors(args.faces, args.fit_photos, args.cache, args.model)
    model = fit_model(vectors, labels, args.pca_dims)
    space = model_space(args.model)
    log(
        f"model: {model.faces} real {space.dim}-d faces of {model.identities} people "
        f"({space.key}); {components_holding(vectors, 0.97)} principal components hold 97% "
        "of their variance"
    )
    bands = bands_for(space)
    log(f"bands of {space.key}: weak {bands.weak} (FMR 1e-2), possible {bands.possible}")
    rows: list[dict[str, Any]] = []
    for dim in args.dim:
        synth = Synthesiser(model, dim, args.seed)
        edges = check_model(synth, vectors, labels)
        # The band edges are the model's own at its dimension; elsewhere the same rule (impostors'
        # FMR 1e-2) is applied to the synthetic faces.
        lead_edge = bands.weak if dim == model.dim else edges["fmr_1e-2"]
        for n in args.n:
            rows += run_case(synth, n, args, lead_edge)
    if not args.json:
        print(table(rows))
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
