"""The VectorIndex contract, run against every backend, plus congruence between backends.

``faiss-hnsw`` and ``faiss-ivfpq`` are FaissIndex with its layout forced, so the same suite
drives its HNSW graph (tombstones) and its IVF codes (re-ranked from the vector file).
``milvus`` is MilvusIndex on Milvus Lite: one embedded server per module, and a fresh
collection for each index a test asks for (a collection cannot be deep-copied like the others,
but loading the 2000 vectors into a new one takes well under a second). ``milvus-server-hnsw``
and ``milvus-server-ivf`` are MilvusIndex on a real Milvus server (conftest.py starts one per
session, marked ``milvus_server``), with a fresh collection per index too, dropped after the
test; a loaded one is sealed and indexed (``wait_indexed``) before the test searches it, so
that searches go through the HNSW graph or the IVF lists, not brute force. The data are
synthetic unit vectors in clusters ("people" with several photos each), so nearest neighbours
are meaningful and seeded, hence the same on every run.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from countenance.errors import BackendError, InvalidArgument, SpaceMismatch
from countenance.index import open_index
from countenance.ports import Persistent, VectorIndex
from countenance.types import EmbeddingSpace

SPACE = EmbeddingSpace("synthetic", "1", 32)
PEOPLE, PHOTOS = 100, 20  # 2000 vectors
PERSISTENT = {
    "faiss",
    "faiss-hnsw",
    "faiss-ivfpq",
    "milvus",
    "milvus-server-hnsw",
    "milvus-server-ivf",
}  # the backends that keep themselves on disk
# MilvusIndex's options on a real server, by backend name. IVF's lists are sized by its rule
# (4·sqrt(rows of a segment)) for the 2000 vectors here rather than for a full segment, so that
# a search probes 16 lists of 179 and skips the rest.
SERVER_INDEX: dict[str, dict[str, object]] = {
    "milvus-server-hnsw": {"index_type": "HNSW"},
    "milvus-server-ivf": {"index_type": "IVF_FLAT", "nlist": round(4 * np.sqrt(PEOPLE * PHOTOS))},
}
# The optional packages of a backend (conftest.py checks the server's own).
REQUIRES = {"milvus": ("pymilvus", "milvus_lite"), **{name: ("pymilvus",) for name in SERVER_INDEX}}

Factory = Callable[[], VectorIndex]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(seed: int = 0, people: int = PEOPLE, photos: int = PHOTOS) -> np.ndarray:
    """Unit vectors, ``photos`` noisy ones around each of ``people`` random centres."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((people, SPACE.dim)))
    noise = rng.standard_normal((people, photos, SPACE.dim)) * 0.5 / np.sqrt(SPACE.dim)
    return unit((centres[:, None, :] + noise).reshape(-1, SPACE.dim))


VECTORS = clustered()
# Sparse, non-zero ids, so that a backend confusing row numbers with ids fails.
IDS = (1000 + 7 * np.arange(len(VECTORS))).astype(np.int64)


def build(backend: str, tmp: Path | None = None) -> VectorIndex:
    if backend.startswith("faiss-"):
        return open_index("faiss", SPACE, tmp, layout=backend.removeprefix("faiss-"))
    return open_index(backend, SPACE, tmp)


# Photos arrive in no order of person, as from a real collection of sources.
ORDER = np.random.default_rng(3).permutation(len(IDS))


def load(index: VectorIndex, batch: int = 500) -> VectorIndex:
    # Batches: faiss-ivfpq trains at the second one (IVF needs 1000 vectors), retrains
    # with more lists at the fourth, and takes the third as plain adds.
    for start in range(0, len(IDS), batch):
        rows = ORDER[start : start + batch]
        index.add(IDS[rows], VECTORS[rows])
    return index


def need_backend(backend: str) -> None:
    """Skip a backend whose optional packages are missing; under CI a missing one fails."""
    packages = REQUIRES.get(backend, ())
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing and os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
        pytest.skip(f"{', '.join(missing)} not installed: pip install 'countenance[milvus]'")


@pytest.fixture(
    scope="module",
    params=[
        "exact",
        "faiss",
        "faiss-hnsw",
        "faiss-ivfpq",
        "milvus",
        *(pytest.param(name, marks=pytest.mark.milvus_server) for name in SERVER_INDEX),
    ],
)
def backend(request: pytest.FixtureRequest) -> str:
    need_backend(str(request.param))
    return str(request.param)


