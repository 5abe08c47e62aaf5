"""FaissIndex's IVF layout on 512-d faces: projected onto at most 128 principal components so
that a face takes at most 64 bytes in RAM, while every similarity it returns stays exact (the
short list is re-ranked from the float vectors in the vector file)."""

from __future__ import annotations

import copy
from pathlib import Path

import faiss
import numpy as np
import pytest

from countenance.errors import BackendError
from countenance.index.exact import ExactIndex
from countenance.index.faiss import FaissIndex
from countenance.index.faiss_layouts import IvfPqLayout, rabitq_code_bytes
from countenance.index.vectorfile import VectorFile
from countenance.types import EmbeddingSpace

WIDE = EmbeddingSpace("synthetic", "1", 512)
NARROW = EmbeddingSpace("synthetic", "1", 128)
PEOPLE, PHOTOS = 750, 4  # 3,000 faces: 64 lists, a sample large enough to fit a projection


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def faces(dim: int = 512, directions: int = 300, people: int = PEOPLE, seed: int = 0) -> np.ndarray:
    """``PHOTOS`` unit vectors of each of ``people``, consecutive: centres whose variance lives
    in ``directions`` directions of falling spread, photos near them, and a common offset, as
    face models' descriptors have."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    spread = np.linspace(1.0, 0.3, directions)
    centres = rng.standard_normal((people, directions)) * spread
    photos = np.repeat(centres, PHOTOS, axis=0)
    photos += 0.3 * rng.standard_normal(photos.shape) * spread
    return unit(photos @ basis[:, :directions].T + 4.0 * basis[:, -1])


VECTORS = faces()
# Sparse, non-zero ids, so that an index confusing row numbers with ids fails.
IDS = (5 + 3 * np.arange(len(VECTORS))).astype(np.int64)


def wide_ivf(directory: Path | None = None) -> FaissIndex:
    index = FaissIndex(WIDE, directory, layout="ivfpq")
    index.add(IDS, VECTORS)
    return index


def layout_of(index: FaissIndex) -> IvfPqLayout:
    layout = index._layout
    assert isinstance(layout, IvfPqLayout)
    return layout


def assert_own_face_first_and_exact(index: FaissIndex, rows: np.ndarray) -> None:
    sims, found = index.search(VECTORS[rows], k=10)
    np.testing.assert_array_equal(found[:, 0], IDS[rows])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    row_of = {int(i): r for r, i in enumerate(IDS)}
    for query, hit_ids, hit_sims in zip(VECTORS[rows], found, sims, strict=True):
        exact = VECTORS[[row_of[int(i)] for i in hit_ids]] @ query
        np.testing.assert_allclose(hit_sims, exact, atol=1e-5)  # re-ranked by floats


def test_the_codes_keep_at_most_128_components_so_a_face_fits_64_bytes() -> None:
    assert IvfPqLayout.max_components() == 128
    assert rabitq_code_bytes(128) + 8 <= IvfPqLayout.FACE_BYTES < rabitq_code_bytes(192) + 8
    assert IvfPqLayout.code_dim(128) == 128 and IvfPqLayout.code_dim(512) == 128


def test_components_are_the_fewest_steps_of_64_holding_97_percent_at_most_128() -> None:
    # variance in 40 directions: 64 components hold it
    assert IvfPqLayout.components(faces(directions=40)) == 64
    # spread over 300 directions: 97% needs ~260, more than a 64-byte face holds
    assert IvfPqLayout.components(VECTORS) == 128
    # too few faces to measure 512 variances: as many as fit
    assert IvfPqLayout.components(VECTORS[:1000]) == 128
    # 128-d faces are coded whole, as before the projection
    assert IvfPqLayout.components(faces(dim=128, directions=40)) == 128


def test_a_512d_ivf_gallery_keeps_at_most_64_bytes_a_face_in_ram() -> None:
    index = wide_ivf()
    layout = layout_of(index)
    assert index.kind == "ivf64,pca128,rabitq2fs"
    assert isinstance(layout.index, faiss.IndexPreTransform)
    assert layout.ivf.d == 128 and layout.ivf.metric_type == faiss.METRIC_L2
    assert layout.face_bytes() == rabitq_code_bytes(128) + 8 == 60
    # what the layout accounts for beside its faces: 64 centroids and the projection (its
    # matrix and bias, the mean, the eigenvalues; not every eigenvector, which training used)
    fixed = 64 * 128 * 4 + 4 * (128 * 512 + 128 + 512 + 512)
    assert index.ram_bytes() == index.count() * layout.face_bytes() + fixed
    assert (index.ram_bytes() - fixed) / index.count() <= 64


def test_a_512d_ivf_gallery_finds_each_face_first_with_exact_similarities() -> None:
    index = wide_ivf()
    assert_own_face_first_and_exact(index, np.arange(0, len(IDS), 7))


def test_a_512d_ivf_gallery_finds_new_photos_neighbours_as_exact_search_does() -> None:
    index = wide_ivf()
    exact = ExactIndex(WIDE)
    exact.add(IDS, VECTORS)
    rng = np.random.default_rng(9)
    # new photos of enrolled people: a gallery face moved as far as another photo would be
    queries = unit(VECTORS[::15] + 0.02 * rng.standard_normal(VECTORS[::15].shape))
    _, found = index.search(queries, k=10)
    _, truth = exact.search(queries, k=10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_a_512d_ivf_gallery_survives_removal_and_a_round_trip(tmp_path: Path) -> None:
    index = wide_ivf(tmp_path)
    gone = IDS[:40]
    assert index.remove(gone) == 40
    _, found = index.search(VECTORS[:40], k=10)
    assert not np.isin(found, gone).any()  # removal is seen by the very next search
    row = WIDE.dim * 4
    raw = index.vectors_path.read_bytes()
    assert raw[int(gone[0]) * row : (int(gone[0]) + 1) * row] == bytes(row)  # erased: gone
    index.save()

    again = FaissIndex(WIDE, tmp_path)
    assert again.kind == index.kind == "ivf64,pca128,rabitq2fs"
    assert (again.nprobe, layout_of(again).rerank) == (index.nprobe, layout_of(index).rerank)
    assert again.count() == len(IDS) - 40 and not np.isin(again.ids(), gone).any()
    queries = VECTORS[40::25]
    for a, b in zip(index.search(queries, k=10), again.search(queries, k=10), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_own_face_first_and_exact(again, np.arange(40, len(IDS), 11))
    again.add(gone[:1], VECTORS[:1])  # and it takes new faces after loading
    _, found = again.search(VECTORS[:1], k=1)
    assert found[0, 0] == gone[0]


def test_a_copy_of_a_512d_ivf_gallery_is_independent() -> None:
    index = wide_ivf()
    clone = copy.deepcopy(index)
    clone.remove(IDS[:10])
    assert clone.kind == index.kind and index.count() == len(IDS)
    assert clone.count() == len(IDS) - 10
    assert_own_face_first_and_exact(index, np.arange(10))


def test_a_512d_ivf_file_written_without_the_projection_still_opens_and_searches(
    tmp_path: Path,
) -> None:
    # What the IVF layout wrote for 512-d faces before it projected them: 148-byte codes.
    old = faiss.IndexIVFRaBitQFastScan(
        faiss.IndexFlatIP(WIDE.dim), WIDE.dim, 16, faiss.METRIC_INNER_PRODUCT, 32, True, 2
    )
    old.train(VECTORS)
    old.add_with_ids(VECTORS, IDS)
    old.nprobe = 16
    faiss.write_index(old, str(tmp_path / f"{WIDE.key}.faiss"))
    vectors = VectorFile(tmp_path / f"{WIDE.key}.vectors", WIDE.dim)
    vectors.write(IDS, VECTORS)
    vectors.flush()
    reopened = FaissIndex(WIDE, tmp_path)
    assert reopened.layout == "ivfpq" and reopened.kind == "ivf16,rabitq2fs"
    assert layout_of(reopened).face_bytes() == rabitq_code_bytes(512) + 8
    assert_own_face_first_and_exact(reopened, np.arange(0, len(IDS), 50))


def test_128d_ivf_codes_stay_unprojected() -> None:
    vectors = faces(dim=128, directions=40)
    index = FaissIndex(NARROW, layout="ivfpq")
    index.add(IDS, vectors)
    layout = layout_of(index)
    assert index.kind == "ivf64,rabitq2fs"
    assert layout.index is layout.ivf and not isinstance(layout.index, faiss.IndexPreTransform)
    assert layout.ivf.metric_type == faiss.METRIC_INNER_PRODUCT
    assert layout.face_bytes() == 60
    sims, found = index.search(vectors[::50], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[::50])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


def test_a_file_projected_some_other_way_is_not_taken_for_ours(tmp_path: Path) -> None:
    index = wide_ivf(tmp_path)
    index.save()
    # the same lists behind a rotation this layout never writes
    foreign = faiss.IndexPreTransform(faiss.OPQMatrix(512, 16, 128), layout_of(index).ivf)
    faiss.write_index(foreign, str(index.path))
    with pytest.raises(BackendError, match="not one of ours"):
        FaissIndex(WIDE, tmp_path)
