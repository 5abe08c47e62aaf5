"""Descriptors for ``benchmarks/search.py``: real ones, a model fitted to them, synthetic faces.

Real descriptors come from the engine's own pipeline over photos of ``../shared/faces/lfw``:
``dlib`` (one view per face, the space ``dlib_resnet_v1/1``, 128-d) or ``faceplugin`` (the
default model, ``faceplugin_fr_feature/1+mirror``, 512-d); only the vectors and integer
identity labels are cached, outside the repository, never the photos or names.

The model, in PCA coordinates of the real descriptors: an identity is a centre drawn from a
Gaussian fitted to per-identity mean descriptors (between-identity covariance, corrected for
the noise of means of few photos); a face is its centre plus within-identity noise drawn from
the pooled within-identity covariance; the face is then L2-normalised. Both covariances are
full over the top ``k`` principal components and diagonal over the rest, so the synthetic
faces are as anisotropic as real ones in every dimension.

Example::

    vectors, labels = real_descriptors(Path("../shared/faces/lfw"), 600, cache_dir, "dlib")
    model = fit_model(vectors, labels)
    synth = Synthesiser(model, dim=128, seed=1)
    gallery = synth.gallery_chunk(0)[:1000]       # float32[1000, 128], unit rows
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from countenance.types import EmbeddingSpace

Matrix = npt.NDArray[np.float32]

CACHE_DIR = Path.home() / ".cache" / "countenance-bench"

# Galleries are generated in chunks of this many faces, each from its own seeded streams, so a
# gallery of n faces is the first n rows of one endless sequence (1e5 is a prefix of 1e6) and
# the centre of any enrolled identity can be regenerated for a query without keeping them all.
CHUNK = 1 << 18

# Galleries wider than their model put this share of each face's energy into isotropic noise
# on top of the model mapped by a fixed random orthogonal map.
EMBED_NOISE = 0.05

_CACHE_VERSION = "1"


def log(message: str) -> None:
    """Progress goes to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)


# -- real descriptors ---------------------------------------------------------------------------


def select_photos(
    faces_dir: Path, limit: int, per_identity: int = 8, seed: int = 0
) -> list[tuple[Path, int]]:
    """Up to ``limit`` photos of people with 2+ photos (at most ``per_identity`` each), as
    ``(path, label)``; people come in a seeded random order, not alphabetically."""
    from countenance.evaluation import read_manifest

    by_identity: dict[str, list[Path]] = {}
    for path, identity in read_manifest(faces_dir):
        by_identity.setdefault(identity, []).append(path)
    names = sorted(name for name, paths in by_identity.items() if len(paths) >= 2)
    order = np.random.default_rng(seed).permutation(len(names))
    chosen: list[tuple[Path, int]] = []
    for label, i in enumerate(order):
        paths = sorted(by_identity[names[i]])[:per_identity]
        chosen.extend((p, label) for p in paths[: max(0, limit - len(chosen))])
        if len(chosen) >= limit:
            break
    return chosen


MODELS = ("dlib", "faceplugin")
"""Pipelines whose real descriptors a model can be fitted to (``--model``)."""


def model_space(model: str) -> EmbeddingSpace:
    """The space, with its calibrated bands, of ``model``'s descriptors as computed here."""
    from countenance.vision.registry import dlib_space, pipeline_spec

    return dlib_space(1) if model == "dlib" else pipeline_spec(model).space


