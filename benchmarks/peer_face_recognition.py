"""countenance search against the face_recognition library's approach, side by side.

    python benchmarks/peer_face_recognition.py --n 10000 100000 1000000 --json

The peer is ageitgey/face_recognition's way of finding a face among known ones: the same dlib
model, and ``face_distance`` (a Euclidean distance from the probe to every known encoding,
``np.linalg.norm(known - probe, axis=1)``) over a list of encodings, best first. It is
reproduced here exactly rather than installed (its package builds dlib from source).
countenance answers with its vector index as the engine opens it (``FaissIndex`` with the
engine's settings: exact up to 200,000 faces, HNSW to 2,000,000, IVF beyond, tuned to
recall@10 0.99).
Both run in this process, one query at a time, on the same synthetic gallery drawn from a model
fitted to real descriptors (see ``_descriptors.py``). Each row: p50/p99 per query for both,
the speed-up, and how many of the peer's top 10 countenance also returns.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _descriptors import CACHE_DIR, Synthesiser, fit_model, log, real_descriptors

from countenance.config import Settings
from countenance.index.faiss import FaissIndex
from countenance.vision.registry import dlib_space


def face_distance(face_encodings: np.ndarray, face_to_compare: np.ndarray) -> np.ndarray:
    """face_recognition.face_distance, verbatim in substance."""
    if len(face_encodings) == 0:
        return np.empty(0)
    return np.linalg.norm(face_encodings - face_to_compare, axis=1)


def peer_top10(known: np.ndarray, probe: np.ndarray) -> np.ndarray:
    distances = face_distance(known, probe)
    best = np.argpartition(distances, 10)[:10]
    return best[np.argsort(distances[best])]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--fit-photos", type=int, default=600)
    parser.add_argument("--cache", type=Path, default=CACHE_DIR)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", action="store_true", help="print the JSON list only")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)  # single-query latency, one core for both
    vectors, labels = real_descriptors(args.faces, args.fit_photos, args.cache)
    synth = Synthesiser(fit_model(vectors, labels), 128, args.seed)
    settings = Settings()
    rows: list[dict[str, Any]] = []
    for n in args.n:
        known = np.concatenate([chunk for _, chunk in synth.gallery_chunks(n)])
        queries, _ = synth.queries(args.queries, n, tag=3)
        log(f"n={n:,}: building countenance's index")
        with tempfile.TemporaryDirectory() as tmp:
            index = FaissIndex(
                dlib_space(1),
                Path(tmp),
                approx_threshold=settings.approx_threshold,
                target_recall=settings.target_recall,
            )
            started = time.perf_counter()
            index.add(np.arange(n, dtype=np.int64), known)
            build_s = time.perf_counter() - started
            peer_t: list[float] = []
            ours_t: list[float] = []
            overlap = []
            for q in queries:
                t0 = time.perf_counter()
                theirs = peer_top10(known, q)
                t1 = time.perf_counter()
                _, ours = index.search(q[None, :], 10)
                t2 = time.perf_counter()
                peer_t.append(t1 - t0)
                ours_t.append(t2 - t1)
                overlap.append(len(set(theirs.tolist()) & set(ours[0].tolist())) / 10)
            peer_p50, peer_p99 = percentiles(peer_t)
            ours_p50, ours_p99 = percentiles(ours_t)
            rows.append(
                {
                    "n": n,
                    "peer": "face_recognition.face_distance",
                    "peer_p50_ms": round(peer_p50, 3),
                    "peer_p99_ms": round(peer_p99, 3),
                    "countenance_index": index.kind,
                    "countenance_p50_ms": round(ours_p50, 3),
                    "countenance_p99_ms": round(ours_p99, 3),
                    "speedup_p50": round(peer_p50 / ours_p50, 1),
                    "top10_agreement": round(float(np.mean(overlap)), 4),
                    "countenance_build_s": round(build_s, 2),
                }
            )
            log(json.dumps(rows[-1]))
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
