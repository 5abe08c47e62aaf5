"""Recompute the similarity bands of the default space from impostor pairs.

    python benchmarks/calibrate_bands.py --photos ../shared/faces/lfw --json

Ingests every photo listed in ``manifest.csv`` (path,identity) through the engine, takes each
photo's principal face, and compares every pair of photos of *different* people (impostors).
A band's lower edge is the similarity that impostors exceed at its false-match rate; the
genuine pairs' true-match rate at each edge is printed alongside (the computation is
``countenance.vision.calibration``, which ``countenance models calibrate`` also runs for a
brought model). The figures go into the pipeline's space in ``countenance/vision/registry.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from countenance import imaging
from countenance.config import Settings
from countenance.engine import Engine
from countenance.evaluation import read_manifest
from countenance.sources.folder import FileListSource
from countenance.vision.calibration import calibrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("../shared/faces/lfw"))
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--model", default="faceplugin", help="registered pipeline name")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = read_manifest(args.photos)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Engine(Settings(data_dir=Path(tmp), model=args.model)) as db,
    ):
        db.add_source("calibration", basis="legitimate_interest")
        db.ingest(FileListSource([p for p, _ in rows]), source="calibration", workers=args.workers)
        digests = [imaging.sha256(p.read_bytes()) for p, _ in rows]
        principal = db.catalog.principal_faces(db.space, digests)
    keep = [
        (principal[d][1], identity)
        for d, (_, identity) in zip(digests, rows, strict=True)
        if d in principal
    ]
    vectors = np.stack([v for v, _ in keep])
    result = calibrate(vectors, [identity for _, identity in keep])
    report: dict[str, object] = {
        "space": db.space.key,
        "photos": result.photos,
        "impostor_pairs": result.impostor_pairs,
        "genuine_pairs": result.genuine_pairs,
    }
    for band, edge in result.edges.items():
        report[band] = {
            "fmr": edge.fmr,
            "min_similarity": round(edge.min_similarity, 4),
            "tmr": None if edge.tmr is None else round(edge.tmr, 4),
        }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
