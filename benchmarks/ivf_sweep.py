"""How much of an IVF index a search must read for recall, with PQ and RaBitQ codes.

    python benchmarks/ivf_sweep.py --n 1000000 --json

On a synthetic gallery like ``search.py``'s, builds FAISS IVF indexes with ~2*sqrt(n) lists
over four kinds of codes (``--codes``): ``IndexIVFPQ`` m=32 x 8 bits and
``IndexIVFPQFastScan`` m=64 x 4 bits (both 32 bytes a face), and ``IndexIVFRaBitQFastScan``
with 1 and 2 bits a dimension (24 and 52 bytes at 128-d; the 2-bit one is countenance's), and for
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
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np
from _descriptors import Matrix, log
from search import (
    Ids,
    add_workload_arguments,
    exact_p50_ms,
    load_workload,
    mate_recall,
    recall_at,
    timed,
)

from countenance.index.faiss_layouts import choose_nlist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser, fit_photos=600)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--depth", type=int, nargs="+", default=[200, 800, 3200])
    parser.add_argument(
        "--codes",
        nargs="+",
        choices=("pq32x8", "pq64x4fs", "rabitq1fs", "rabitq2fs"),
        default=["pq32x8", "pq64x4fs", "rabitq1fs", "rabitq2fs"],
    )
    args = parser.parse_args()

    work = load_workload(args)
    gallery, queries = work.gallery, work.queries
    exact_ms = exact_p50_ms(gallery, queries)

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
        "rabitq1fs": lambda q: faiss.IndexIVFRaBitQFastScan(q, 128, nlist, ip, 32, True, 1),
        "rabitq2fs": lambda q: faiss.IndexIVFRaBitQFastScan(q, 128, nlist, ip, 32, True, 2),
    }
    rows: list[dict[str, Any]] = []
    for name in args.codes:
        make = codes[name]
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
                ms, found = timed(reranked(index, depth), queries)
                row = {
                    "codes": name,
                    "n": args.n,
                    "nlist": nlist,
                    "nprobe": nprobe,
                    "depth": depth,
                    "p50_ms": round(ms, 3),
                    "speedup_vs_exact": round(exact_ms / ms, 2),
                    "recall_at_10": round(recall_at(found, work.truth, 10), 4),
                    "mate_recall": round(
                        mate_recall(
                            found, work.truth_sims, work.truth, work.mates, work.lead_edge, 10
                        )
                        or 0.0,
                        4,
                    ),
                    "exact_p50_ms": round(exact_ms, 3),
                }
                log(str(row))
                rows.append(row)
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