def real_descriptors(
    faces_dir: Path, limit: int, cache_dir: Path, model: str = "dlib"
) -> tuple[Matrix, npt.NDArray[np.int64]]:
    """Descriptors of each chosen photo's principal face by the pipeline ``model`` (dlib:
    one view, space ``dlib_resnet_v1/1``; faceplugin: its own space, the crop and its
    mirror) and their identity labels; computed once, then read from ``cache_dir``."""
    photos = select_photos(faces_dir, limit)
    if not photos:
        raise SystemExit(f"no photos of people with 2+ photos under {faces_dir}")
    space = model_space(model)
    listing = "\n".join(f"{p.relative_to(faces_dir)}\t{label}" for p, label in photos)
    named = f"{space.model}/{space.version}"  # dlib's: the key its caches were written under
    key = hashlib.sha256(f"{_CACHE_VERSION}\n{named}\n{listing}".encode()).hexdigest()
    cache = cache_dir / f"descriptors-{key[:20]}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            return saved["vectors"].astype(np.float32), saved["labels"].astype(np.int64)

    from countenance import imaging
    from countenance.config import Settings
    from countenance.vision.models import load_pipeline

    # dlib's default is four views; one is the space its bands here are calibrated for
    settings = Settings(model=model, embed_views=1)
    pipeline = load_pipeline(model, settings)
    if pipeline.space != space:
        raise SystemExit(f"the {model} pipeline embeds into {pipeline.space.key}, not {space.key}")
    vectors, labels = [], []
    for done, (path, label) in enumerate(photos, 1):
        rgb = imaging.decode(imaging.read_file(path, settings.max_file_bytes)).rgb
        # ages=False: LFW's people are adults, and an age estimate only slows the fit
        analysed = pipeline.analyse(rgb, ages=False)
        embedded = [f.embedding for f in analysed if f.embedding is not None]
        if embedded:  # the principal face: faces come principal first
            vectors.append(embedded[0])
            labels.append(label)
        if done % 100 == 0 or done == len(photos):
            log(f"descriptors ({model}): {done}/{len(photos)} photos, {len(vectors)} faces")
    result = np.stack(vectors).astype(np.float32), np.asarray(labels, dtype=np.int64)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=result[0], labels=result[1])
    return result


def components_holding(vectors: Matrix, share: float) -> int:
    """How many principal components of ``vectors`` hold ``share`` of their variance."""
    x = vectors.astype(np.float64)
    variances = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    held = np.cumsum(variances) / variances.sum()
    return int(np.searchsorted(held, share)) + 1


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceModel:
    """Gaussian between- and within-identity model in PCA coordinates of real descriptors.

    ``*_root`` are ``k x k`` square roots of the covariances over the top ``k`` components,
    ``*_sd`` the standard deviations of the remaining ``dim - k`` components.
    """

    mean: Matrix  # [dim]
    basis: Matrix  # [dim, dim], columns are principal components, largest variance first
    between_root: Matrix
    between_sd: Matrix
    within_root: Matrix
    within_sd: Matrix
    identities: int  # real identities it was fitted to
    faces: int  # real faces it was fitted to

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def centres(self, rng: np.random.Generator, count: int) -> Matrix:
        """``count`` identity centres, in PCA coordinates (offsets from the mean)."""
        return self._draw(rng, count, self.between_root, self.between_sd)

    def faces_of(self, rng: np.random.Generator, centres: Matrix) -> Matrix:
        """One face per row of ``centres``: unit vectors in descriptor coordinates."""
        pca = centres + self._draw(rng, len(centres), self.within_root, self.within_sd)
        return _unit(self.mean + pca @ self.basis.T)

    def _draw(self, rng: np.random.Generator, count: int, root: Matrix, sd: Matrix) -> Matrix:
        k = root.shape[0]
        z = rng.standard_normal((count, self.dim), dtype=np.float32)
        z[:, :k] = z[:, :k] @ root.T
        z[:, k:] *= sd
        return z