@pytest.fixture(scope="module")
def milvus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite folder per module: its embedded server starts once."""
    return tmp_path_factory.mktemp("milvus")


_collections = itertools.count()


@pytest.fixture
def make(backend: str, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """A factory of empty indexes of one backend."""
    if not backend.startswith("milvus"):
        yield lambda: build(backend)
        return
    if backend == "milvus":
        where = {"directory": request.getfixturevalue("milvus_dir")}
    else:
        uri = request.getfixturevalue("milvus_server")
        where = {"directory": None, "uri": uri, **SERVER_INDEX[backend]}
    made: list[VectorIndex] = []

    def fresh() -> VectorIndex:
        made.append(open_index("milvus", SPACE, **where, collection=f"c{next(_collections)}"))
        return made[-1]

    yield fresh
    for index in made:
        # A server keeps what the test left; Milvus Lite's folder goes with the module.
        index.close() if backend == "milvus" else index.drop()  # type: ignore[attr-defined]


@functools.cache
def _loaded(backend: str) -> VectorIndex:
    index = load(build(backend))
    expected = {"exact": "exact", "faiss": "flat", "faiss-hnsw": "hnsw", "faiss-ivfpq": "ivf"}
    expected = expected[backend]
    assert index.kind.startswith(expected)
    return index


def loaded_copy(backend: str) -> VectorIndex:
    """The whole data set in one backend; a copy, since building IVF takes a while."""
    return copy.deepcopy(_loaded(backend))


def indexed(index: VectorIndex) -> VectorIndex:
    """``index`` on a Milvus server, sealed and searched through its approximate index."""
    assert index.wait_indexed() == index.count() == len(IDS)  # type: ignore[attr-defined]
    assert index.kind in {"milvus,hnsw", "milvus,ivf_flat"}
    return index


@pytest.fixture
def loaded(backend: str, make: Factory) -> VectorIndex:
    if backend == "milvus":
        return load(make())
    if backend in SERVER_INDEX:
        return indexed(load(make()))
    return loaded_copy(backend)


def test_is_a_vector_index(backend: str, make: Factory) -> None:
    index = make()
    assert isinstance(index, VectorIndex)
    assert index.space == SPACE
    assert isinstance(index, Persistent) == (backend in PERSISTENT)


def test_search_finds_each_vector_itself_first(loaded: VectorIndex) -> None:
    rows = np.arange(0, len(IDS), 37)
    sims, ids = loaded.search(VECTORS[rows], k=5)
    assert sims.shape == ids.shape == (len(rows), 5)
    assert sims.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, 0], IDS[rows])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6), "results must be best first"
    assert np.all(ids >= 0)


def test_count_and_ids_agree_with_what_was_added(make: Factory) -> None:
    index = make()
    assert index.count() == 0 and len(index.ids()) == 0
    load(index)
    assert index.count() == len(IDS)
    held = index.ids()
    assert held.dtype == np.int64
    np.testing.assert_array_equal(np.sort(held), np.sort(IDS))


def test_remove_hides_ids_from_every_later_search(loaded: VectorIndex) -> None:
    rows = np.arange(5, len(IDS), 97)
    gone = IDS[rows]
    assert loaded.remove(gone) == len(gone)
    assert loaded.count() == len(IDS) - len(gone)
    assert not np.isin(gone, loaded.ids()).any()
    _, ids = loaded.search(VECTORS[rows], k=loaded.count())
    assert not np.isin(gone, ids).any()
    # Their neighbours are still found: the same person's other photos come first.
    person = rows // PHOTOS
    np.testing.assert_array_equal(np.searchsorted(IDS, ids[:, 0]) // PHOTOS, person)


def test_remove_unknown_or_twice_returns_zero(loaded: VectorIndex) -> None:
    assert loaded.remove(np.array([5, 999_999_999], dtype=np.int64)) == 0
    assert loaded.remove(np.array([], dtype=np.int64)) == 0
    assert loaded.remove(IDS[:3]) == 3
    assert loaded.remove(IDS[:4]) == 1
    assert loaded.count() == len(IDS) - 4


def test_readding_an_id_replaces_its_vector(loaded: VectorIndex) -> None:
    target, old = IDS[10], VECTORS[10:11]
    new = VECTORS[len(IDS) - 1 : len(IDS)]  # another person's photo
    loaded.add(np.array([target]), new)
    assert loaded.count() == len(IDS)
    assert np.sum(loaded.ids() == target) == 1
    sims, ids = loaded.search(new, k=2)
    assert set(ids[0]) == {target, IDS[-1]}
    np.testing.assert_allclose(sims[0], 1.0, atol=1e-5)
    sims, ids = loaded.search(old, k=loaded.count())
    # IVF need not reach every vector; where the target is found, it is by its new vector.
    assert not np.any((ids[0] == target) & (sims[0] > 0.9)), "the old vector must be gone"
    assert ids[0, 0] != target


def test_k_larger_than_count_pads_with_empty_slots(make: Factory) -> None:
    index = make()
    index.add(IDS[:3], VECTORS[:3])
    sims, ids = index.search(VECTORS[:2], k=10)
    assert ids.shape == sims.shape == (2, 10)
    assert {int(i) for i in ids[0, :3]} == set(IDS[:3].tolist())
    assert np.all(ids[:, 3:] == -1)
    assert np.all(np.isneginf(sims[:, 3:]))
    assert np.all(np.isfinite(sims[:, :3]))


def test_empty_index_returns_empty_slots(make: Factory) -> None:
    sims, ids = make().search(VECTORS[:2], k=5)
    assert ids.shape == sims.shape == (2, 5)
    assert np.all(ids == -1) and np.all(np.isneginf(sims))


def test_index_emptied_by_remove_returns_empty_slots(loaded: VectorIndex) -> None:
    assert loaded.remove(IDS) == len(IDS)
    sims, ids = loaded.search(VECTORS[:2], k=3)
    assert loaded.count() == 0 and np.all(ids == -1) and np.all(np.isneginf(sims))


def test_wrong_dimension_raises_space_mismatch(make: Factory) -> None:
    index = make()
    wider = np.ones((2, SPACE.dim + 1), dtype=np.float32)
    with pytest.raises(SpaceMismatch):
        index.add(IDS[:2], wider)
    index.add(IDS[:2], VECTORS[:2])
    with pytest.raises(SpaceMismatch):
        index.search(VECTORS[:1, :-1], k=1)
    assert index.count() == 2


@pytest.mark.parametrize(
    ("ids", "vectors"),
    [
        (IDS[:3], VECTORS[:2]),  # lengths differ
        (np.array([4, 4]), VECTORS[:2]),  # duplicate ids in one add
        (np.array([-1, 4]), VECTORS[:2]),  # -1 marks an empty slot
        (np.array([1.5, 2.5]), VECTORS[:2]),  # not integers
        (IDS[:1], VECTORS[0]),  # 1-D vector
        (IDS[:2], np.full((2, SPACE.dim), np.nan, dtype=np.float32)),
    ],
)
def test_bad_add_raises_invalid_argument(make: Factory, ids: object, vectors: object) -> None:
    index = make()
    with pytest.raises(InvalidArgument):
        index.add(ids, vectors)  # type: ignore[arg-type]
    assert index.count() == 0


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_raises_invalid_argument(make: Factory, k: int) -> None:
    with pytest.raises(InvalidArgument):
        make().search(VECTORS[:1], k=k)


def test_ids_lists_more_than_one_reply(make: Factory) -> None:
    # Milvus answers a query with 16,384 rows at most, so ids() pages through the collection.
    n = 2 * 16_384 + 5
    index = make()
    ids = np.arange(3, 3 + 2 * n, 2, dtype=np.int64)
    vectors = np.resize(VECTORS, (n, SPACE.dim))
    for start in range(0, n, 10_000):
        index.add(ids[start : start + 10_000], vectors[start : start + 10_000])
    held = index.ids()
    assert len(held) == index.count() == n
    np.testing.assert_array_equal(np.sort(held), ids)


def test_queries_of_other_dtypes_are_accepted(make: Factory) -> None:
    index = make()
    index.add(IDS[:5], VECTORS[:5])
    _, ids = index.search(np.asfortranarray(VECTORS[:5].astype(np.float64)), k=1)
    np.testing.assert_array_equal(ids[:, 0], IDS[:5])


# -- congruence ------------------------------------------------------------------------------


def known_probes() -> np.ndarray:
    """New photos of the indexed people: each person's cloud of photos, sampled again."""
    rng = np.random.default_rng(2)
    people = VECTORS.reshape(PEOPLE, PHOTOS, -1).mean(axis=1)
    noise = rng.standard_normal((PEOPLE, SPACE.dim)) * 0.5 / np.sqrt(SPACE.dim)
    return unit(people + noise)


