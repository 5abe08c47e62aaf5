"""Persons: countenance's online average linkage against batch average linkage and the peer's
DBSCAN on real faces, and what placing one face costs in a gallery of 10^6.

    python benchmarks/cluster.py --photos ../shared/faces/lfw ../shared/faces/deepface --json
    python benchmarks/cluster.py --no-quality --scale 100000 1000000 --json

**Quality.** Every photo of each ``--photos`` folder (``manifest.csv``: ``path,identity``) goes
through the pipeline ``--model`` as ingest runs it (``PhotoAnalyser``: detect, align, quality
and age checks, embed); every face with an embedding is clustered, as a store would index
it. A photo's identity is its principal face's (the library's rule, ``Box.principal_key``:
the largest face wholly inside the photo, else the largest); every other face of the photo
is a stranger of its own, a truth label nobody else has. Embeddings are cached in ``--cache``
(vectors and photo numbers only, never photos or names). On the same embeddings, one run:

- ``dbscan``, the peer's way (Immich): scikit-learn's ``DBSCAN(eps=0.5, min_samples=3,
  metric="cosine")``; noise is unassigned.
- ``average_linkage_batch``: scipy's ``linkage(method="average", metric="cosine")`` cut by
  ``fcluster(criterion="distance", t=1 - edge)``; singletons are unassigned.
- ``online_linkage``: ``countenance.people.linkage.Linkage`` over ``MemoryGroups``, faces
  placed one at a time, each given its ``--k`` nearest faces placed before it (faiss
  ``IndexFlatIP``), in manifest order (a folder's photos of one person come together) and
  in ``--random-orders`` seeded random orders.

``edge`` is the space's ``Bands.erase``: the similarity LFW impostor pairs exceed at FMR 1e-4.
Each row: BCubed precision, recall and F and pairwise F (``countenance.people.metrics``; an
unassigned face is a cluster of its own), clusters of 2+ faces, true identities, the share
of faces in no cluster of 2+, and seconds; ``principal_only`` scores the same clusters on
the labelled faces alone (a stranger in the background of several photos is one person the
truth cannot name). With several folders each is scored alone and then all together
(identities kept apart by folder).

**Scale** (``--scale N ...``). A synthetic gallery of N faces in the model's dimension with
person structure: identities of 1 to 19 faces (uniform, mean 10: N/10 identities), each a
centre drawn from a Gaussian fitted to the real faces' per-identity means, each face its
centre plus noise from their pooled within-identity covariance, normalised
(``benchmarks/_descriptors.py``'s model, fitted to the principal faces of the first
``--photos`` folder). The JSON sets the synthetic pairs' similarities beside the real
ones'. Every identity of 2+ faces is made a person at once (``MemoryGroups.new_person``,
not by placing its faces); one-face identities stay unassigned. The gallery goes into
countenance's ``FaissIndex`` (``--index flat``: exact, the layout the store uses up to
200,000 faces; ``auto``: the layout the store would choose, HNSW at 10^6 with 512-d faces,
whose build takes many minutes on 2 cores). Then ``--place`` new faces (half new faces of
enrolled identities, half strangers in twos) are placed one at a time: one index search
(top ``--k``, one thread), ``Linkage.place``, and the face added to the index. Per face:
p50 and mean ms of each step and all; the share of new faces of enrolled identities placed in
their person, of strangers placed in a gallery person (a false join), and of strangers'
second faces that made a person with the first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

# Sibling modules: ``python benchmarks/cluster.py`` puts this folder on sys.path.
from _descriptors import CACHE_DIR, CHUNK, FaceModel, fit_model, log
from ingest import load_average

from countenance import imaging
from countenance.config import Settings
from countenance.index.faiss import FaissIndex
from countenance.ingest import PhotoAnalyser, run_analyses
from countenance.labelled import read_manifest
from countenance.people.clusters import pair_edge
from countenance.people.linkage import Linkage, MemoryGroups, Neighbour
from countenance.people.metrics import bcubed, pairwise_f
from countenance.types import Bands, EmbeddingSpace
from countenance.vision.pipeline import FacePipeline

Matrix = npt.NDArray[np.float32]
Labels = list[int | None]  # a face's cluster; None: unassigned

DBSCAN_EPS = 0.5  # the peer's maximum cosine distance
DBSCAN_MIN_FACES = 3  # and its minimum faces of a person
_CACHE_VERSION = "1"


# -- real faces ----------------------------------------------------------------------------------


@dataclass
class Faces:
    """Every embedded face of a labelled folder, with its truth label."""

    name: str
    vectors: Matrix  # float32[n, dim], unit rows
    truth: list[str]
    principal: npt.NDArray[np.bool_]  # the face that carries its photo's identity
    photos: int
    photos_without_face: int
    embed_seconds: float | None  # None: read from the cache


def embed_folder(
    folder: Path, pipeline: FacePipeline, settings: Settings, workers: int, cache_dir: Path
) -> Faces:
    """Every face with an embedding in every photo of ``folder``'s manifest, computed once,
    then read from ``cache_dir``."""
    rows = read_manifest(folder)
    listing = "\n".join(str(p.relative_to(folder)) for p, _ in rows)
    key = hashlib.sha256(f"{_CACHE_VERSION}\n{pipeline.space.key}\n{listing}".encode())
    cache = cache_dir / f"cluster-faces-{key.hexdigest()[:20]}.npz"
    seconds: float | None = None
    if cache.is_file():
        with np.load(cache) as saved:
            vectors, photo, principal = saved["vectors"], saved["photo"], saved["principal"]
    else:
        log(f"{folder}: embedding {len(rows)} photos ({workers} worker(s))")
        started = time.perf_counter()
        vectors, photo, principal = _embed(rows, pipeline, settings, workers)
        seconds = time.perf_counter() - started
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors, photo=photo, principal=principal)
    truth = [
        rows[p][1] if lead else f"stranger:{p}:{j}"
        for j, (p, lead) in enumerate(zip(photo.tolist(), principal.tolist(), strict=True))
    ]
    return Faces(
        name=str(folder),
        vectors=vectors.astype(np.float32),
        truth=truth,
        principal=principal.astype(bool),
        photos=len(rows),
        photos_without_face=len(rows) - len(set(photo.tolist())),
        embed_seconds=seconds,
    )


def _embed(
    rows: list[tuple[Path, str]], pipeline: FacePipeline, settings: Settings, workers: int
) -> tuple[Matrix, npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    def jobs() -> Iterator[tuple[int, tuple[bytes, str]]]:
        for i, (path, _) in enumerate(rows):
            try:
                data = imaging.read_file(path, settings.max_file_bytes)
            except OSError:
                data = b""  # the analyser reports it as a bad image
            yield i, (data, str(path))

    vectors: list[Matrix] = []
    photo: list[int] = []
    principal: list[bool] = []
    analyses = run_analyses(jobs(), workers, settings, lambda: PhotoAnalyser(settings, pipeline))
    for done, (i, analysis) in enumerate(analyses, 1):
        usable = [f for f in analysis.faces if f.embedding is not None]
        if usable:
            lead = max(
                range(len(usable)),
                key=lambda j: usable[j].box.principal_key(analysis.width, analysis.height),
            )
            for j, face in enumerate(usable):
                assert face.embedding is not None
                vectors.append(face.embedding)
                photo.append(i)
                principal.append(j == lead)
        if done % 500 == 0:
            log(f"  {done}/{len(rows)} photos, {len(vectors)} faces")
    dim = pipeline.space.dim
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return matrix, np.asarray(photo, dtype=np.int32), np.asarray(principal, dtype=bool)


def together(sets: Sequence[Faces]) -> Faces:
    """All folders as one set; identities of different folders stay apart."""
    return Faces(
        name=" + ".join(s.name for s in sets),
        vectors=np.concatenate([s.vectors for s in sets]),
        truth=[f"{s.name}/{t}" for s in sets for t in s.truth],
        principal=np.concatenate([s.principal for s in sets]),
        photos=sum(s.photos for s in sets),
        photos_without_face=sum(s.photos_without_face for s in sets),
        embed_seconds=None,
    )


# -- the three ways --------------------------------------------------------------------------


def dbscan(vectors: Matrix) -> Labels:
    from sklearn.cluster import DBSCAN

    found = DBSCAN(
        eps=DBSCAN_EPS, min_samples=DBSCAN_MIN_FACES, metric="cosine", n_jobs=1
    ).fit_predict(vectors)
    return [None if c < 0 else int(c) for c in found]


def batch_average_linkage(vectors: Matrix, edge: float) -> Labels:
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors.astype(np.float64), method="average", metric="cosine")
    return _singletons_unassigned(fcluster(tree, t=1.0 - edge, criterion="distance").tolist())


@dataclass
class Online:
    labels: Labels
    faces_joined: int  # faces that joined a person (or made one with a lone face)
    persons_made: int
    persons_merged: int
    faces_absorbed: int  # lone faces a grown person took in


def online_linkage(
    vectors: Matrix, edge: float, k: int, order: Sequence[int], bands: Bands | None = None
) -> Online:
    """Each face in ``order`` placed by ``Linkage`` given its ``k`` nearest faces placed
    before it (exact search). With ``bands``, two unassigned faces pair at the store's
    ``pair_edge`` for the unassigned faces placed so far."""
    groups = MemoryGroups()
    rule = Linkage(groups, edge)
    index = faiss.IndexFlatIP(vectors.shape[1])
    placed: list[int] = []  # index row -> face id
    joined = made = merged = absorbed = 0
    for face_id in order:
        x = vectors[face_id]
        groups.add_face(face_id, x)
        near: list[Neighbour] = []
        if placed:
            sims, rows = index.search(x[None, :], min(k, len(placed)))
            near = [(placed[r], float(s)) for s, r in zip(sims[0], rows[0], strict=True) if r >= 0]
        persons_before = len(groups.members)
        if bands is not None:  # the store's rule: the pair edge rises with the unassigned
            rule.pair_edge = pair_edge(bands, len(placed) - len(groups.person))
        placement = rule.place(face_id, x, near)
        index.add(x[None, :])
        placed.append(face_id)
        joined += placement.person is not None
        # a merge drops a person from the groups; a new one adds one
        made += len(groups.members) + len(placement.merged) - persons_before
        merged += len(placement.merged)
        absorbed += len(placement.absorbed)
    labels = groups.labels(range(len(vectors)))
    return Online(_singletons_unassigned(labels), joined, made, merged, absorbed)


def _singletons_unassigned(labels: Sequence[int | None]) -> Labels:
    sizes = Counter(c for c in labels if c is not None)
    return [c if c is not None and sizes[c] >= 2 else None for c in labels]


def scores(
    truth: Sequence[str], labels: Labels, seconds: float, principal: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    precision, recall, f = bcubed(truth, labels)
    sizes = Counter(c for c in labels if c is not None)
    lead = np.flatnonzero(principal).tolist()
    lead_p, lead_r, lead_f = bcubed([truth[i] for i in lead], [labels[i] for i in lead])
    return {
        "bcubed_precision": round(precision, 4),
        "bcubed_recall": round(recall, 4),
        "bcubed_f": round(f, 4),
        "pairwise_f": round(pairwise_f(truth, labels), 4),
        "n_clusters": len(sizes),
        "n_identities": len(set(truth)),
        "unassigned": round(sum(c is None for c in labels) / len(labels), 4),
        "seconds": round(seconds, 3),
        # the same clusters scored on the labelled faces alone: a stranger in the background
        # of several photos (an aide, a spouse) is one person the truth cannot name
        "principal_only": {
            "bcubed_precision": round(lead_p, 4),
            "bcubed_recall": round(lead_r, 4),
            "bcubed_f": round(lead_f, 4),
        },
    }


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def quality(
    faces: Faces, edge: float, k: int, seeds: Sequence[int], bands: Bands | None
) -> dict[str, Any]:
    x, truth, lead = faces.vectors, faces.truth, faces.principal
    log(f"{faces.name}: clustering {len(x)} faces")
    rows: list[dict[str, Any]] = []
    labels, seconds = timed(lambda: dbscan(x))
    rows.append(
        {
            "method": "dbscan",
            "params": f"eps={DBSCAN_EPS}, min_samples={DBSCAN_MIN_FACES}, metric=cosine",
            **scores(truth, labels, seconds, lead),
        }
    )
    labels, seconds = timed(lambda: batch_average_linkage(x, edge))
    rows.append(
        {
            "method": "average_linkage_batch",
            "params": f"scipy average/cosine, fcluster distance t=1-{edge}",
            **scores(truth, labels, seconds, lead),
        }
    )
    orders = {"manifest": list(range(len(x)))}
    for seed in seeds:
        orders[f"random (seed {seed})"] = np.random.default_rng(seed).permutation(len(x)).tolist()
    for name, order in orders.items():
        started = time.perf_counter()
        online = online_linkage(x, edge, k, order, bands)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "method": "online_linkage",
                "params": f"Linkage + MemoryGroups, k={k}, edge={edge}",
                "order": name,
                **scores(truth, online.labels, seconds, lead),
                "faces_joined": online.faces_joined,
                "persons_made": online.persons_made,
                "persons_merged": online.persons_merged,
                "faces_absorbed": online.faces_absorbed,
            }
        )
    for row in rows:
        log(
            f"  {row['method']} {row.get('order', '')}: BCubed F {row['bcubed_f']} "
            f"(P {row['bcubed_precision']}, R {row['bcubed_recall']}), pairwise F "
            f"{row['pairwise_f']}, {row['n_clusters']} clusters, {row['seconds']} s"
        )
    return {
        "photos": faces.name,
        "n_photos": faces.photos,
        "n_photos_without_face": faces.photos_without_face,
        "n_faces": len(x),
        "n_faces_not_principal": int((~faces.principal).sum()),
        "embed_seconds": None if faces.embed_seconds is None else round(faces.embed_seconds, 1),
        "rows": rows,
    }


# -- scale ---------------------------------------------------------------------------------------


def synthetic_gallery(
    model: FaceModel, n: int, rng: np.random.Generator
) -> tuple[Matrix, npt.NDArray[np.int64], Matrix]:
    """``n`` unit faces of identities of 1 to 19 faces (uniform), stored consecutively; each
    face's identity; and the identities' centres (PCA coordinates of the model)."""
    sizes = rng.integers(1, 20, size=n // 5 + 1)
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, n)) + 1
    sizes = sizes[:count]
    sizes[-1] -= int(ends[count - 1]) - n
    labels = np.repeat(np.arange(count), sizes)
    centres = model.centres(rng, count)
    gallery = np.empty((n, model.dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        gallery[start:stop] = model.faces_of(rng, centres[labels[start:stop]])
    return gallery, labels, centres


def similarity_profile(
    vectors: Matrix, labels: npt.NDArray[np.int64], edge: float
) -> dict[str, float]:
    """Genuine pairs' median similarity and share at or above ``edge``; impostor pairs'
    similarity at FMR 1e-2, 1e-3 and 1e-4."""
    sims = vectors @ vectors.T
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    genuine, impostor = sims[upper & same], sims[upper & ~same]
    return {
        "genuine_median": round(float(np.median(genuine)), 4),
        "genuine_at_or_above_edge": round(float(np.mean(genuine >= edge)), 4),
        **{f"impostor_fmr_{r}": round(float(np.quantile(impostor, 1 - float(r))), 4) for r in FMRS},
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
    }


FMRS = ("1e-2", "1e-3", "1e-4")


def fitted_model(faces: Faces, edge: float, seed: int) -> tuple[FaceModel, dict[str, Any]]:
    """The face model fitted to the principal faces of ``faces``, and how its pairs compare
    with the real ones'."""
    lead = np.flatnonzero(faces.principal)
    names = [faces.truth[i] for i in lead]
    codes = {name: c for c, name in enumerate(dict.fromkeys(names))}
    labels = np.asarray([codes[name] for name in names], dtype=np.int64)
    real = faces.vectors[lead]
    model = fit_model(real, labels)
    multi = np.isin(labels, np.flatnonzero(np.bincount(labels) >= 2))
    sample = np.random.default_rng([seed, 3]).permutation(np.flatnonzero(multi))[:4000]
    fake, fake_labels, _ = synthetic_gallery(model, 4000, np.random.default_rng([seed, 4]))
    check = {
        "fitted_to": f"{model.faces} principal faces of {model.identities} people of {faces.name}",
        "real": similarity_profile(real[sample], labels[sample], edge),
        "synthetic": similarity_profile(fake, fake_labels, edge),
    }
    log(f"model check: {json.dumps(check)}")
    return model, check


