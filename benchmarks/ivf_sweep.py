"""How much of an IVF index a search must read for recall, with 8-bit PQ and 4-bit fast-scan codes.

    python benchmarks/ivf_sweep.py --n 1000000 --json

On a synthetic gallery like ``search.py``'s, builds FAISS IVF-PQ (``IndexIVFPQ`` m=32 x 8 bits,
and ``IndexIVFPQFastScan`` m=64 x 4 bits; both 32 bytes a face) with ~4*sqrt(n) lists, and for
each nprobe and short-list depth re-ranks the short list by the float vectors (as countenance
does) and reports p50 single-query latency (one thread), recall@10 and mate recall against
exact search, and the speed-up over the exact scan measured in the same run. It shows the
trade-off ``FaissIndex`` tunes over: which (nprobe, depth) pairs reach a target recall, and at
what cost. One JSON row per (codes, nprobe, depth).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from _descriptors import CACHE_DIR, Matrix, Synthesiser, fit_model, log, real_descriptors
from search import Ids, exact_top, mate_recall, recall_at

from countenance.index.faiss_layouts import choose_nlist
from countenance.scoring import bands_for
from countenance.vision.dlib_models import dlib_space


def p50_ms(search: Callable[[Matrix], Ids], queries: Matrix) -> tuple[float, Ids]:
    times, found = [], []
    for i in range(len(queries)):
        started = time.perf_counter()
        found.append(search(queries[i : i + 1]))
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3), np.array(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--depth", type=int, nargs="+", default=[200, 800, 3200])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--fit-photos", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the JSON list only")
    args = parser.parse_args()

    vectors, labels = real_descriptors(args.faces, args.fit_photos, CACHE_DIR)
    synth = Synthesiser(fit_model(vectors, labels), 128, args.seed)
    gallery = np.empty((args.n, 128), dtype=np.float32)
    for start, chunk in synth.gallery_chunks(args.n):
        gallery[start : start + len(chunk)] = chunk
    queries, _ = synth.queries(args.queries, args.n, tag=1)
    mates = synth.mates(args.queries, args.n, tag=1)
    truth_sims, truth = exact_top(gallery, queries, 100)
    edge = bands_for(dlib_space(1)).weak

    flat = faiss.IndexFlatIP(128)
    flat.add(gallery)
    faiss.omp_set_num_threads(1)
    exact_ms, _ = p50_ms(lambda q: flat.search(q, 10)[1][0], queries)
    log(f"exact p50 {exact_ms:.2f} ms")

    def reranked(index: Any, depth: int) -> Callable[[Matrix], Ids]:
        def search(query: Matrix) -> Ids:
            _, candidates = index.search(query, depth)
            candidates = candidates[0][candidates[0] >= 0]
            sims = gallery[candidates] @ query[0]
            return candidates[np.argsort(-sims)[:10]]

        return search

    nlist = choose_nlist(args.n)
    ip = faiss.METRIC_INNER_PRODUCT
    codes = {
        "pq32x8": lambda q: faiss.IndexIVFPQ(q, 128, nlist, 32, 8, ip),
        "pq64x4fs": lambda q: faiss.IndexIVFPQFastScan(q, 128, nlist, 64, 4, ip),
    }
    rows: list[dict[str, Any]] = []
    for name, make in codes.items():
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        index = make(faiss.IndexFlatIP(128))
        rng = np.random.default_rng(args.seed)
        sample = min(args.n, 40 * nlist)
        index.train(gallery[np.sort(rng.choice(args.n, sample, replace=False))])
        index.add(gallery)
        faiss.omp_set_num_threads(1)
        for nprobe in args.nprobe:
            index.nprobe = nprobe
            for depth in args.depth:
                ms, found = p50_ms(reranked(index, depth), queries)
                row = {
                    "codes": name,
                    "n": args.n,
                    "nlist": nlist,
                    "nprobe": nprobe,
                    "depth": depth,
                    "p50_ms": round(ms, 3),
                    "speedup_vs_exact": round(exact_ms / ms, 2),
                    "recall_at_10": round(recall_at(found, truth, 10), 4),
                    "mate_recall": round(
                        mate_recall(found, truth_sims, truth, mates, edge, 10) or 0.0, 4
                    ),
                    "exact_p50_ms": round(exact_ms, 3),
                }
                log(str(row))
                rows.append(row)
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
