"""Warm probe-to-result latency: countenance's pipelines and the face_recognition library, in turns.

    python benchmarks/probe.py --photos ../shared/faces/lfw --gallery 300 --probes 40 --json

A gallery (every k-th of the sorted photos) is ingested once per pipeline of ``--models`` into
a temporary data directory; the peer, ageitgey/face_recognition, encodes the same gallery once
(``face_locations`` + ``face_encodings``, its defaults). Probes are photos outside the gallery
(of people in it where the folders say who: LFW's ``Name/Name_NNNN.jpg``), every j-th of them,
the first ``--warmup`` searched untimed by all. Then each probe is searched by each system in
turn (the order rotating from probe to probe), from the file on disk to the result:
countenance's ``engine.search`` (decode, detect, embed, index search, audit record) and the
peer's ``load_image_file`` + ``face_locations`` + ``face_encodings`` + ``face_distance`` to
every gallery encoding, the 10 nearest. Per system: p50/p90/mean ms per probe, the probes with
a match (countenance: any result; the peer: a distance <= 0.6, its default tolerance), and
the p50 ratios to dlib and to the peer. One process, the search rate limit off; settings come
from COUNTENANCE_* variables (e.g. COUNTENANCE_DEVICE=cuda, see benchmarks/gpu.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# A sibling module: ``python benchmarks/probe.py`` puts this folder on sys.path.
from ingest import (
    PEER,
    every_kth,
    image_files,
    import_peer,
    label,
    load_average,
    log,
    peer_photo,
    peer_pool,
)

from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import NoFaceFound
from countenance.sources.folder import FileListSource
from countenance.vision.onnx.runtime import Runtime

Search = Callable[[Path], bool]  # searches one probe; True when it found a match


def choose_probes(files: list[Path], gallery: list[Path], n: int) -> tuple[list[Path], int]:
    """Every j-th photo outside the gallery, of people with a photo in it where there are any."""
    enrolled = set(gallery)
    people = {p.parent for p in gallery}
    rest = [p for p in files if p not in enrolled]
    mated = [p for p in rest if p.parent in people]
    return every_kth(mated if len(mated) >= n else rest, n)


def engine_search(db: Engine) -> Search:
    def search(path: Path) -> bool:
        try:
            result = db.search(path, actor="bench", purpose="latency benchmark", case="bench")
        except NoFaceFound:
            return False
        return any(face.matches for face in result.faces)

    return search


def peer_search(known: np.ndarray) -> Search:
    import face_recognition as fr

    def search(path: Path) -> bool:
        image = fr.load_image_file(str(path))
        found = False
        for encoding in fr.face_encodings(image, fr.face_locations(image)):
            distances = fr.face_distance(known, encoding)
            nearest = np.argsort(distances)[:10]
            found |= bool(len(nearest) and distances[nearest[0]] <= 0.6)
        return found

    return search


def peer_gallery(files: list[Path], workers: int) -> np.ndarray:
    paths = [str(p) for p in files]
    with peer_pool(workers) as pool:
        encodings = [e for per_photo in pool.map(peer_photo, paths) for e in per_photo]
    return np.asarray(encodings, dtype=np.float64).reshape(-1, 128)


def summary(samples: list[float], matched: int) -> dict[str, Any]:
    ms = np.asarray(samples) * 1000
    return {
        "probes": len(samples),
        "with_match": matched,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
        "mean_ms": round(float(ms.mean()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--gallery", type=int, default=300, help="gallery photos")
    parser.add_argument("--probes", type=int, default=40, help="timed probe photos")
    parser.add_argument("--warmup", type=int, default=3, help="untimed probes first")
    parser.add_argument("--models", nargs="+", default=["faceplugin", "dlib"])
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--gallery-workers", type=int, default=2, help="to ingest the gallery")
    parser.add_argument("--json", action="store_true", help="print compact JSON")
    args = parser.parse_args()
    if args.peer:
        import_peer()
    files = image_files(args.photos)
    gallery, k = every_kth(files, args.gallery)
    probes, j = choose_probes(files, gallery, args.warmup + args.probes)
    settings = Settings.from_env()
    load_before = load_average()
    searches: dict[str, Search] = {}
    gallery_faces: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        for model in args.models:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            db = stack.enter_context(
                Engine(Settings.from_env(data_dir=Path(tmp), model=model, search_rate_per_minute=0))
            )
            db.add_source("gallery", basis="legitimate_interest")
            log(f"{model}: ingesting the gallery ({len(gallery)} photos)")
            ingested = db.ingest(
                FileListSource(gallery), source="gallery", workers=args.gallery_workers
            )
            gallery_faces[label(model)] = ingested.faces
            searches[label(model)] = engine_search(db)
        if args.peer:
            log(f"{PEER}: encoding the gallery")
            known = peer_gallery(gallery, args.gallery_workers)
            gallery_faces[PEER] = len(known)
            searches[PEER] = peer_search(known)
        names = list(searches)
        for path in probes[: args.warmup]:
            for name in names:
                searches[name](path)
        samples: dict[str, list[float]] = {name: [] for name in names}
        matched = dict.fromkeys(names, 0)
        log(f"timing {len(probes) - args.warmup} probes")
        for i, path in enumerate(probes[args.warmup :]):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                started = time.perf_counter()
                matched[name] += searches[name](path)
                samples[name].append(time.perf_counter() - started)
    rows = [
        {
            "pipeline": name,
            "gallery_faces": gallery_faces[name],
            **summary(samples[name], matched[name]),
        }
        for name in names
    ]
    default = rows[0]
    ratios = {
        f"{default['pipeline']}/{row['pipeline']}": round(default["p50_ms"] / row["p50_ms"], 2)
        for row in rows[1:]
    }
    report = {
        "benchmark": "probe",
        "gallery": f"every k-th (k={k}) of {len(files)} sorted image files under {args.photos}:"
        f" {len(gallery)}",
        "probes": f"every j-th (j={j}) photo outside the gallery (of people in it where possible):"
        f" {args.warmup} warm-up + {len(probes) - args.warmup} timed, systems in rotating turns",
        "device": settings.device,
        "onnx_providers": list(Runtime.choose(settings.device).providers),
        "model_threads": settings.model_threads,
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": load_before,
        "load_after": load_average(),
        "rows": rows,
        "p50_ratios": ratios,
    }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
