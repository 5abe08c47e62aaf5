"""Accuracy on an operator's own labelled photos, through the same engine users get.

Both protocols ingest into a temporary data directory with the real pipeline, then compare or
search. No pair or probe is ever dropped: a photo in which no face is found counts as an error
(a pair with such a photo is scored wrong; a mated probe without a face is a miss; a non-mated
probe without a face returns no candidate, which is what a correct rejection looks like).
In the rates over every pair of photos (TAR at FAR, the DET curve) such a photo's pairs score
``-inf``: its genuine pairs are misses and its impostor pairs never a false match.

Example::

    report = eval_pairs(Path("lfw/"), settings)
    print(report["accuracy_mean"])
"""

from __future__ import annotations

import random
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from countenance import imaging
from countenance.config import Settings
from countenance.engine import Engine, ProgressCallback
from countenance.errors import InvalidArgument
from countenance.ingest import PhotoAnalyser, run_analyses, worker_count
from countenance.labelled import read_manifest
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


FARS = ("1e-3", "1e-4", "1e-5")
"""The false accept rates ``eval pairs`` reports the true accept rate at (JSON key suffixes)."""


def _allowed(rate: float, n: int) -> int:
    """The largest count ``k`` with ``k / n <= rate`` (``rate * n`` rounds either way)."""
    k = int(np.floor(rate * n))
    if (k + 1) / n <= rate:
        k += 1
    elif k > 0 and k / n > rate:
        k -= 1
    return max(0, k)


def _nan_as_missing(scores: np.ndarray) -> np.ndarray:
    """NaN, the score of a pair with a faceless photo, as ``-inf``: never accepted."""
    return np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The smallest similarity ``t`` such that the fraction of ``impostor`` scores ``>= t`` is
    at most ``far``: just above the highest impostor score that would be one too many. A
    score of ``-inf`` (a photo without a face) is never accepted; NaN when there is no score.

    Example: ``threshold_at_far(np.array([0.1, 0.5, 0.9]), 0.34)`` is the float after 0.5.
    """
    n = impostor.size
    if n == 0:
        return float("nan")
    scores = _nan_as_missing(np.asarray(impostor, dtype=np.float64))
    allowed = _allowed(far, n)
    # the (allowed + 1)-th highest score; below all of them nothing more can be rejected
    boundary = -np.inf if allowed >= n else np.partition(scores, n - allowed - 1)[n - allowed - 1]
    return float(np.nextafter(boundary, np.inf))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Fraction of ``genuine`` scores ``>= threshold_at_far(impostor, far)``; a genuine pair
    scored ``-inf`` or NaN (a photo without a face) is a miss. NaN when either set is empty.

    Example: ``tar_at_far(np.array([0.6, 0.95]), np.array([0.1, 0.5, 0.9]), 0.34)`` is 1.0.
    """
    threshold = threshold_at_far(impostor, far)
    if genuine.size == 0 or np.isnan(threshold):
        return float("nan")
    # in float64: a float32 comparison would round the threshold back onto the boundary
    return float(np.mean(np.asarray(genuine, dtype=np.float64) >= threshold))


