"""Ingest throughput by worker count on real photos, side by side in one run.

    python benchmarks/ingest.py --photos ../shared/faces/lfw --limit 600 --workers 1 2 --json

Prints one JSON row per worker count: photos/s, faces/s, and the speed-up over one worker.
Each run ingests the same photos into a fresh temporary data directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from countenance.config import Settings
from countenance.engine import Engine
from countenance.imaging import IMAGE_SUFFIXES
from countenance.sources.folder import FileListSource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--limit", type=int, default=600, help="photos to ingest per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    files = sorted(
        p for p in args.photos.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )[: args.limit]
    if not files:
        sys.exit(f"no photos under {args.photos}")
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp, Engine(Settings(data_dir=Path(tmp))) as db:
            db.add_source("bench", basis="legitimate_interest")
            started = time.perf_counter()
            summary = db.ingest(FileListSource(files), source="bench", workers=workers)
            seconds = time.perf_counter() - started
        rows.append(
            {
                "workers": workers,
                "photos": summary.photos,
                "faces": summary.faces,
                "seconds": round(seconds, 2),
                "photos_per_s": round(summary.photos / seconds, 2),
                "faces_per_s": round(summary.faces / seconds, 2),
            }
        )
    base = rows[0]["photos_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["photos_per_s"] / base, 2)
    print(json.dumps(rows, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
