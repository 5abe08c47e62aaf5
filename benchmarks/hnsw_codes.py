"""What the HNSW graph should hold per face, measured side by side against the exact scan.

    python benchmarks/hnsw_codes.py --n 1000000 --variants full-flat full-sq8 pca64-sq8 --json

Each variant is a raw FAISS HNSW graph (M = 32, efConstruction 200, L2 over unit vectors)
over one encoding of the same synthetic gallery (see ``benchmarks/_descriptors.py``):
``full-flat`` float vectors, ``full-fp16`` / ``full-sq8`` all dimensions as 16-bit floats or
8-bit codes, ``pcaP-sq8`` / ``pcaP-flat`` the top P principal components. For each efSearch
and re-ranking depth (candidates re-ranked by their float vectors, 0 for none) one JSON row:
p50 single-query latency (one thread), speed-up over the exact scan timed in the same run,
recall@10, lead recall and mate recall as ``benchmarks/search.py`` defines them, build time
and the encoding's bytes per face. This is the measurement behind the HNSW layout's choice
of codes (docs/scaling.md); ``benchmarks/search.py`` measures the layout itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

# Sibling modules: ``python benchmarks/hnsw_codes.py`` puts this folder on sys.path.
from _descriptors import CACHE_DIR, Synthesiser, fit_model, log, real_descriptors
from search import exact_top, lead_recall, mate_recall, recall_at

from countenance.scoring import bands_for
from countenance.vision.dlib_models import dlib_space

TOP = 10


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
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--variants", nargs="+", default=["full-flat", "full-sq8", "pca64-sq8"])
    parser.add_argument("--ef", type=int, nargs="+", default=[128, 192, 256, 320, 384])
    parser.add_argument("--rerank", type=int, nargs="+", default=[0, 20, 50])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--fit-photos", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the JSON list only")
    args = parser.parse_args()

    vectors, labels = real_descriptors(args.faces, args.fit_photos, CACHE_DIR)
    synth = Synthesiser(fit_model(vectors, labels), 128, args.seed)
    gallery = np.empty((args.n, synth.dim), np.float32)
    for start, chunk in synth.gallery_chunks(args.n):
        gallery[start : start + len(chunk)] = chunk
    queries, _ = synth.queries(args.queries, args.n, tag=1)
    mates = synth.mates(args.queries, args.n, tag=1)
    truth_sims, truth = exact_top(gallery, queries, 100)
    edge = bands_for(dlib_space(1)).weak

    all_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    flat = faiss.IndexFlatIP(synth.dim)
    flat.add(gallery)
    times = []
    for query in queries[:200]:
        started = time.perf_counter()
        flat.search(query[None, :], TOP)
        times.append(time.perf_counter() - started)
    exact_p50 = float(np.median(times) * 1e3)
    del flat
    log(f"exact p50 {exact_p50:.2f} ms")

    rows: list[dict[str, Any]] = []
    for variant in args.variants:
        faiss.omp_set_num_threads(all_threads)  # builds use every core, searches one
        started = time.perf_counter()
        index, graph, per_face = build(variant, synth.dim, gallery)
        build_s = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        for ef in args.ef:
            graph.hnsw.efSearch = ef
            for depth in args.rerank:
                pool = max(TOP, depth)
                if ef < pool:
                    continue
                found = np.empty((len(queries), TOP), np.int64)
                times = []
                for i, query in enumerate(queries):
                    started = time.perf_counter()
                    _, ids = index.search(query[None, :], pool)
                    if depth:
                        sims = gallery[ids[0]] @ query
                        found[i] = ids[0][np.argsort(-sims)[:TOP]]
                    else:
                        found[i] = ids[0][:TOP]
                    times.append(time.perf_counter() - started)
                p50 = float(np.median(times[20:]) * 1e3)
                row = {
                    "variant": variant,
                    "n": args.n,
                    "efSearch": ef,
                    "rerank": depth,
                    "p50_ms": round(p50, 3),
                    "exact_p50_ms": round(exact_p50, 3),
                    "speedup_vs_exact": round(exact_p50 / p50, 2),
                    "recall_at_10": round(recall_at(found, truth, TOP), 4),
                    "lead_recall": round(lead_recall(found, truth_sims, truth, edge, TOP) or 0, 4),
                    "mate_recall": round(
                        mate_recall(found, truth_sims, truth, mates, edge, TOP) or 0, 4
                    ),
                    "code_bytes_per_face": per_face,
                    "build_s": round(build_s, 1),
                }
                log(json.dumps(row))
                rows.append(row)
        del index, graph
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
