"""Accuracy on an operator's own labelled photos, through the same engine users get.

Both protocols ingest into a temporary data directory with the real pipeline, then compare or
search. No pair or probe is ever dropped: a photo in which no face is found counts as an error
(a pair with such a photo is scored wrong; a mated probe without a face is a miss; a non-mated
probe without a face returns no candidate, which is what a correct rejection looks like).

Example::

    report = eval_pairs(Path("lfw/"), settings)
    print(report["accuracy_mean"])
"""

from __future__ import annotations

import csv
import random
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from countenance import imaging
from countenance.config import Settings
from countenance.engine import Engine, ProgressCallback
from countenance.errors import InvalidArgument
from countenance.ingest import PhotoAnalyser, run_analyses, worker_count
from countenance.sources.folder import FileListSource

Progress = Callable[[str], ProgressCallback]
"""Given a stage name, a ``progress(done, total)`` callback for that stage."""


@dataclass(frozen=True, slots=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


def read_lfw_pairs(directory: Path) -> list[Pair]:
    """``pairs.txt`` in the standard LFW format: a header ``folds n``, then per fold ``n``
    matched lines (``name i j``) and ``n`` mismatched lines (``name1 i name2 j``)."""
    path = directory / "pairs.txt"
    if not path.is_file():
        raise InvalidArgument(f"{path}: no pairs.txt (LFW layout expected)")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    header = lines[0]
    if len(header) == 1:  # pairsDevTrain.txt style: one fold
        folds, per_fold = 1, int(header[0])
    else:
        folds, per_fold = int(header[0]), int(header[1])
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise InvalidArgument(f"{path}: expected {folds * 2 * per_fold} pairs, found {len(body)}")

    def image(name: str, number: str) -> Path:
        return directory / name / f"{name}_{int(number):04d}.jpg"

    pairs = []
    for i, parts in enumerate(body):
        fold = i // (2 * per_fold)
        if len(parts) == 3:
            pairs.append(Pair(image(parts[0], parts[1]), image(parts[0], parts[2]), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(image(parts[0], parts[1]), image(parts[2], parts[3]), False, fold))
        else:
            raise InvalidArgument(f"{path}: line {i + 2} is not an LFW pair")
    return pairs


def _best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises accuracy on (scores, labels)."""
    candidates = np.unique(scores)
    mids = np.concatenate([[-1.0], (candidates[:-1] + candidates[1:]) / 2, [1.0]])
    best, best_acc = 0.0, -1.0
    for t in mids:
        acc = float(np.mean((scores >= t) == labels))
        if acc > best_acc:
            best, best_acc = float(t), acc
    return best


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """True accept rate at the threshold where the false accept rate is ``far``."""
    impostor = np.sort(scores[~labels])[::-1]
    if impostor.size == 0:
        return float("nan")
    allowed = int(np.floor(far * impostor.size))
    threshold = impostor[allowed] if allowed < impostor.size else -np.inf
    return float(np.mean(scores[labels] > threshold))


def _ingest_files(
    engine: Engine, files: list[Path], workers: int, progress: ProgressCallback | None
) -> dict[Path, tuple[int, np.ndarray]]:
    """Ingest ``files``; map each to its principal indexed face (absent when none)."""
    engine.add_source("evaluation", basis="legitimate_interest")
    engine.ingest(FileListSource(files), source="evaluation", workers=workers, progress=progress)
    digests = {f: imaging.sha256(f.read_bytes()) for f in files}
    principal = engine.catalog.principal_faces(engine.space, digests.values())
    return {f: principal[d] for f, d in digests.items() if d in principal}


def eval_pairs(
    directory: Path, settings: Settings, *, workers: int = 0, progress: Progress | None = None
) -> dict[str, Any]:
    """The LFW verification protocol: per fold, the threshold that is best on the other
    folds is applied to the held-out fold; accuracy is reported as mean and std over folds."""
    pairs = read_lfw_pairs(directory)
    files = sorted({p.a for p in pairs} | {p.b for p in pairs})
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InvalidArgument(f"{len(missing)} images named in pairs.txt are missing: {missing[0]}")
    with (
        tempfile.TemporaryDirectory(prefix="countenance-eval-") as tmp,
        Engine(settings.replace(data_dir=Path(tmp), catalog_url=None)) as engine,
    ):
        faces = _ingest_files(engine, files, worker_count(workers), progress and progress("pairs"))
    no_face = {f for f in files if f not in faces}
    scores = np.array(
        [
            float(np.dot(faces[p.a][1], faces[p.b][1])) if p.a in faces and p.b in faces else np.nan
            for p in pairs
        ]
    )
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    found = ~np.isnan(scores)
    accuracies = []
    for fold in np.unique(folds):
        train = (folds != fold) & found
        test = folds == fold
        t = _best_threshold(scores[train], labels[train])
        # a pair with a photo where no face was found is always counted as an error
        correct = (scores[test] >= t) == labels[test]
        correct &= found[test]
        accuracies.append(float(np.mean(correct)))
    safe = np.where(found, scores, np.where(labels, -1.0, 1.0))  # no face: worst outcome
    return {
        "accuracy_mean": round(float(np.mean(accuracies)), 4),
        "accuracy_std": round(float(np.std(accuracies)), 4),
        "tar_at_far_1e-3": round(tar_at_far(safe, labels, 1e-3), 4),
        "fold_accuracies": [round(a, 4) for a in accuracies],
        "n_pairs": len(pairs),
        "n_no_face": sum(1 for p in pairs if p.a in no_face or p.b in no_face),
        "n_images": len(files),
        "n_images_no_face": len(no_face),
    }


def read_manifest(directory: Path) -> list[tuple[Path, str]]:
    """``manifest.csv`` with columns ``path,identity``; paths relative to ``directory``."""
    path = directory / "manifest.csv"
    if not path.is_file():
        raise InvalidArgument(f"{path}: no manifest.csv (columns path,identity)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "identity"} <= set(reader.fieldnames):
            raise InvalidArgument(f"{path}: needs the columns path and identity")
        rows = [(directory / r["path"], r["identity"]) for r in reader]
    return sorted(rows, key=lambda r: str(r[0]))


def eval_identify(
    directory: Path,
    settings: Settings,
    *,
    workers: int = 0,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Open-set identification (1:N). A seeded fifth of the identities is held out of the
    gallery; each other identity enrols its first image (by path) and searches with the
    rest; single-image identities are enrolled as distractors. FNIR is measured at the
    threshold where 1% of non-mated searches return a candidate (FPIR 0.01), counting a mated
    search as found when the mate is among the top 10 candidates above the threshold."""
    rows = read_manifest(directory)
    by_identity: dict[str, list[Path]] = defaultdict(list)
    for path, identity in rows:
        by_identity[identity].append(path)
    identities = sorted(by_identity)
    rng = random.Random(seed)
    held_out = set(rng.sample(identities, len(identities) // 5))
    gallery: dict[Path, str] = {}
    mated: list[tuple[Path, str]] = []
    nonmated: list[Path] = []
    for identity in identities:
        paths = by_identity[identity]
        if identity in held_out:
            nonmated.extend(paths)
            continue
        gallery[paths[0]] = identity
        mated.extend((p, identity) for p in paths[1:])
    probes = [p for p, _ in mated] + nonmated
    workers = worker_count(workers)
    with (
        tempfile.TemporaryDirectory(prefix="countenance-eval-") as tmp,
        Engine(settings.replace(data_dir=Path(tmp), catalog_url=None)) as engine,
    ):
        engine.add_source("gallery", basis="legitimate_interest")
        engine.ingest(
            FileListSource(list(gallery)),
            source="gallery",
            workers=workers,
            progress=progress and progress("gallery"),
        )
        # the labelled person of a gallery photo is its principal face; its other faces are
        # unlabelled distractors
        digests = {imaging.sha256(p.read_bytes()): identity for p, identity in gallery.items()}
        principal = engine.catalog.principal_faces(engine.space, digests)
        face_identity = {face_id: digests[d] for d, (face_id, _) in principal.items()}
        top_scores = _search_probes(engine, probes, workers, progress, face_identity)
        n_gallery = engine.index.count()
    mated_results = [top_scores[p] for p, _ in mated]
    mated_ranks = [
        _rank(candidates, identity)
        for candidates, (_, identity) in zip(mated_results, mated, strict=True)
    ]
    nonmated_best = np.array([top_scores[p][0][1] if top_scores[p] else -np.inf for p in nonmated])
    threshold = _fpir_threshold(nonmated_best, 0.01)
    fnir_misses = 0
    for candidates, (_, identity) in zip(mated_results, mated, strict=True):
        if not any(i == identity and s > threshold for i, s in candidates[:10]):
            fnir_misses += 1
    n_mated = len(mated)
    return {
        "rank1": round(sum(r == 1 for r in mated_ranks) / max(1, n_mated), 4),
        "rank10": round(sum(0 < r <= 10 for r in mated_ranks) / max(1, n_mated), 4),
        "fnir_at_fpir_0.01": round(fnir_misses / max(1, n_mated), 4),
        "threshold_at_fpir_0.01": round(float(threshold), 4),
        "n_gallery": n_gallery,
        "n_gallery_photos": len(gallery),
        "n_mated": n_mated,
        "n_nonmated": len(nonmated),
        "n_no_face": sum(1 for p in probes if top_scores[p] is None or not top_scores[p]),
    }


def _fpir_threshold(nonmated_best: np.ndarray, fpir: float) -> float:
    """The lowest threshold at which at most ``fpir`` of non-mated searches return anyone."""
    if nonmated_best.size == 0:
        return float("-inf")
    ordered = np.sort(nonmated_best)[::-1]
    allowed = int(np.floor(fpir * ordered.size))
    return float(ordered[allowed]) if allowed < ordered.size else float("-inf")


def _rank(candidates: list[tuple[str, float]], identity: str) -> int:
    for rank, (candidate, _) in enumerate(candidates, 1):
        if candidate == identity:
            return rank
    return 0


def _search_probes(
    engine: Engine,
    probes: list[Path],
    workers: int,
    progress: Progress | None,
    face_identity: dict[int, str],
) -> dict[Path, list[tuple[str, float]]]:
    """Each probe's largest face searched against the gallery: candidate identities, best
    first, each with its best similarity (no floor: the protocol needs every score)."""
    update = progress and progress("probes")

    def jobs() -> Any:
        for path in probes:
            try:
                data = imaging.read_file(path, engine.settings.max_file_bytes)
            except Exception:
                data = b""
            yield path, (data, str(path))

    def local() -> PhotoAnalyser:
        return PhotoAnalyser(engine.settings, engine.pipeline)

    out: dict[Path, list[tuple[str, float]]] = {}
    for done, (tag, analysis) in enumerate(
        run_analyses(jobs(), workers, engine.settings, local), 1
    ):
        path = tag
        assert isinstance(path, Path)
        usable = [f for f in analysis.faces if f.embedding is not None]
        if not usable:
            out[path] = []
        else:
            principal = max(
                usable, key=lambda f: f.box.principal_key(analysis.width, analysis.height)
            )
            assert principal.embedding is not None
            matches = engine._search_vectors(principal.embedding[None, :], 50, -1.0)[0]
            candidates: dict[str, float] = {}
            for m in matches:
                identity = face_identity.get(m.face_id, f"unlabelled:{m.face_id}")
                candidates.setdefault(identity, m.similarity)
            out[path] = sorted(candidates.items(), key=lambda kv: -kv[1])
        if update:
            update(done, len(probes))
    return out
