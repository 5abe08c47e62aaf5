"""Similarity bands from impostor pairs, as every space's bands are defined (:class:`Bands`,
:data:`~countenance.types.BAND_FMRS`): each edge is the cosine similarity that pairs of
photos of *different* people exceed at its false-match rate, over all such pairs; the genuine
pairs' true-match rate at each edge is reported beside it.

``benchmarks/calibrate_bands.py`` recomputes the registered pipelines' bands with it (photos
ingested through an engine); ``countenance models calibrate`` measures a brought model's,
each photo's principal face embedded by its pipeline, and stores them in its lock file.

Example::

    result = calibrate(vectors, labels)      # float32[N, D] unit rows; one label per row
    result.bands.strong, result.impostor_pairs
    calibrate_brought("auraface", Path("faces/"), settings)   # embeds, measures, stores
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from countenance.errors import BadImage, InvalidArgument
from countenance.types import BAND_FMRS, Bands

if TYPE_CHECKING:
    from countenance.config import Settings
    from countenance.vision.pipeline import FacePipeline

__all__ = [
    "MIN_IMPOSTOR_PAIRS",
    "Calibration",
    "Edge",
    "calibrate",
    "calibrate_brought",
    "pair_similarities",
    "principal_vectors",
]

# The strong edge is the similarity 1 impostor pair in 100,000 exceeds: with fewer pairs it
# would be no more than the largest impostor seen, and the band would promise a rate that
# was never measured.
MIN_IMPOSTOR_PAIRS = round(1 / min(rate for _, rate in BAND_FMRS))

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Edge:
    """One band edge: its false-match rate, the similarity impostors exceed at that rate,
    and the fraction of genuine pairs at or above it (None without genuine pairs)."""

    fmr: float
    min_similarity: float
    tmr: float | None


@dataclass(frozen=True, slots=True)
class Calibration:
    """Bands measured on one labelled set, with what they were measured on."""

    bands: Bands
    edges: dict[str, Edge]
    photos: int
    identities: int
    impostor_pairs: int
    genuine_pairs: int
    skipped: int = 0  # photos with no usable face (or unreadable)

    def to_json(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "skipped": self.skipped,
            "identities": self.identities,
            "impostor_pairs": self.impostor_pairs,
            "genuine_pairs": self.genuine_pairs,
            "edges": {
                band: {
                    "fmr": e.fmr,
                    "min_similarity": round(e.min_similarity, 4),
                    "tmr": None if e.tmr is None else round(e.tmr, 4),
                }
                for band, e in self.edges.items()
            },
        }


def pair_similarities(
    vectors: npt.ArrayLike, labels: Sequence[str], block: int = 1024
) -> tuple[Floats, Floats]:
    """The cosine similarity of every pair of rows, split into impostor pairs (different
    labels) and genuine pairs (the same label); rows are unit vectors."""
    v = np.asarray(vectors, dtype=np.float32)
    names = np.asarray(labels)
    if len(v) != len(names):
        raise InvalidArgument(f"{len(v)} vectors but {len(names)} labels")
    impostor_parts, genuine_parts = [], []
    for i in range(0, len(v), block):  # blocks keep memory flat
        sims = v[i : i + block] @ v.T
        rows = np.arange(i, min(i + block, len(v)))[:, None]
        upper = np.arange(len(v))[None, :] > rows
        same = names[i : i + block][:, None] == names[None, :]
        impostor_parts.append(sims[upper & ~same])
        genuine_parts.append(sims[upper & same])
    empty = np.zeros(0, dtype=np.float32)
    impostor = np.concatenate(impostor_parts) if impostor_parts else empty
    genuine = np.concatenate(genuine_parts) if genuine_parts else empty
    return impostor, genuine


def calibrate(
    vectors: npt.ArrayLike,
    labels: Sequence[str],
    *,
    min_impostor_pairs: int = MIN_IMPOSTOR_PAIRS,
    skipped: int = 0,
) -> Calibration:
    """The bands of the space ``vectors`` live in, from all their impostor pairs.

    Refused (InvalidArgument) with fewer than ``min_impostor_pairs`` impostor pairs, or where
    the edges do not rise strictly from weak to strong (the model does not tell these
    people apart)."""
    impostor, genuine = pair_similarities(vectors, labels)
    if impostor.size < max(1, min_impostor_pairs):
        raise InvalidArgument(
            f"{impostor.size:,} impostor pairs are too few to measure a false-match rate of"
            f" 1 in {min_impostor_pairs:,}: bring at least {min_impostor_pairs:,} (about"
            f" {_photos_for(min_impostor_pairs):,} photos of different people)"
        )
    edges = {}
    for band, fmr in BAND_FMRS:
        edge = float(np.quantile(impostor, 1 - fmr))
        tmr = float(np.mean(genuine >= edge)) if genuine.size else None
        edges[band] = Edge(fmr, edge, tmr)
    rising = [edges[band].min_similarity for band, _ in BAND_FMRS]
    if any(b <= a for a, b in pairwise(rising)):
        raise InvalidArgument(
            "the impostor similarities do not rise from the weak to the strong edge"
            f" ({', '.join(f'{x:.4f}' for x in rising)}): this model does not tell these"
            " people apart"
        )
    bands = Bands(
        strong=edges["strong"].min_similarity,
        possible=edges["possible"].min_similarity,
        weak=edges["weak"].min_similarity,
        erase=edges["erase"].min_similarity,
    )
    return Calibration(
        bands=bands,
        edges=edges,
        photos=len(labels),
        identities=len(set(labels)),
        impostor_pairs=int(impostor.size),
        genuine_pairs=int(genuine.size),
        skipped=skipped,
    )


def principal_vectors(
    pipeline: FacePipeline,
    rows: Sequence[tuple[Path, str]],
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Floats, list[str], int]:
    """Each photo's principal embedded face (the largest whole face that passes quality, as
    a store indexes it) with its label; photos without one, or unreadable, are counted as
    skipped. Returns ``(vectors, labels, skipped)``."""
    from countenance import imaging

    vectors, labels, skipped = [], [], 0
    for done, (path, identity) in enumerate(rows, start=1):
        try:
            data = imaging.read_file(path, settings.max_file_bytes)
            rgb = imaging.decode(data, max_pixels=settings.max_pixels, name=str(path)).rgb
        except BadImage:
            skipped += 1
        else:
            face = next((f for f in pipeline.analyse(rgb) if f.embedding is not None), None)
            if face is None or face.embedding is None:
                skipped += 1
            else:
                vectors.append(face.embedding)
                labels.append(identity)
        if progress is not None:
            progress(done, len(rows))
    dim = pipeline.space.dim
    stacked = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return stacked, labels, skipped


def calibrate_brought(
    name: str,
    directory: Path,
    settings: Settings,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Measure brought model ``name``'s bands on the labelled folder ``directory``
    (``manifest.csv`` with columns path,identity) and store them in its lock file.

    Example: ``calibrate_brought("sface", Path("faces/"), settings).bands.possible``.
    """
    from countenance.labelled import read_manifest
    from countenance.vision.models import ModelStore
    from countenance.vision.onnx.pipelines import brought_pipeline

    store = ModelStore.from_settings(settings)
    store.brought_path(name)  # a file changed since its install fails now, not after the manifest
    rows = read_manifest(directory)
    pipeline = brought_pipeline(settings, store, name, require_bands=False)
    vectors, labels, skipped = principal_vectors(pipeline, rows, settings, progress)
    result = calibrate(vectors, labels, skipped=skipped)
    summary = {"space": pipeline.space.key, "photos_dir": str(directory), **result.to_json()}
    store.record_bands(name, result.bands, summary)
    return result


def _photos_for(pairs: int) -> int:
    """The fewest photos of different people whose pairs number at least ``pairs``."""
    n = 2
    while n * (n - 1) // 2 < pairs:
        n += 1
    return n