def error_curve(
    positive: np.ndarray, negative: np.ndarray, points: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(threshold, false_positive_rate, false_negative_rate)`` at up to ``points``
    thresholds taken from the ``negative`` scores, evenly spaced in log false-positive rate
    from ``1 / len(negative)`` to 1; a score is accepted when ``>= threshold``. For pairs it
    is a DET curve (FMR, FNMR); for searches FPIR and FNIR.

    Example: ``t, fmr, fnmr = error_curve(genuine, impostor)``.
    """
    neg, pos = (np.sort(_nan_as_missing(np.asarray(a, np.float64))) for a in (negative, positive))
    scored = int(np.count_nonzero(neg > -np.inf))
    if scored == 0 or pos.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    ranks = np.unique(np.geomspace(1, scored, points).round().astype(np.int64))
    thresholds = np.unique(neg[neg.size - ranks])
    false_positive = (neg.size - np.searchsorted(neg, thresholds, "left")) / neg.size
    false_negative = np.searchsorted(pos, thresholds, "left") / pos.size
    return thresholds, false_positive, false_negative


def all_pair_scores(
    vectors: np.ndarray, identities: Sequence[str], *, block_elements: int = 1 << 23
) -> tuple[np.ndarray, np.ndarray]:
    """The similarity of every pair of rows of ``vectors`` (unit vectors, one per photo):
    ``(genuine, impostor)``, genuine where the two identities are the same. A row of NaN is
    a photo without a face: each of its pairs scores ``-inf``. Blocks of rows are multiplied
    by the rows after them, so memory is the scores plus ``block_elements`` floats.

    Example: ``genuine, impostor = all_pair_scores(np.eye(3), ["a", "a", "b"])``.
    """
    n = len(vectors)
    if len(identities) != n:
        raise InvalidArgument(f"{n} vectors but {len(identities)} identities")
    codes = np.unique(np.asarray(identities, dtype=object), return_inverse=True)[1].ravel()
    found = ~np.isnan(vectors).any(axis=1)
    x = np.where(found[:, None], vectors, 0).astype(np.float32)
    rows_per_block = max(1, block_elements // max(1, n))
    genuine, impostor = [], []
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        sims = x[start:stop] @ x[start:].T  # row i against every photo from ``start`` on
        sims[~found[start:stop], :] = -np.inf
        sims[:, ~found[start:]] = -np.inf
        later = np.arange(start, n)[None, :] > np.arange(start, stop)[:, None]
        same = codes[start:stop, None] == codes[None, start:]
        genuine.append(sims[later & same])
        impostor.append(sims[later & ~same])
    if not genuine:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(genuine), np.concatenate(impostor)


def _rounded(values: np.ndarray, digits: int = 4) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]


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
    folds is applied to the held-out fold; accuracy is reported as mean and std over folds.

    The true accept rates at ``FARS`` are over every pair of photos of the folder (every
    photo of ``manifest.csv`` when there is one, else of ``pairs.txt``): genuine when the two
    identities are the same, impostor otherwise. A photo without a face fails all its genuine
    pairs and falsely matches none of its impostor pairs, which stay counted (ISO/IEC 19795's
    generalised rates). ``det`` is the DET curve of those pairs."""
    pairs = read_lfw_pairs(directory)
    photos = _labelled_photos(directory, pairs)
    files = sorted(photos)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InvalidArgument(
            f"{len(missing)} images named in pairs.txt or manifest.csv are missing: {missing[0]}"
        )
    with (
        tempfile.TemporaryDirectory(prefix="countenance-eval-") as tmp,
        Engine(settings.replace(data_dir=Path(tmp), catalog_url=None)) as engine,
    ):
        faces = _ingest_files(engine, files, worker_count(workers), progress and progress("pairs"))
        space = engine.space
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
    vectors = np.full((len(files), space.dim), np.nan, dtype=np.float32)
    for i, f in enumerate(files):
        if f in faces:
            vectors[i] = faces[f][1]
    genuine, impostor = all_pair_scores(vectors, [photos[f] for f in files])
    thresholds, fmr, fnmr = error_curve(genuine, impostor)
    return {
        "model": settings.model,
        "space": f"{space.model} v{space.version}",
        "accuracy_mean": round(float(np.mean(accuracies)), 4),
        "accuracy_std": round(float(np.std(accuracies)), 4),
        **{f"tar_at_far_{far}": _round4(tar_at_far(genuine, impostor, float(far))) for far in FARS},
        "fold_accuracies": [round(a, 4) for a in accuracies],
        "n_pairs": len(pairs),
        "n_no_face": sum(1 for p in pairs if p.a in no_face or p.b in no_face),
        "n_images": len(files),
        "n_images_no_face": len(no_face),
        "n_genuine_pairs": int(genuine.size),
        "n_impostor_pairs": int(impostor.size),
        "det": {"threshold": _rounded(thresholds), "fmr": _rounded(fmr), "fnmr": _rounded(fnmr)},
    }


def _round4(value: float) -> float | None:
    """Rounded for a report; NaN (nothing to measure) as None, which JSON can carry."""
    return None if np.isnan(value) else round(value, 4)


def _labelled_photos(directory: Path, pairs: list[Pair]) -> dict[Path, str]:
    """Every photo to pair with every other, with its identity: those of ``pairs.txt`` (by
    LFW folder name) and, when the folder has one, all of ``manifest.csv``."""
    photos = {image: image.parent.name for pair in pairs for image in (pair.a, pair.b)}
    if (directory / "manifest.csv").is_file():
        photos.update(read_manifest(directory))
    return photos


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
    search as found when the mate is among the top 10 candidates above the threshold
    (``fnir_rank1_at_fpir_0.01``: when the mate is the first). ``fpir_fnir`` is the curve of
    FNIR at rank 1 against FPIR over thresholds: a mated search is missed unless its mate is
    the first candidate at or above the threshold, a non-mated search is a false positive
    when any candidate is."""
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
        space = engine.space
    mated_results = [top_scores[p] for p, _ in mated]
    mated_ranks = [
        _rank(candidates, identity)
        for candidates, (_, identity) in zip(mated_results, mated, strict=True)
    ]
    nonmated_best = np.array([top_scores[p][0][1] if top_scores[p] else -np.inf for p in nonmated])
    # the score of the mate when it is the first candidate; any other outcome is a miss
    mated_rank1 = np.array(
        [
            candidates[0][1] if candidates and candidates[0][0] == identity else -np.inf
            for candidates, (_, identity) in zip(mated_results, mated, strict=True)
        ]
    )
    threshold = _fpir_threshold(nonmated_best, 0.01)
    fnir_misses = 0
    for candidates, (_, identity) in zip(mated_results, mated, strict=True):
        if not any(i == identity and s > threshold for i, s in candidates[:10]):
            fnir_misses += 1
    n_mated = len(mated)
    thresholds, fpir, fnir = error_curve(mated_rank1, nonmated_best)
    return {
        "model": settings.model,
        "space": f"{space.model} v{space.version}",
        "rank1": round(sum(r == 1 for r in mated_ranks) / max(1, n_mated), 4),
        "rank10": round(sum(0 < r <= 10 for r in mated_ranks) / max(1, n_mated), 4),
        "fnir_at_fpir_0.01": round(fnir_misses / max(1, n_mated), 4),
        "fnir_rank1_at_fpir_0.01": round(
            float(np.count_nonzero(~(mated_rank1 > threshold))) / max(1, n_mated), 4
        ),
        "threshold_at_fpir_0.01": round(float(threshold), 4),
        "n_gallery": n_gallery,
        "n_gallery_photos": len(gallery),
        "n_mated": n_mated,
        "n_nonmated": len(nonmated),
        "n_no_face": sum(1 for p in probes if top_scores[p] is None or not top_scores[p]),
        "fpir_fnir": {
            "threshold": _rounded(thresholds),
            "fpir": _rounded(fpir),
            "fnir": _rounded(fnir),
        },
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
            matches = engine.search_vectors(principal.embedding[None, :], 50, -1.0)[0]
            candidates: dict[str, float] = {}
            for m in matches:
                identity = face_identity.get(m.face_id, f"unlabelled:{m.face_id}")
                candidates.setdefault(identity, m.similarity)
            out[path] = sorted(candidates.items(), key=lambda kv: -kv[1])
        if update:
            update(done, len(probes))
    return out


def eval_cluster(
    directory: Path, settings: Settings, *, workers: int = 0, progress: Progress | None = None
) -> dict[str, Any]:
    """How well ingest groups the photos of DIRECTORY (``manifest.csv``: path, identity)
    into persons: every photo goes through the real ingest into a temporary store, whose
    clustering places each face as it is stored (see :mod:`countenance.people.clusters`).

    Each photo's principal face (its largest whole face) carries the photo's identity; any
    other face in it is someone unknown, a truth of its own. Faces in no person
    (``unassigned``) count as clusters of one. BCubed precision and recall are averaged
    over faces (Amigo et al. 2009); pairwise F is over pairs of faces put together.
    Photos in which no face is indexed (none found, a near-duplicate, a minor) are not
    scored and are counted in ``n_photos_without_face``."""
    from countenance.people.metrics import bcubed, pairwise_f

    rows = read_manifest(directory)
    identity = {path: name for path, name in rows}
    files = sorted(identity)
    workers = worker_count(workers)
    with (
        tempfile.TemporaryDirectory(prefix="countenance-eval-") as tmp,
        Engine(settings.replace(data_dir=Path(tmp), catalog_url=None)) as engine,
    ):
        engine.add_source("evaluation", basis="legitimate_interest")
        engine.ingest(
            FileListSource(files),
            source="evaluation",
            workers=workers,
            progress=progress("ingest") if progress else None,
        )
        digests = {imaging.sha256(f.read_bytes()): f for f in files}
        principal = engine.catalog.principal_faces(engine.space, digests)
        principal_ids = {face_id for face_id, _ in principal.values()}
        truth: list[str] = []
        predicted: list[int | None] = []
        seen_photos: set[str] = set()
        for face_id, digest, person in engine.catalog.faces_with_photos(engine.space):
            path = digests.get(digest)
            if path is None:
                continue
            seen_photos.add(digest)
            truth.append(identity[path] if face_id in principal_ids else f"unknown:{face_id}")
            predicted.append(person)
        space, edge = engine.space, engine.bands.erase
    sizes: dict[int, int] = defaultdict(int)
    for person in predicted:
        if person is not None:
            sizes[person] += 1
    # a person of one face is unassigned too (it can only be left after erasure or not)
    unassigned = sum(1 for p in predicted if p is None or sizes[p] < 2)
    precision, recall, f = bcubed(truth, predicted)
    return {
        "model": settings.model,
        "space": f"{space.model} v{space.version}",
        "rule": "average linkage at the FMR 1e-4 edge",
        "edge": _round4(edge),
        "n_photos": len(files),
        "n_faces": len(truth),
        "n_photos_without_face": len(files) - len(seen_photos),
        "n_identities": len(set(identity.values())),
        "n_clusters": sum(1 for n in sizes.values() if n >= 2),
        "bcubed_precision": _round4(precision),
        "bcubed_recall": _round4(recall),
        "bcubed_f": _round4(f),
        "pairwise_f": _round4(pairwise_f(truth, predicted)),
        "unassigned": _round4(unassigned / len(truth)) if truth else None,
    }