def fit_model(vectors: Matrix, labels: npt.NDArray[np.int64], pca_dims: int = 0) -> FaceModel:
    """The model of :class:`FaceModel` fitted to real unit descriptors of people with 2+ faces.

    ``pca_dims`` (0: automatic) is how many top components get full covariances; the rest
    get their diagonal. Automatic is at most 64 and a quarter of the identities, since the
    between-identity covariance is estimated from one mean per identity.
    """
    x = vectors.astype(np.float64)
    names, counts = np.unique(labels, return_counts=True)
    multi = np.isin(labels, names[counts >= 2])
    x, labels = x[multi], labels[multi]
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(names) < 8:
        raise SystemExit(f"need real faces of 8+ people with 2+ faces each, got {len(names)}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    y = (x - mean) @ vt.T  # PCA coordinates
    sums = np.zeros((len(names), y.shape[1]))
    np.add.at(sums, inverse, y)
    means = sums / counts[:, None]
    resid = y - means[inverse]
    within = resid.T @ resid / (len(y) - len(names))
    # The covariance of means of n_i faces is the between covariance plus within / n_i.
    between = np.cov(means, rowvar=False) - np.mean(1.0 / counts) * within
    k = pca_dims or max(1, min(64, len(names) // 4))
    k = min(k, y.shape[1])
    return FaceModel(
        mean=mean.astype(np.float32),
        basis=vt.T.astype(np.float32),
        between_root=_psd_root(between[:k, :k]),
        between_sd=np.sqrt(np.clip(np.diag(between)[k:], 0.0, None)).astype(np.float32),
        within_root=_psd_root(within[:k, :k]),
        within_sd=np.sqrt(np.clip(np.diag(within)[k:], 0.0, None)).astype(np.float32),
        identities=len(names),
        faces=len(y),
    )


def _psd_root(cov: npt.NDArray[np.float64]) -> Matrix:
    # Sampling noise can make a difference of covariances slightly indefinite: clip at zero.
    values, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return (vecs * np.sqrt(np.clip(values, 0.0, None))).astype(np.float32)


def _unit(x: Matrix) -> Matrix:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -- synthetic galleries and queries ------------------------------------------------------------


class Synthesiser:
    """Galleries and queries of ``dim``-d faces drawn from ``model``.

    Identities have ``faces_per_identity`` (inclusive range) faces each, stored consecutively.
    For ``dim`` above the model's, each face is mapped by a fixed random orthogonal map and
    ``EMBED_NOISE`` of its energy is replaced by isotropic noise (see :attr:`dim_note`).
    """

    def __init__(
        self,
        model: FaceModel,
        dim: int,
        seed: int,
        faces_per_identity: tuple[int, int] = (4, 8),
    ) -> None:
        if dim < model.dim:
            raise SystemExit(f"--dim {dim} is below the {model.dim}-d model's dimension")
        self.model = model
        self.dim = dim
        self.seed = seed
        self.faces_per_identity = faces_per_identity
        self._lift: Matrix | None = None
        if dim > model.dim:
            gauss = np.random.default_rng([seed, dim, 7]).standard_normal((dim, model.dim))
            self._lift = np.linalg.qr(gauss)[0].astype(np.float32)  # orthonormal columns

    @property
    def key(self) -> str:
        """Names this synthesiser's gallery: the same key, the same rows."""
        fitted = hashlib.sha256(self.model.mean.tobytes() + self.model.basis.tobytes())
        low, high = self.faces_per_identity
        return f"d{self.dim}-s{self.seed}-f{low}to{high}-m{fitted.hexdigest()[:12]}"

    @property
    def dim_note(self) -> str | None:
        """How the vectors relate to real descriptors, where they are not of the model's size."""
        if self._lift is None:
            return None
        return (
            f"no {self.dim}-d face model fitted: the {self.model.dim}-d model mapped into "
            f"{self.dim}-d by a fixed random orthogonal map, with {EMBED_NOISE:.0%} of each "
            "face's energy as isotropic noise"
        )

    def gallery_chunk(self, chunk: int) -> Matrix:
        """Faces ``chunk * CHUNK`` to ``(chunk + 1) * CHUNK`` of the endless gallery."""
        sizes, centres = self._layout(chunk)
        rng = np.random.default_rng([self.seed, chunk, 1])
        faces = self.model.faces_of(rng, np.repeat(centres, sizes, axis=0))
        return self._lifted(faces, np.random.default_rng([self.seed, chunk, 2]))

    def gallery_chunks(self, n: int) -> Iterator[tuple[int, Matrix]]:
        """``(first_row, vectors)`` covering rows ``0..n`` of the gallery, in order."""
        for chunk in range(-(-n // CHUNK)):
            start = chunk * CHUNK
            yield start, self.gallery_chunk(chunk)[: n - start]

    def queries(self, count: int, n: int, tag: int) -> tuple[Matrix, npt.NDArray[np.bool_]]:
        """``count`` query faces and whether each is of an identity enrolled in the first ``n``
        gallery rows: the first half are new faces of enrolled identities (an identity picked
        by a uniformly drawn gallery row), the rest faces of identities never enrolled.
        Different ``tag`` values give independent query sets."""
        rng = np.random.default_rng([self.seed, 1 << 30, tag])
        enrolled = count // 2
        rows = np.sort(rng.integers(0, n, size=enrolled))
        centres = np.empty((count, self.model.dim), dtype=np.float32)
        for chunk in np.unique(rows // CHUNK):
            sizes, chunk_centres = self._layout(int(chunk))
            here = rows // CHUNK == chunk
            owner = np.searchsorted(np.cumsum(sizes), rows[here] % CHUNK, side="right")
            centres[np.flatnonzero(here)] = chunk_centres[owner]
        centres[enrolled:] = self.model.centres(rng, count - enrolled)
        faces = self._lifted(self.model.faces_of(rng, centres), rng)
        return faces, np.arange(count) < enrolled

    def mates(self, count: int, n: int, tag: int) -> list[npt.NDArray[np.int64]]:
        """For each of the ``count`` queries of :meth:`queries` (same ``n`` and ``tag``), the
        gallery rows of its identity among the first ``n``: none for the unenrolled half."""
        rng = np.random.default_rng([self.seed, 1 << 30, tag])
        enrolled = count // 2
        rows = np.sort(rng.integers(0, n, size=enrolled))  # the draw queries() makes first
        found: list[npt.NDArray[np.int64]] = []
        for row in rows:
            chunk = int(row) // CHUNK
            ends = np.cumsum(self._layout(chunk)[0])
            owner = int(np.searchsorted(ends, int(row) % CHUNK, side="right"))
            start = chunk * CHUNK + (int(ends[owner - 1]) if owner else 0)
            stop = min(chunk * CHUNK + int(ends[owner]), n)
            found.append(np.arange(start, stop, dtype=np.int64))
        return found + [np.zeros(0, dtype=np.int64)] * (count - enrolled)

    def labelled_sample(self, identities: int, per_identity: int, tag: int) -> Matrix:
        """``per_identity`` faces of each of ``identities`` fresh identities, consecutively."""
        rng = np.random.default_rng([self.seed, 1 << 31, tag])
        centres = np.repeat(self.model.centres(rng, identities), per_identity, axis=0)
        return self._lifted(self.model.faces_of(rng, centres), rng)

    def _layout(self, chunk: int) -> tuple[npt.NDArray[np.int64], Matrix]:
        # Sizes and centres come from their own stream so queries can replay them cheaply.
        rng = np.random.default_rng([self.seed, chunk, 0])
        low, high = self.faces_per_identity
        sizes = rng.integers(low, high + 1, size=CHUNK // low + 1)
        ends = np.cumsum(sizes)
        count = int(np.searchsorted(ends, CHUNK)) + 1  # identities covering CHUNK faces
        sizes = sizes[:count]
        sizes[-1] -= int(ends[count - 1]) - CHUNK
        return sizes, self.model.centres(rng, count)

    def _lifted(self, faces: Matrix, rng: np.random.Generator) -> Matrix:
        if self._lift is None:
            return np.ascontiguousarray(faces, dtype=np.float32)
        noise = rng.standard_normal((len(faces), self.dim), dtype=np.float32)
        mapped = np.sqrt(1 - EMBED_NOISE) * (faces @ self._lift.T)
        return np.ascontiguousarray(_unit(mapped + np.sqrt(EMBED_NOISE / self.dim) * noise))


def impostor_edges(vectors: Matrix, labels: npt.NDArray[np.int64]) -> dict[str, float]:
    """Similarities that impostor pairs (different labels) exceed at FMR 1e-2 and 1e-3, and
    the median similarity of genuine pairs."""
    sims = vectors @ vectors.T
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    impostor, genuine = sims[upper & ~same], sims[upper & same]
    return {
        "fmr_1e-2": float(np.quantile(impostor, 1 - 1e-2)),
        "fmr_1e-3": float(np.quantile(impostor, 1 - 1e-3)),
        "genuine_median": float(np.median(genuine)) if genuine.size else float("nan"),
    }


def check_model(
    synth: Synthesiser, real: Matrix, real_labels: npt.NDArray[np.int64]
) -> dict[str, float]:
    """Impostor edges of synthetic faces next to those of the real ones, logged to stderr;
    returns the synthetic edges (a report, not a test: nothing is asserted)."""
    per = 4
    fake = synth.labelled_sample(1000, per, tag=0)
    fake_edges = impostor_edges(fake, np.repeat(np.arange(1000), per))
    if synth.dim == real.shape[1]:
        real_edges = impostor_edges(real, real_labels)
        log(
            "model check ({}-d): impostor sim at FMR 1e-2 real {:.4f} synthetic {:.4f}; "
            "FMR 1e-3 real {:.4f} synthetic {:.4f}; genuine median real {:.4f} synthetic "
            "{:.4f}".format(
                synth.dim,
                real_edges["fmr_1e-2"],
                fake_edges["fmr_1e-2"],
                real_edges["fmr_1e-3"],
                fake_edges["fmr_1e-3"],
                real_edges["genuine_median"],
                fake_edges["genuine_median"],
            )
        )
    else:
        log(
            "model check ({}-d): synthetic impostor sim at FMR 1e-2 {:.4f}, FMR 1e-3 {:.4f}; "
            "genuine median {:.4f}".format(
                synth.dim,
                fake_edges["fmr_1e-2"],
                fake_edges["fmr_1e-3"],
                fake_edges["genuine_median"],
            )
        )
    return fake_edges
