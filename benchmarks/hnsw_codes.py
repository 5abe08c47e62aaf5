"""What the HNSW graph should hold per face, measured side by side against the exact scan.

    python benchmarks/hnsw_codes.py --n 1000000 --variants full-flat full-sq8 pca64-sq8 --json
    python benchmarks/hnsw_codes.py --n 1000000 --variants pca64-sq8 --rerank 50 --huge-pages

Each variant is a raw FAISS HNSW graph (M = 32, efConstruction 200, L2 over unit vectors)
over one encoding of the same synthetic gallery (see ``benchmarks/_descriptors.py``):
``full-flat`` float vectors, ``full-fp16`` / ``full-sq8`` all dimensions as 16-bit floats or
8-bit codes, ``pcaP-sq8`` / ``pcaP-flat`` the top P principal components. For each efSearch
and re-ranking depth (candidates re-ranked by their float vectors, 0 for none) one JSON row:
p50 single-query latency (one thread), speed-up over the exact scan timed in the same run,
recall@10, lead recall and mate recall as ``benchmarks/search.py`` defines them, build time
and the encoding's bytes per face. This is the measurement behind the HNSW layout's choice
of codes (docs/scaling.md); ``benchmarks/search.py`` measures the layout itself.

``--huge-pages`` times each variant twice: as built (4 KiB pages), then with its codes and
links collapsed into 2 MiB pages (``madvise(MADV_COLLAPSE)``, Linux 6.1+), to see whether
the walk waits on the TLB (rows with ``"pages": "2M"``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from typing import Any

import faiss
import numpy as np

# Sibling modules: ``python benchmarks/hnsw_codes.py`` puts this folder on sys.path.
from _descriptors import log
from search import (
    add_workload_arguments,
    exact_p50_ms,
    lead_recall,
    load_workload,
    mate_recall,
    recall_at,
    threads,
    timed,
)

TOP = 10
HUGE_PAGE = 2 << 20
MADV_COLLAPSE = 25


def collapse(graph: Any) -> int:
    """Collapse ``graph``'s codes and links into 2 MiB pages; the number of huge pages made."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    storage = faiss.downcast_index(graph.storage)
    made = 0
    for vector in (storage.codes, graph.hnsw.neighbors, graph.hnsw.offsets):
        view = faiss.rev_swig_ptr(vector.data(), vector.size())
        start = -(-view.ctypes.data // HUGE_PAGE) * HUGE_PAGE  # whole pages inside the array
        end = (view.ctypes.data + view.nbytes) // HUGE_PAGE * HUGE_PAGE
        for page in range(start, end, HUGE_PAGE):
            if libc.madvise(page, HUGE_PAGE, MADV_COLLAPSE) != 0:
                raise OSError(ctypes.get_errno(), "madvise(MADV_COLLAPSE) failed")
            made += 1
    return made


def build(variant: str, dim: int, gallery: np.ndarray) -> tuple[Any, Any, int]:
    """The index of ``variant``, its HNSW graph (for efSearch) and its code bytes per face."""
    dims, codes = variant.split("-")
    kept = dim if dims == "full" else int(dims.removeprefix("pca"))
    quantizers = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}
    if codes == "flat":
        graph = faiss.IndexHNSWFlat(kept, 32, faiss.METRIC_L2)
        per_face = kept * 4
    else:
        graph = faiss.IndexHNSWSQ(kept, quantizers[codes], 32, faiss.METRIC_L2)
        per_face = kept * (2 if codes == "fp16" else 1)
    graph.hnsw.efConstruction = 200
    index = graph if kept == dim else faiss.IndexPreTransform(faiss.PCAMatrix(dim, kept), graph)
    index.train(gallery[:: max(1, len(gallery) // 100_000)])
    for start in range(0, len(gallery), 65536):
        index.add(gallery[start : start + 65536])
    return index, graph, per_face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser, fit_photos=1500)
    parser.add_argument("--variants", nargs="+", default=["full-flat", "full-sq8", "pca64-sq8"])
    parser.add_argument("--ef", type=int, nargs="+", default=[128, 192, 256, 320, 384])
    parser.add_argument("--rerank", type=int, nargs="+", default=[0, 20, 50])
    parser.add_argument("--huge-pages", action="store_true", help="time again on 2 MiB pages")
    args = parser.parse_args()

    work = load_workload(args)
    gallery = work.gallery
    exact_ms = exact_p50_ms(gallery, work.queries)

    rows: list[dict[str, Any]] = []
    for variant in args.variants:
        started = time.perf_counter()
        index, graph, per_face = build(variant, gallery.shape[1], gallery)  # every core
        build_s = time.perf_counter() - started
        for pages in ("4K", "2M") if args.huge_pages else ("4K",):
            if pages == "2M":
                log(f"{variant}: {collapse(graph)} huge pages")
            rows += measure(args, work, index, graph, variant, pages, per_face, build_s, exact_ms)
        del index, graph
    print(json.dumps(rows, indent=None if args.json else 2))


def measure(
    args: argparse.Namespace,
    work: Any,
    index: Any,
    graph: Any,
    variant: str,
    pages: str,
    per_face: int,
    build_s: float,
    exact_ms: float,
) -> list[dict[str, Any]]:
    """One row per (efSearch, re-ranking depth) of ``index``, timed one query at a time."""
    gallery = work.gallery
    rows: list[dict[str, Any]] = []
    for ef in args.ef:
        graph.hnsw.efSearch = ef
        for depth in args.rerank:
            pool = max(TOP, depth)
            if ef < pool:
                continue

            def search(query: np.ndarray, index: Any = index, pool: int = pool) -> Any:
                _, ids = index.search(query, pool)
                if pool == TOP:
                    return ids[0][:TOP]
                sims = gallery[ids[0]] @ query[0]
                return ids[0][np.argsort(-sims)[:TOP]]

            with threads(1):
                p50, found = timed(search, work.queries)
            truth, sims = work.truth, work.truth_sims
            row = {
                "variant": variant,
                "pages": pages,
                "n": args.n,
                "efSearch": ef,
                "rerank": depth,
                "p50_ms": round(p50, 3),
                "exact_p50_ms": round(exact_ms, 3),
                "speedup_vs_exact": round(exact_ms / p50, 2),
                "recall_at_10": round(recall_at(found, truth, TOP), 4),
                "lead_recall": round(
                    lead_recall(found, sims, truth, work.lead_edge, TOP) or 0.0, 4
                ),
                "mate_recall": round(
                    mate_recall(found, sims, truth, work.mates, work.lead_edge, TOP) or 0.0, 4
                ),
                "code_bytes_per_face": per_face,
                "build_s": round(build_s, 1),
            }
            log(json.dumps(row))
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