def scale(
    model: FaceModel, space: EmbeddingSpace, n: int, args: argparse.Namespace, edge: float
) -> dict[str, Any]:
    rng = np.random.default_rng([args.seed, n])
    log(f"n={n:,}: generating the gallery")
    (gallery, labels, centres), generate_s = timed(lambda: synthetic_gallery(model, n, rng))
    # new faces: half of enrolled identities (picked through a uniformly drawn gallery face,
    # so larger persons are picked more often), half strangers, two faces of each
    mated = args.place // 2
    strangers = (args.place - mated) // 2
    enrolled = int(labels[-1]) + 1
    pick = np.concatenate(
        [labels[rng.integers(0, n, size=mated)], enrolled + np.repeat(np.arange(strangers), 2)]
    )
    new_centres = np.concatenate(
        [centres[pick[:mated]], np.repeat(model.centres(rng, strangers), 2, axis=0)]
    )
    del centres
    new_faces = model.faces_of(rng, new_centres)
    order = rng.permutation(len(pick))
    new_faces, pick = new_faces[order], pick[order]
    ends = np.cumsum(np.bincount(labels))

    log(f"n={n:,}: persons from the identities")
    groups, build_groups_s = timed(lambda: _enrolled_groups(gallery, labels))
    persons_enrolled, faces_unassigned = len(groups.members), n - len(groups.person)
    log(f"n={n:,}: building the {args.index} index")
    with tempfile.TemporaryDirectory(dir=args.cache, prefix="cluster-bench-") as tmp:
        index = FaissIndex(space, Path(tmp), layout="flat" if args.index == "flat" else "auto")
        started = time.perf_counter()
        index.rebuild(np.arange(n, dtype=np.int64), gallery)
        build_index_s = time.perf_counter() - started
        layout = index.kind
        log(f"n={n:,}: {layout} built in {build_index_s:.1f} s; placing {len(pick)} faces")
        rule = Linkage(groups, edge)
        steps = np.zeros((len(pick), 3))  # search, place, index add
        placements = []
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(args.threads)
        try:
            for j, x in enumerate(new_faces):
                face_id = n + j
                t0 = time.perf_counter()
                sims, ids = index.search(x[None, :], args.k)
                t1 = time.perf_counter()
                groups.add_face(face_id, x)
                near = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True)]
                placements.append(rule.place(face_id, x, near))
                t2 = time.perf_counter()
                index.add(np.array([face_id], dtype=np.int64), x[None, :])
                steps[j] = (t1 - t0, t2 - t1, time.perf_counter() - t2)
        finally:
            faiss.omp_set_num_threads(before)
        del index
    ms = steps * 1e3
    total = ms.sum(axis=1)
    person = groups.person.get
    found_own = [  # in the person of its identity's (last) gallery face
        person(n + j) is not None and person(n + j) == person(int(ends[label]) - 1)
        for j, label in enumerate(pick.tolist())
        if label < enrolled
    ]
    twins: dict[int, list[int]] = {}
    for j, label in enumerate(pick.tolist()):
        if label >= enrolled:
            twins.setdefault(label, []).append(n + j)
    strangers_placed = [face for pair in twins.values() for face in pair]
    wrongly = [_joined_gallery(groups, face, n) for face in strangers_placed]
    paired = [person(a) is not None and person(a) == person(b) for a, b in twins.values()]
    return {
        "n": n,
        "dim": model.dim,
        "index": layout,
        "identities": enrolled,
        "persons_enrolled": persons_enrolled,
        "faces_unassigned": faces_unassigned,
        "generate_s": round(generate_s, 1),
        "build_groups_s": round(build_groups_s, 1),
        "build_index_s": round(build_index_s, 1),
        "placed": len(pick),
        "k": args.k,
        "index_searches_per_face": 1,
        "threads": args.threads,
        "ms_per_face_p50": round(float(np.percentile(total, 50)), 3),
        "ms_per_face_mean": round(float(total.mean()), 3),
        "ms_per_face_p99": round(float(np.percentile(total, 99)), 3),
        "search_ms_p50": round(float(np.percentile(ms[:, 0], 50)), 3),
        "search_ms_mean": round(float(ms[:, 0].mean()), 3),
        "place_ms_p50": round(float(np.percentile(ms[:, 1], 50)), 3),
        "place_ms_mean": round(float(ms[:, 1].mean()), 3),
        "index_add_ms_mean": round(float(ms[:, 2].mean()), 3),
        "place_share_of_time": round(float(ms[:, 1].sum() / ms.sum()), 4),
        "mated_found_own_person": round(float(np.mean(found_own)), 4),
        "strangers_joined_gallery_person": round(float(np.mean(wrongly)), 4),
        "strangers_paired_with_twin": round(float(np.mean(paired)), 4),
        "persons_merged": sum(len(p.merged) for p in placements),
    }