STRANGERS = clustered(seed=1, people=PEOPLE, photos=1)  # people the gallery does not hold


def test_faiss_flat_top10_equals_exact() -> None:
    exact, flat = loaded_copy("exact"), loaded_copy("faiss")
    assert flat.kind == "flat"
    queries = np.concatenate([known_probes(), STRANGERS])
    exact_sims, exact_ids = exact.search(queries, k=10)
    flat_sims, flat_ids = flat.search(queries, k=10)
    np.testing.assert_array_equal(flat_ids, exact_ids)
    np.testing.assert_allclose(flat_sims, exact_sims, atol=1e-5)


@pytest.mark.parametrize("layout", ["hnsw", "ivfpq"])
def test_faiss_approximate_recall_at_10_against_exact(layout: str) -> None:
    exact, approx = loaded_copy("exact"), loaded_copy(f"faiss-{layout}")
    assert approx.kind.startswith(layout[:3])
    # Similarities are exact cosines, IVF's included (re-ranked from the float vectors).
    assert_recall_at_10_against_exact(exact, approx)


def assert_recall_at_10_against_exact(exact: VectorIndex, approx: VectorIndex) -> None:
    """Recall@10 of ``approx`` against ``exact`` is at least 0.95, and every neighbour it finds
    where exact search does carries the exact similarity."""
    # Probes of people the gallery holds: for strangers the "neighbours" are arbitrary weak
    # matches that the index is not tuned for, and that no threshold would pass.
    queries = known_probes()
    exact_sims, truth = exact.search(queries, k=10)
    sims, found = approx.search(queries, k=10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.95
    same = found == truth
    np.testing.assert_allclose(sims[same], exact_sims[same], atol=1e-5)


@pytest.mark.milvus_server
@pytest.mark.parametrize("backend", list(SERVER_INDEX), indirect=True)
def test_milvus_server_recall_at_10_against_exact(backend: str, make: Factory) -> None:
    exact, approx = loaded_copy("exact"), indexed(load(make()))
    # Milvus gives exact inner products for what it finds, HNSW's and IVF_FLAT's alike.
    assert_recall_at_10_against_exact(exact, approx)


@pytest.mark.milvus_server
def test_milvus_server_collection_reopened_keeps_its_data_and_index(milvus_server: str) -> None:
    options = {"uri": milvus_server, "collection": f"c{next(_collections)}"}
    first = open_index("milvus", SPACE, **options, **SERVER_INDEX["milvus-server-ivf"])
    try:
        load(first)
        first.close()  # type: ignore[attr-defined]
        # Asked for HNSW, it searches with the IVF lists the collection was made with.
        again = open_index("milvus", SPACE, **options, index_type="HNSW")
        assert again.kind == "milvus,ivf_flat" and again.count() == len(IDS)
        _, ids = again.search(VECTORS[:50], k=1)
        np.testing.assert_array_equal(ids[:, 0], IDS[:50])
    finally:
        open_index("milvus", SPACE, **options).drop()  # type: ignore[attr-defined]


# -- Milvus servers that cannot be reached ---------------------------------------------------


def test_milvus_server_that_is_down_is_named_in_the_error() -> None:
    need_backend("milvus-server-hnsw")
    with socket.socket() as probe:  # a port of this machine that nothing listens on
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(BackendError, match=f"cannot reach Milvus at {uri}"):
        open_index("milvus", SPACE, uri=uri)


def test_milvus_server_that_never_answers_times_out() -> None:
    need_backend("milvus-server-hnsw")
    with socket.socket() as silent:  # accepts connections, and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        threading.Thread(target=silent.accept, daemon=True).start()
        start = time.monotonic()
        with pytest.raises(BackendError, match=f"cannot reach Milvus at {uri}"):
            open_index("milvus", SPACE, uri=uri, timeout=1.0)
        assert time.monotonic() - start < 5
