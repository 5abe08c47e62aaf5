"""Recompute the similarity bands of the default space from impostor pairs.

    python benchmarks/calibrate_bands.py --photos ../shared/faces/lfw --json

Ingests every photo listed in ``manifest.csv`` (path,identity) through the engine, takes each
photo's principal face, and compares every pair of photos of *different* people (impostors).
A band's lower edge is the similarity that impostors exceed at its false-match rate; the
genuine pairs' true-match rate at each edge is printed alongside. The figures go into
the pipeline's space in ``countenance/vision/registry.py``.
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

FMRS = {"weak": 1e-2, "possible": 1e-3, "erase": 1e-4, "strong": 1e-5}


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
    labels = np.array([identity for _, identity in keep])
    impostor_parts, genuine_parts = [], []
    for i in range(0, len(vectors), 1024):  # blocks keep memory flat
        sims = vectors[i : i + 1024] @ vectors.T
        rows_i = np.arange(i, min(i + 1024, len(vectors)))[:, None]
        upper = np.arange(len(vectors))[None, :] > rows_i
        same = labels[i : i + 1024][:, None] == labels[None, :]
        impostor_parts.append(sims[upper & ~same])
        genuine_parts.append(sims[upper & same])
    impostor = np.concatenate(impostor_parts)
    genuine = np.concatenate(genuine_parts)
    report: dict[str, object] = {
        "space": db.space.key,
        "photos": len(keep),
        "impostor_pairs": int(impostor.size),
        "genuine_pairs": int(genuine.size),
    }
    for band, fmr in FMRS.items():
        edge = float(np.quantile(impostor, 1 - fmr))
        report[band] = {
            "fmr": fmr,
            "min_similarity": round(edge, 4),
            "tmr": round(float(np.mean(genuine >= edge)), 4),
        }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
