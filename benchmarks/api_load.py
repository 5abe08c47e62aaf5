"""A bounded load on the server's search over loopback: C clients for S seconds.

    python benchmarks/api_load.py --concurrency 50 --seconds 30 --faces 100000 --json

Without ``--url`` it builds the store first, in ``--data`` (a temporary folder by default): a
few real photos from ``../shared/faces/small_examples`` are ingested by the real pipeline, so
the probe has true leads, and ``--faces`` synthetic faces (random unit vectors in the dlib
space, one per synthetic photo) are written straight into the catalog; the server's index is
built from the catalog when it opens. It then starts ``countenance serve`` on a free loopback
port with an investigator key, and without the per-actor and per-key rate limits (a load test
would otherwise measure them). With ``--url`` and ``--key`` it loads a server already running
on this machine instead.

Each client posts the probe to ``/v1/search`` as fast as answers come back. Prints one JSON
object: requests, errors (any answer but 200, or no answer), throughput, p50 and p99 latency,
and whether the probe's own person was the best lead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "faces" / "small_examples"
REAL = [
    "joe_biden/biden.jpg",
    "barack_obama/obama.jpg",
    "barack_obama/obama1.jpg",
    "kit_harington/john1.jpeg",
    "rose_leslie/img1.jpg",
    "alex_lacamoire/img1.jpg",
]
PROBE = FACES / "joe_biden" / "biden2.jpg"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the store ---------------------------------------------------------------------------------


def build_store(data: Path, n_synthetic: int, seed: int) -> str:
    """Ingest the real photos, bulk-insert the synthetic faces; returns an investigator key."""
    from countenance.config import Settings
    from countenance.engine import Engine
    from countenance.sources.folder import FileListSource

    with Engine(Settings.from_env(data_dir=data, workers=1)) as engine:
        if "real" not in {i.name for i in engine.sources()}:
            engine.add_source("real", basis="consent", actor="benchmark")
            engine.add_source("synthetic", basis="legitimate_interest", actor="benchmark")
            engine.ingest(
                FileListSource([FACES / p for p in REAL], root=FACES),
                source="real",
                actor="benchmark",
            )
            synthetic = engine.catalog.get_source("synthetic")
            assert synthetic.id is not None
            log(f"writing {n_synthetic} synthetic faces into the catalog")
            insert_synthetic(engine, synthetic.id, n_synthetic, seed)
        key, _ = engine.catalog.key_store(engine.audit).create(
            f"load-{os.getpid()}-{time.time_ns()}", "investigator", actor="benchmark"
        )
    return key


def insert_synthetic(engine: Any, source_id: int, n: int, seed: int, batch: int = 10_000) -> None:
    """``n`` photos of one synthetic face each: random unit vectors (their similarity to any
    real face is far below the weak band, so they cost search time but are never leads)."""
    from countenance.catalog import schema as s

    rng = np.random.default_rng(seed)
    space_id = engine.catalog.space_id(engine.space)
    now = dt.datetime.now(dt.UTC)
    photos, faces = s.photos, s.faces
    with engine.catalog.transaction() as conn:
        for start in range(0, n, batch):
            count = min(batch, n - start)
            vectors = rng.standard_normal((count, engine.space.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = [
                {
                    "source_id": source_id,
                    "sha256": hashlib.sha256(f"synthetic-{seed}-{start + i}".encode()).hexdigest(),
                    "uri": f"synthetic://{start + i}.jpg",
                    "width": 250,
                    "height": 250,
                    "format": "JPEG",
                    "bytes": 0,
                    "n_faces": 1,
                    "ingested_at": now,
                }
                for i in range(count)
            ]
            conn.execute(photos.insert(), rows)
            first = conn.execute(
                sa.select(sa.func.min(photos.c.id)).where(photos.c.sha256 == rows[0]["sha256"])
            ).scalar_one()
            ids = conn.execute(
                sa.select(photos.c.id, photos.c.sha256).where(photos.c.id >= first)
            ).all()
            by_sha = {sha: pid for pid, sha in ids}
            conn.execute(
                faces.insert(),
                [
                    {
                        "photo_id": by_sha[row["sha256"]],
                        "space_id": space_id,
                        "x1": 60,
                        "y1": 60,
                        "x2": 190,
                        "y2": 190,
                        "detector": "synthetic",
                        "det_score": 1.0,
                        "quality": 1.0,
                        "sharpness": 100.0,
                        "embedding": vector.astype("<f4").tobytes(),
                        "created_at": now,
                    }
                    for row, vector in zip(rows, vectors, strict=True)
                ],
            )


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path, port: int, search_workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COUNTENANCE_SEARCH_RATE_PER_MINUTE": "0",
        "COUNTENANCE_API_RATE_PER_MINUTE": "0",
        "COUNTENANCE_SEARCH_WORKERS": str(search_workers),
    }
    command = [sys.executable, "-m", "countenance", "--data", str(data), "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def wait_healthy(url: str, server: subprocess.Popen[bytes] | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            answer = httpx.get(f"{url}/healthz", timeout=5)
            if answer.status_code == 200:
                return int(answer.json()["indexed"])
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}/healthz did not answer in {timeout:.0f} s")


# -- the load ----------------------------------------------------------------------------------


def search_once(client: httpx.Client, url: str, key: str, probe: bytes) -> httpx.Response:
    return client.post(
        f"{url}/v1/search",
        headers={"Authorization": f"Bearer {key}"},
        data={"purpose": "load benchmark", "case": "bench"},
        files={"photo": ("probe.jpg", probe, "image/jpeg")},
    )


def load(url: str, key: str, probe: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = 0.0

    def client_loop() -> None:
        with httpx.Client(timeout=300) as client:
            start.wait()
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    answer = search_once(client, url, key, probe)
                    failure = None if answer.status_code == 200 else str(answer.status_code)
                except httpx.HTTPError as exc:
                    failure = type(exc).__name__
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    if failure is not None:
                        errors.append(failure)

    health: list[float] = []
    health_errors = 0

    def health_loop() -> None:  # the server keeps answering its liveness probe under load
        nonlocal health_errors
        with httpx.Client(timeout=30) as client:
            start.wait()
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    ok = client.get(f"{url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                health.append(time.perf_counter() - began)
                health_errors += not ok
                time.sleep(0.5)

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    threads.append(threading.Thread(target=health_loop))
    start = threading.Barrier(len(threads) + 1)
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "elapsed_s": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "max_ms": round(float(ms.max()), 1) if len(ms) else None,
        "healthz_checks": len(health),
        "healthz_errors": health_errors,
        "healthz_max_ms": round(max(health) * 1000.0, 1) if health else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50, help="clients at once")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to load")
    parser.add_argument("--faces", type=int, default=100_000, help="synthetic faces to index")
    parser.add_argument("--data", type=Path, help="store to build or reuse (default: temporary)")
    parser.add_argument("--probe", type=Path, default=PROBE)
    parser.add_argument("--url", help="load this running server (loopback only) instead")
    parser.add_argument("--key", help="an investigator key of the server at --url")
    parser.add_argument(
        "--search-workers", type=int, default=1, help="the server's probe analysis processes"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= 1000 or not 0 < args.seconds <= 3600:
        parser.error("concurrency is 1..1000 and seconds 0..3600: the load is bounded")
    probe = args.probe.read_bytes()

    server = None
    with tempfile.TemporaryDirectory(prefix="countenance-load-") as scratch:
        if args.url:
            if urlparse(args.url).hostname not in LOOPBACK or not args.key:
                parser.error("--url must be a loopback address, and --key is needed with it")
            url, key = args.url.rstrip("/"), args.key
        else:
            data = args.data or Path(scratch) / "data"
            began = time.monotonic()
            key = build_store(data, args.faces, args.seed)
            log(f"store ready in {time.monotonic() - began:.0f} s; starting the server")
            url = f"http://127.0.0.1:{free_port()}"
            server = start_server(data, int(urlparse(url).port or 0), args.search_workers)
        try:
            indexed = wait_healthy(url, server, timeout=900)
            with httpx.Client(timeout=300) as client:  # warm up, and check the leads
                first = search_once(client, url, key, probe)
            first.raise_for_status()
            leads = [m["photo"] for f in first.json()["faces"] for m in f["matches"]]
            log(f"{indexed} faces indexed; loading with {args.concurrency} clients")
            result = load(url, key, probe, args.concurrency, args.seconds)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
    report = {
        "benchmark": "api_load",
        "url": url,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "indexed_faces": indexed,
        "probe": args.probe.name,
        "best_lead": leads[0] if leads else None,
        # the default probe's person has one photo among the real ones
        "correct_lead": (bool(leads) and leads[0].endswith("biden.jpg"))
        if args.probe == PROBE
        else None,
        "search_workers": None if args.url else args.search_workers,
        "cpus": os.cpu_count(),
        **result,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
