"""Face detectors side by side, in one run, on counted group photos and on LFW.

    python benchmarks/detection.py --json
    python benchmarks/detection.py --lfw-every 4     # every 4th LFW photo: a quicker sample

Detectors: ``rfb320`` (faceplugin's ONNX RFB-320 with its tiling rule,
:mod:`countenance.vision.onnx.detect`), dlib ``hog``, ``hog+cnn`` (dlib's CNN where HOG finds
no face wholly inside the photo, the rule of ``FacePipeline.detect``), and ``rfb320+hog`` and
``rfb320+cnn`` (the same rule behind rfb320). Each photo is decoded once and given to every
detector; a fallback's faces and time are counted only where it runs.

Per detector, one JSON row: on ``detection/`` and ``detection/crowds/`` the photos with a
counted number of faces (exact-count rate, total absolute error, faces found vs counted,
photos with more faces found than counted, found/counted per photo) and, for crowds without a
count, the faces found; on LFW the photos where no face is found (all 5,373 photos by
default); milliseconds of detection per photo on each set (decoding excluded). Everything runs
on the CPU, ONNX Runtime on ``--threads`` threads (dlib uses one).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from countenance import imaging
from countenance.ports import RGB, Detector
from countenance.types import DetectedFace
from countenance.vision.dlib_models import CnnDetector, DlibModels, HogDetector
from countenance.vision.models import default_model_dir
from countenance.vision.onnx.detect import RfbDetector
from countenance.vision.onnx.runtime import Runtime

RFB_FILE = "faceplugin-face-recognition-js@0.0.1/model/fr_detect.onnx"
COMBOS = {  # name: (primary, fallback or None)
    "rfb320": ("rfb320", None),
    "hog": ("hog", None),
    "hog+cnn": ("hog", "cnn"),
    "rfb320+hog": ("rfb320", "hog"),
    "rfb320+cnn": ("rfb320", "cnn"),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def with_fallback(
    faces: list[DetectedFace], fallback: Callable[[], list[DetectedFace]], w: int, h: int
) -> tuple[list[DetectedFace], bool]:
    """FacePipeline.detect's rule: the fallback runs where the first detector finds no face
    wholly inside the photo, and its faces are used when it finds a whole one (or the first
    found nothing at all). Returns the faces and whether the fallback ran."""
    if any(f.box.is_whole(w, h) for f in faces):
        return faces, False
    found = fallback()
    if any(f.box.is_whole(w, h) for f in found) or not faces:
        return found, True
    return faces, True


class Bench:
    """Runs every combination on one photo, each base detector at most once."""

    def __init__(self, detectors: dict[str, Detector]) -> None:
        self.detectors = detectors

    def run(self, rgb: RGB) -> dict[str, tuple[int, float]]:
        """Faces found and seconds spent, per combination."""
        h, w = rgb.shape[:2]
        cache: dict[str, tuple[list[DetectedFace], float]] = {}

        def base(name: str) -> tuple[list[DetectedFace], float]:
            if name not in cache:
                started = time.perf_counter()
                faces = self.detectors[name].detect(rgb)
                cache[name] = (faces, time.perf_counter() - started)
            return cache[name]

        out = {}
        for combo, (primary, fallback) in COMBOS.items():
            faces, seconds = base(primary)
            if fallback is not None:
                faces, ran = with_fallback(faces, functools.partial(_faces, base, fallback), w, h)
                seconds += base(fallback)[1] if ran else 0.0
            out[combo] = (len(faces), seconds)
        return out


def _faces(
    base: Callable[[str], tuple[list[DetectedFace], float]], name: str
) -> list[DetectedFace]:
    return base(name)[0]


def manifest(path: Path) -> list[tuple[Path, int | None]]:
    rows = csv.DictReader(path.open())
    return [(path.parent / r["path"], int(r["n_faces"]) if r["n_faces"] else None) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(os.environ.get("COUNTENANCE_MODEL_DIR") or default_model_dir()) / RFB_FILE,
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument(
        "--lfw-every", type=int, default=1, help="every Nth LFW photo, in manifest order"
    )
    parser.add_argument("--json", action="store_true", help="print compact JSON only")
    args = parser.parse_args()
    if not args.model.exists():
        sys.exit(f"model missing: {args.model} (countenance models install)")
    models = DlibModels.load()
    bench = Bench(
        {
            "rfb320": RfbDetector(args.model, Runtime.choose("cpu", threads=args.threads)),
            "hog": HogDetector(models),
            "cnn": CnnDetector(models),
        }
    )
    rows: dict[str, dict[str, Any]] = {
        name: {
            "detector": name,
            "counted_photos": 0,
            "exact": 0,
            "abs_error": 0,
            "found": 0,
            "counted": 0,
            "over_counted_photos": 0,
            "per_photo": {},
            "uncounted_found": {},
            "detection_ms": 0.0,
            "lfw_photos": 0,
            "lfw_no_face": 0,
            "lfw_ms": 0.0,
        }
        for name in COMBOS
    }
    group = manifest(args.faces / "detection" / "manifest.csv")
    group += manifest(args.faces / "detection" / "crowds" / "manifest.csv")
    for path, counted in group:
        key = str(path.relative_to(args.faces / "detection"))
        for name, (found, seconds) in bench.run(_rgb(path)).items():
            row = rows[name]
            row["detection_ms"] += seconds * 1000 / len(group)
            if counted is None:
                row["uncounted_found"][key] = found
                continue
            row["counted_photos"] += 1
            row["exact"] += found == counted
            row["abs_error"] += abs(found - counted)
            row["found"] += found
            row["counted"] += counted
            row["over_counted_photos"] += found > counted
            row["per_photo"][key] = [found, counted]
    log(f"detection: {len(group)} photos done")
    lfw = [p for p, _ in _lfw(args.faces / "lfw" / "manifest.csv")][:: args.lfw_every]
    for i, path in enumerate(lfw, 1):
        for name, (found, seconds) in bench.run(_rgb(path)).items():
            rows[name]["lfw_photos"] += 1
            rows[name]["lfw_no_face"] += found == 0
            rows[name]["lfw_ms"] += seconds * 1000 / len(lfw)
        if i % 500 == 0:
            log(f"lfw: {i}/{len(lfw)}")
    for row in rows.values():
        row["exact_rate"] = round(row["exact"] / max(1, row["counted_photos"]), 3)
        row["uncounted_total"] = sum(row["uncounted_found"].values())
        row["detection_ms"] = round(row["detection_ms"], 1)
        row["lfw_ms"] = round(row["lfw_ms"], 1)
    out = {
        "lfw_every": args.lfw_every,
        "threads": args.threads,
        "rows": list(rows.values()),
    }
    print(json.dumps(out, indent=None if args.json else 2))


def _lfw(path: Path) -> list[tuple[Path, None]]:
    return [(path.parent / r["path"], None) for r in csv.DictReader(path.open())]


def _rgb(path: Path) -> RGB:
    return imaging.decode(path.read_bytes(), name=path.name).rgb


if __name__ == "__main__":
    main()