def _enrolled_groups(gallery: Matrix, labels: npt.NDArray[np.int64]) -> MemoryGroups:
    """Every identity of 2+ faces made a person at once."""
    groups = MemoryGroups()
    for face_id, vector in enumerate(gallery):
        groups.add_face(face_id, vector)
    ends = np.cumsum(np.bincount(labels)).tolist()
    start = 0
    for end in ends:
        if end - start >= 2:
            groups.new_person(range(start, end))
        start = end
    return groups


def _joined_gallery(groups: MemoryGroups, face_id: int, n: int) -> bool:
    person = groups.person.get(face_id)
    return person is not None and any(i < n for i in groups.members[person])


# -- driving -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, nargs="+", default=[Path("../shared/faces/lfw")])
    parser.add_argument("--model", default="faceplugin", help="registered pipeline name")
    parser.add_argument("--workers", type=int, default=1, help="to embed the photos")
    parser.add_argument("--k", type=int, default=32, help="nearest faces a placement sees")
    parser.add_argument("--edge", type=float, default=None, help="default: the space's erase band")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--random-orders", type=int, default=3, help="random orders (seeds --seed, --seed+1, ..)"
    )
    parser.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--scale", type=int, nargs="*", default=[], help="synthetic gallery sizes")
    parser.add_argument("--place", type=int, default=2000, help="faces placed at each scale")
    parser.add_argument("--index", choices=("flat", "auto"), default="flat")
    parser.add_argument("--threads", type=int, default=1, help="faiss threads while placing")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="embeddings and scratch")
    parser.add_argument("--json", action="store_true", help="print compact JSON")
    args = parser.parse_args()
    settings = Settings.from_env(model=args.model)
    pipeline = FacePipeline.from_settings(settings)
    space = pipeline.space
    if args.edge is None and space.bands is None:
        parser.error(f"{space.key} has no calibrated bands: pass --edge")
    edge = args.edge if args.edge is not None else space.bands.erase  # type: ignore[union-attr]
    rule_bands = space.bands if args.edge is None else None  # --edge: the bare rule
    load_before = load_average()
    sets = [embed_folder(p, pipeline, settings, args.workers, args.cache) for p in args.photos]
    report: dict[str, Any] = {
        "benchmark": "cluster",
        "model": args.model,
        "space": space.key,
        "edge": edge,
        "edge_rule": "Bands.erase: the similarity LFW impostor pairs exceed at FMR 1e-4",
        "truth": "a photo's identity is its principal face's; its other faces are strangers",
        "model_threads": settings.model_threads,
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": load_before,
    }
    if args.quality:
        scored = sets + ([together(sets)] if len(sets) > 1 else [])
        seeds = range(args.seed, args.seed + args.random_orders)
        report["quality"] = [quality(s, edge, args.k, seeds, rule_bands) for s in scored]
    if args.scale:
        model, check = fitted_model(sets[0], edge, args.seed)
        report["synthetic_gallery"] = {
            "rule": "identities of 1-19 faces (uniform, mean 10); centres from the fitted "
            "between-identity Gaussian, faces centre + within-identity noise, normalised",
            **check,
        }
        report["scale"] = [scale(model, space, n, args, edge) for n in args.scale]
        for row in report["scale"]:
            log(f"n={row['n']:,}: {row['ms_per_face_p50']} ms a face (p50)")
    report["load_after"] = load_average()
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
