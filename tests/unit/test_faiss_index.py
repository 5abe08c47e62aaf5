"""FaissIndex beyond the shared contract: its layouts and their tuning, removal, persistence,
the registry."""

from __future__ import annotations

import copy
import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from countenance.errors import BackendError, BackendUnavailable, InvalidArgument, SpaceMismatch
from countenance.index import INDEXES, faiss_layouts, open_index
from countenance.index.calibration import Calibration, Gallery
from countenance.index.exact import ExactIndex
from countenance.index.faiss import FaissIndex, choose_layout, choose_nlist
from countenance.index.vectorfile import VectorFile
from countenance.ports import Persistent, VectorIndex
from countenance.types import EmbeddingSpace

SPACE = EmbeddingSpace("synthetic", "1", 16)
THRESHOLD = 500


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in clusters of 10, shuffled, with sparse ids."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n // 10 + 1, SPACE.dim)))
    noise = rng.standard_normal((n, SPACE.dim)) * 0.5 / np.sqrt(SPACE.dim)
    vectors = unit(centres[rng.integers(0, len(centres), n)] + noise)
    return (10 + 3 * np.arange(n)).astype(np.int64), vectors


IDS, VECTORS = data(1200)


def layout_index(
    layout: str, directory: Path | None = None, target_recall: float = 0.99
) -> FaissIndex:
    index = FaissIndex(SPACE, directory, layout=layout, target_recall=target_recall)
    index.add(IDS, VECTORS)
    return index


def ivf_index(directory: Path | None = None, target_recall: float = 0.99) -> FaissIndex:
    return layout_index("ivfpq", directory, target_recall)


def assert_same_results(a: FaissIndex, b: FaissIndex) -> None:
    np.testing.assert_array_equal(np.sort(a.ids()), np.sort(b.ids()))
    sims_a, ids_a = a.search(VECTORS[::50], k=10)
    sims_b, ids_b = b.search(VECTORS[::50], k=10)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(sims_a, sims_b)


# -- the layout follows the gallery ----------------------------------------------------------


def test_flat_then_hnsw_then_ivfpq_as_the_gallery_grows() -> None:
    index = FaissIndex(SPACE, approx_threshold=THRESHOLD, ivfpq_threshold=1100)
    index.add(IDS[:THRESHOLD], VECTORS[:THRESHOLD])
    assert (index.layout, index.kind, index.ef_search, index.nprobe) == ("flat", "flat", None, None)
    index.add(IDS[THRESHOLD : THRESHOLD + 1], VECTORS[THRESHOLD : THRESHOLD + 1])
    assert index.layout == "hnsw" and index.kind == "hnsw48,sq8" and index.ef_search is not None
    index.add(IDS[THRESHOLD + 1 : 1100], VECTORS[THRESHOLD + 1 : 1100])
    assert index.layout == "hnsw"
    index.add(IDS[1100:], VECTORS[1100:])
    assert index.layout == "ivfpq" and index.kind.startswith(
        f"ivf{choose_nlist(len(IDS))},rabitq2fs"
    )
    np.testing.assert_array_equal(np.sort(index.ids()), IDS)
    _, found = index.search(VECTORS[::25], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[::25])


@pytest.mark.parametrize(
    ("n", "dim", "memory_gb", "layout"),
    [
        (1_000, 128, 8.0, "flat"),
        (1_000_000, 128, 8.0, "hnsw"),
        (15_000_000, 128, 8.0, "hnsw"),  # ~7 GB: HNSW while it fits
        (20_000_000, 128, 8.0, "ivfpq"),  # ~9.5 GB would not
        (200_000_000, 128, 1000.0, "ivfpq"),  # past ivfpq_threshold whatever the budget
        (200_000, 128, 0.05, "ivfpq"),  # flat would take 110 MB, HNSW 95 MB: over 51 MiB
        (1_000_000, 512, 0.25, "ivfpq"),  # past the memory budget before the size threshold
    ],
)
def test_layout_is_chosen_by_size_and_memory_budget(
    n: int, dim: int, memory_gb: float, layout: str
) -> None:
    assert choose_layout(n, dim, memory_gb=memory_gb) == layout


def test_ivfpq_retrains_with_more_lists_as_the_gallery_grows_fourfold() -> None:
    index = FaissIndex(SPACE, layout="ivfpq")
    many_ids, many = data(4100, seed=5)
    index.add(many_ids[:1000], many[:1000])
    assert index.kind.startswith(f"ivf{choose_nlist(1000)},")
    index.add(many_ids[1000:], many[1000:])
    assert index.kind.startswith(f"ivf{choose_nlist(4100)},")
    assert choose_nlist(4100) >= 2 * choose_nlist(1000)
    np.testing.assert_array_equal(np.sort(index.ids()), many_ids)


@pytest.mark.parametrize(
    ("n", "nlist"),
    [(10, 1), (100, 2), (2_000, 32), (200_000, 1024), (1_000_000, 2048), (10**7, 8192)],
)
def test_nlist_is_about_2_sqrt_n_with_39_points_per_list(n: int, nlist: int) -> None:
    assert choose_nlist(n) == nlist
    assert nlist == 1 or n // nlist >= 39


@pytest.mark.parametrize("layout", ["hnsw", "ivfpq"])
def test_search_breadth_is_set_from_the_target_recall(layout: str) -> None:
    # Uniform 64-d vectors: no structure to help, so breadth is what buys recall.
    space = EmbeddingSpace("uniform", "1", 64)
    vectors = unit(np.random.default_rng(9).standard_normal((4000, space.dim)))
    ids = np.arange(4000, dtype=np.int64)
    built = {}
    for target in (0.99, 0.3):
        built[target] = FaissIndex(space, layout=layout, target_recall=target)
        built[target].add(ids, vectors)
    breadth = {"hnsw": lambda i: i.ef_search, "ivfpq": lambda i: i.nprobe}[layout]
    assert breadth(built[0.3]) < breadth(built[0.99])  # set from the target, not fixed
    # Measured on other queries than the tuning used (gallery vectors, own id left out).
    queries = vectors[3::40]
    exact = ExactIndex(space)
    exact.add(ids, vectors)
    _, truth = exact.search(queries, k=11)
    _, found = built[0.99].search(queries, k=11)
    recall = np.mean([len(set(t[1:]) & set(f[1:])) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.95


def test_calibration_takes_as_many_probes_as_the_layout_affords() -> None:
    ids, vectors = data(20_000, seed=4)
    gallery = Gallery(ids, vectors)
    default = Calibration(gallery)
    graph = Calibration(gallery, faiss_layouts.HnswLayout.CALIBRATION_QUERIES)
    assert len(default.queries) == 200
    # Both layouts afford 1,000: 200 decided IVF's short list at 10^7 faces by chance.
    assert faiss_layouts.IvfPqLayout.CALIBRATION_QUERIES == 1000
    assert len(graph.queries) == 1000 and len(graph.truth) == 1000
    held, _ = graph.held()
    assert set(graph.own.tolist()) <= set(held.tolist()) <= set(ids.tolist())
    assert len(np.unique(held)) == len(held)
    # Half the probes are strangers: their 8 nearest faces (probes aside) are held out too.
    others = ~np.isin(ids, graph.own)
    nearest = np.argsort(-(graph.queries[500:] @ vectors[others].T), axis=1)[:, :8]
    assert set(held[1000:].tolist()) == set(ids[others][nearest].ravel().tolist())
    # A small gallery gives what it can: room for each probe and a stranger's 8 hidden faces.
    small = Calibration(Gallery(ids[:900], vectors[:900]), 1000)
    assert len(small.queries) == 900 // 18


def test_calibration_can_leave_the_hidden_faces_to_the_layout() -> None:
    ids, vectors = data(4000, seed=5)
    calibration = Calibration(Gallery(ids, vectors), 100)
    probes, probe_vectors = calibration.held(hidden=False)
    np.testing.assert_array_equal(probes, calibration.own)
    np.testing.assert_array_equal(probe_vectors, calibration.queries)
    everything, _ = calibration.held()
    assert len(calibration.hidden_ids) and set(calibration.hidden_ids) <= set(everything.tolist())
    assert not set(calibration.hidden_ids.tolist()) & set(probes.tolist())


def test_graph_tuning_walks_past_the_hidden_faces_but_never_returns_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A stranger probe's hidden faces stay in the graph while it is tuned (the probes do
    # not), and the tuning's searches leave them out of their results.
    ids, vectors = data(4000, seed=6)
    seen: dict[str, object] = {}
    original = faiss_layouts.HnswLayout.tune

    def spy(layout: faiss_layouts.HnswLayout, calibration: Calibration, target: float) -> None:
        seen["held"] = set(layout.ids().tolist())
        seen["calibration"] = calibration
        found = []

        def recording_tune(values, apply, search, calibration, target_recall):  # type: ignore[no-untyped-def]
            apply(values[-1])
            found.append(search(calibration.queries, calibration.k))
            return real_tune(values, apply, search, calibration, target_recall)

        monkeypatch.setattr(faiss_layouts, "tune", recording_tune)
        original(layout, calibration, target)
        seen["found"] = found[0]

    real_tune = faiss_layouts.tune
    monkeypatch.setattr(faiss_layouts.HnswLayout, "tune", spy)
    index = FaissIndex(SPACE, layout="hnsw", target_recall=0.99)
    index.add(ids, vectors)
    calibration = seen["calibration"]
    assert isinstance(calibration, Calibration)
    held, hidden = seen["held"], set(calibration.hidden_ids.tolist())
    assert isinstance(held, set) and hidden and hidden <= held
    assert not held & set(calibration.own.tolist())
    found = seen["found"]
    assert isinstance(found, np.ndarray) and found.shape[0] == len(calibration.queries)
    assert not set(found.ravel().tolist()) & hidden
    # The walk did reach them: unfiltered, the same searches return some.
    layout = index._layout
    assert isinstance(layout, faiss_layouts.HnswLayout)
    _, unfiltered = layout.search(calibration.queries, calibration.k)
    assert set(unfiltered.ravel().tolist()) & hidden
    # Once tuned, every face is in the graph once, and none is a tombstone.
    assert index.count() == len(ids) and layout.tombstones == 0
    np.testing.assert_array_equal(np.sort(layout.ids()), np.sort(ids))


class _BreadthRecall:
    """A calibration whose recall is a rule of (nprobe, short-list width), so that which pair
    the tuner keeps can be checked exactly; the fake short lists carry their nprobe."""

    def __init__(self, lists_needed: Callable[[int], int]) -> None:
        self.lists_needed = lists_needed
        self.queries, self.k = VECTORS[:4], 10

    def found_share(self, found: np.ndarray) -> float:
        return float(found[0, 0] >= self.lists_needed(found.shape[1]))


@pytest.mark.parametrize(
    ("lists_needed", "timed", "kept"),
    [
        # every depth needs the same lists: the shallowest reads least, and no clock decides
        (lambda width: 8, [], (8, 10)),
        # short lists of 400 or more (depth 40 up) need fewer lists: one pair per breadth
        # is timed, and the clock decides
        (lambda width: 8 if width >= 400 else 16, [(8, 40), (16, 10)], (16, 10)),
        # no depth reaches the target: the most accurate pair
        (lambda width: 10**9, [], ("nlist", 320)),
    ],
)
def test_ivf_tuning_drops_pairs_that_read_as_many_lists_and_more_vectors(
    monkeypatch: pytest.MonkeyPatch,
    lists_needed: Callable[[int], int],
    timed: list[tuple[int, int]],
    kept: tuple[object, int],
) -> None:
    layout = ivf_index(target_recall=0.5)._layout
    assert isinstance(layout, faiss_layouts.IvfPqLayout)
    clock: list[tuple[int, int]] = []

    def seconds(calibration: object, pairs: list[tuple[int, int]]) -> list[float]:
        clock.extend(pairs)
        # the wider pair "runs faster": the clock, not the order, decides
        return [1.0 / nprobe for nprobe, _ in pairs]

    def short_list(queries: np.ndarray, pool: int) -> np.ndarray:
        return np.full((len(queries), pool), layout.nprobe, dtype=np.int64)

    monkeypatch.setattr(layout, "_seconds_per_probe", seconds)
    monkeypatch.setattr(layout, "_short_list", short_list)
    layout.tune(_BreadthRecall(lists_needed), 0.98)  # type: ignore[arg-type]
    nlist = int(layout.index.nlist)
    assert sorted(clock) == timed
    assert (layout.nprobe, layout.rerank) == tuple(nlist if v == "nlist" else v for v in kept)


@pytest.mark.parametrize("nlist", [1, 3, 64, 8192, 32768])
def test_ivf_tuning_chooses_nprobe_in_quarter_powers_of_two(nlist: int) -> None:
    steps = faiss_layouts.probe_steps(nlist)
    assert steps[0] == 1 and steps[-1] == nlist and steps == sorted(set(steps))
    # each step at most 2^(1/4) (rounded) past the one before: no breadth is skipped by much
    assert all(b <= max(a + 1, round(a * 2**0.25) + 1) for a, b in itertools.pairwise(steps))
    if nlist == 8192:
        assert {512, 609, 724} <= set(steps)  # 10^7 faces crossed 0.98 between 512 and 724


def test_ivf_tuning_times_a_pair_on_a_spread_of_its_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = ivf_index(target_recall=0.5)._layout
    assert isinstance(layout, faiss_layouts.IvfPqLayout)
    calibration = Calibration(Gallery(IDS, VECTORS), 60)
    searched: list[np.ndarray] = []
    settings: list[tuple[int, int]] = []
    real = layout.search

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        searched.append(queries)
        settings.append((layout.nprobe, layout.rerank))
        return real(queries, k)

    monkeypatch.setattr(layout, "search", search)
    monkeypatch.setattr(layout, "TIMED_QUERIES", 20)
    seconds = layout._seconds_per_probe(calibration, [(4, 20), (2, 10)])
    assert len(seconds) == 2 and min(seconds) > 0
    assert all(len(q) == 1 for q in searched)  # one probe a search, as a user searches
    # The pairs take turns on each probe, in an order that rotates: drift weighs on both.
    assert len(searched) == 40
    assert settings[:4] == [(4, 20), (2, 10), (2, 10), (4, 20)]
    for row in range(20):
        np.testing.assert_array_equal(searched[2 * row], searched[2 * row + 1])
    timed = np.concatenate(searched[::2])
    # mated probes (first half) and strangers (second half) alike
    rows = [int(np.flatnonzero((calibration.queries == q).all(axis=1))[0]) for q in timed]
    half = len(calibration.queries) // 2
    assert min(rows) < half <= max(rows)


def test_ivf_tuning_reads_a_depths_recall_off_the_deepest_short_list() -> None:
    # What the tuner relies on: re-ranking keeps every true neighbour its short list holds,
    # so the recall of a search equals the share of neighbours in the first ``pool`` ids
    # of the deepest short list, without reading a vector.
    index = ivf_index(target_recall=0.5)
    layout = index._layout
    assert isinstance(layout, faiss_layouts.IvfPqLayout)
    calibration = Calibration(Gallery(IDS, VECTORS), 60)
    recalls: list[float] = []
    with calibration.hold_out(layout):
        for nprobe in (1, 2, 4):
            layout._set_nprobe(nprobe)
            deepest = layout._short_list(calibration.queries, layout._pool(10, 320))
            for depth in (10, 20, 40):  # short lists of 100, 200 and 400
                layout.rerank = depth
                searched = calibration.recall(lambda q, k: layout.search(q, k)[1])
                read_off = calibration.found_share(deepest[:, : layout._pool(10)])
                assert read_off == pytest.approx(searched)
                recalls.append(searched)
    assert min(recalls) < max(recalls)  # breadth and depth matter here: the check can fail


def test_ivf_slots_it_cannot_fill_are_empty_not_minus_flt_max() -> None:
    index = ivf_index(target_recall=0.5)
    assert index.nprobe is not None and index.nprobe < choose_nlist(len(IDS))
    sims, ids = index.search(VECTORS[:3], k=index.count())  # more than the probed lists hold
    empty = ids == -1
    assert empty.any() and np.isneginf(sims[empty]).all()
    assert np.isfinite(sims[~empty]).all()


# -- removal: at once, everywhere ------------------------------------------------------------


def test_hnsw_removal_is_a_tombstone_seen_by_the_next_search_and_compaction_drops_it() -> None:
    index = layout_index("hnsw")
    gone = IDS[::7]
    assert index.remove(gone) == len(gone)
    assert index.count() == len(IDS) - len(gone)
    _, found = index.search(VECTORS, k=50)
    assert not np.isin(found, gone).any()
    held_before = index.ram_bytes()
    index.compact()
    assert index.ram_bytes() < held_before and index.count() == len(IDS) - len(gone)
    _, again = index.search(VECTORS[1::7], k=1)
    np.testing.assert_array_equal(again[:, 0], IDS[1::7])


def test_hnsw_compacts_itself_once_a_quarter_is_tombstones() -> None:
    index = layout_index("hnsw")
    index.remove(IDS[: len(IDS) // 3])
    layout = index._layout
    assert layout.tombstones == len(IDS) // 3  # type: ignore[union-attr]
    index.add(np.array([10**6]), VECTORS[:1])
    assert index._layout.tombstones == 0  # type: ignore[union-attr]
    assert index.count() == len(IDS) - len(IDS) // 3 + 1


def test_readding_an_id_replaces_its_vector_in_every_layout() -> None:
    for layout in ("flat", "hnsw", "ivfpq"):
        index = layout_index(layout)
        index.add(IDS[:1], VECTORS[600:601])
        _, found = index.search(VECTORS[600:601], k=2)
        assert set(found[0]) == {IDS[0], IDS[600]}, layout
        assert index.count() == len(IDS), layout


@pytest.mark.parametrize("layout", ["hnsw", "ivfpq"])
def test_approximate_layouts_keep_codes_in_ram_and_vectors_on_disk_and_wipe_a_removed_vector(
    tmp_path: Path, layout: str
) -> None:
    index = layout_index(layout, tmp_path)
    # codes, not float vectors (IVF: code, id, and ~2 B of the 32 lists' centroids)
    codes = faiss_layouts.rabitq_code_bytes(SPACE.dim) + 8 + 2
    limit = {"hnsw": SPACE.dim + 8 + 4 * (2 * 48 + 2) + 12, "ivfpq": codes}[layout]
    assert index.ram_bytes() / index.count() <= limit
    row = SPACE.dim * 4
    raw = index.vectors_path.read_bytes()
    stored = np.frombuffer(raw[IDS[0] * row : (IDS[0] + 1) * row], dtype=np.float32)
    np.testing.assert_array_equal(stored, VECTORS[0])
    index.remove(IDS[:1])
    raw = index.vectors_path.read_bytes()
    assert raw[IDS[0] * row : (IDS[0] + 1) * row] == bytes(row)  # erased means gone
    sims, _ = index.search(VECTORS[1:2], k=1)
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)  # exact, re-ranked from disk


def test_hnsw_codes_keep_the_principal_components_that_hold_the_variance() -> None:
    rng = np.random.default_rng(3)
    # 128-d faces whose variance lives in 40 directions: 48 components (16s) hold 97% of it
    basis = np.linalg.qr(rng.standard_normal((128, 128)))[0].astype(np.float32)
    low = rng.standard_normal((5000, 40)).astype(np.float32) * np.linspace(1.0, 0.5, 40)
    x = np.zeros((5000, 128), np.float32)
    x[:, :40] = low
    x[:, 40:] = rng.standard_normal((5000, 88)).astype(np.float32) * 0.01
    vectors = unit(x @ basis.T + 3.0 * basis[:, 127])  # a common offset, as face models have
    assert faiss_layouts.HnswLayout.components(vectors) == 48
    assert faiss_layouts.HnswLayout.components(vectors[:100]) == 128  # too few to fit a PCA
    space = EmbeddingSpace("synthetic", "1", 128)
    index = FaissIndex(space, layout="hnsw")
    ids = np.arange(len(vectors), dtype=np.int64)
    index.add(ids, vectors)
    assert index.kind == "hnsw48,pca48,sq8"
    sims, found = index.search(vectors[:50], k=1)
    np.testing.assert_array_equal(found[:, 0], ids[:50])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


def test_copies_are_independent() -> None:
    index = ivf_index()
    clone = copy.deepcopy(index)
    clone.remove(IDS[:10])
    assert index.count() == len(IDS) and clone.count() == len(IDS) - 10
    sims, found = index.search(VECTORS[:10], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[:10])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


# -- persistence ------------------------------------------------------------------------------


def test_flat_round_trip(tmp_path: Path) -> None:
    index = FaissIndex(SPACE, tmp_path)
    index.add(IDS[:300], VECTORS[:300])
    index.save()
    assert index.path == tmp_path / f"{SPACE.key}.faiss" and index.path.is_file()
    again = FaissIndex(SPACE, tmp_path)
    assert again.kind == "flat" and again.count() == 300
    assert_same_results(index, again)


@pytest.mark.parametrize("layout", ["hnsw", "ivfpq"])
def test_approximate_round_trip_keeps_layout_and_search_breadth(
    tmp_path: Path, layout: str
) -> None:
    index = layout_index(layout, tmp_path, target_recall=1.0)
    index.remove(IDS[:3])  # HNSW's tombstones persist too
    index.save()
    # A different threshold and target do not matter: the file holds the index as built.
    again = FaissIndex(SPACE, tmp_path, approx_threshold=10**9, target_recall=0.5)
    assert again.kind == index.kind and again.layout == layout
    assert (again.nprobe, again.ef_search) == (index.nprobe, index.ef_search)
    assert_same_results(index, again)


def test_an_ivf_flat_file_of_countenance_0_1_is_moved_to_the_current_layouts(
    tmp_path: Path,
) -> None:
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(SPACE.dim), SPACE.dim, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(VECTORS)
    ivf.add_with_ids(VECTORS, IDS)
    faiss.write_index(ivf, str(tmp_path / f"{SPACE.key}.faiss"))
    index = FaissIndex(SPACE, tmp_path)
    assert index.layout == "flat"
    np.testing.assert_array_equal(np.sort(index.ids()), IDS)
    _, found = index.search(VECTORS[:5], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[:5])


def test_an_hnsw_file_of_float_vectors_of_countenance_0_2_is_rebuilt_with_codes(
    tmp_path: Path,
) -> None:
    graph = faiss.IndexHNSWFlat(SPACE.dim, 32, faiss.METRIC_INNER_PRODUCT)
    old = faiss.IndexIDMap(graph)
    old.add_with_ids(VECTORS, IDS)
    faiss.rev_swig_ptr(old.id_map.data(), old.id_map.size())[:2] = -1  # two tombstones
    faiss.write_index(old, str(tmp_path / f"{SPACE.key}.faiss"))
    index = FaissIndex(SPACE, tmp_path, approx_threshold=THRESHOLD)
    assert index.layout == "hnsw" and index.kind == "hnsw48,sq8"
    np.testing.assert_array_equal(np.sort(index.ids()), IDS[2:])
    sims, found = index.search(VECTORS[2:7], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[2:7])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


def test_changes_after_reopen_persist(tmp_path: Path) -> None:
    index = ivf_index(tmp_path)
    index.save()
    again = FaissIndex(SPACE, tmp_path, approx_threshold=THRESHOLD)
    assert again.remove(IDS[:5]) == 5
    again.save()
    third = FaissIndex(SPACE, tmp_path)
    assert third.count() == len(IDS) - 5
    assert not np.isin(IDS[:5], third.ids()).any()


def test_a_graph_saved_with_fewer_links_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Graphs built before M became 48 load as they are: kind and RAM come from the file.
    monkeypatch.setattr(faiss_layouts.HnswLayout, "M", 32)
    old = layout_index("hnsw", tmp_path)
    old.save()
    monkeypatch.undo()
    again = FaissIndex(SPACE, tmp_path, approx_threshold=THRESHOLD)
    assert again.layout == "hnsw" and again.kind == "hnsw32,sq8" == old.kind
    assert again.ram_bytes() == old.ram_bytes()
    assert layout_index("hnsw").ram_bytes() > again.ram_bytes()  # M = 48: more links a face
    _, found = again.search(VECTORS[:5], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[:5])


def test_nothing_is_written_before_save(tmp_path: Path) -> None:
    index = FaissIndex(SPACE, tmp_path / "index")
    index.add(IDS[:3], VECTORS[:3])
    assert not (tmp_path / "index").exists()
    index.save()
    assert os.listdir(tmp_path / "index") == [f"{SPACE.key}.faiss"]


def test_save_without_directory_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    index = FaissIndex(SPACE)
    index.add(IDS[:3], VECTORS[:3])
    index.save()
    assert index.path is None and os.listdir(tmp_path) == []


def test_save_leaves_no_temp_files_and_sweeps_old_ones(tmp_path: Path) -> None:
    leftover = tmp_path / f".{SPACE.key}.faiss.abc123.tmp"  # from a crash in an earlier save
    leftover.write_bytes(b"half an index")
    index = FaissIndex(SPACE, tmp_path)
    index.add(IDS[:10], VECTORS[:10])
    index.save()
    index.save()
    assert os.listdir(tmp_path) == [f"{SPACE.key}.faiss"]


def test_a_failed_save_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = FaissIndex(SPACE, tmp_path)
    index.add(IDS[:10], VECTORS[:10])
    index.save()
    before = index.path.read_bytes()  # type: ignore[union-attr]

    def crash(_index: object, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    index.add(IDS[10:20], VECTORS[10:20])
    with pytest.raises(BackendError, match="disk full"):
        index.save()
    assert os.listdir(tmp_path) == [f"{SPACE.key}.faiss"]
    assert index.path.read_bytes() == before  # type: ignore[union-attr]
    assert FaissIndex(SPACE, tmp_path).count() == 10


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_unreadable_file_raises_backend_error_naming_it(tmp_path: Path, damage: str) -> None:
    index = FaissIndex(SPACE, tmp_path)
    index.add(IDS[:100], VECTORS[:100])
    index.save()
    path = tmp_path / f"{SPACE.key}.faiss"
    good = path.read_bytes()
    broken = {
        "garbage": np.random.default_rng(0).bytes(len(good)),
        "truncated": good[: len(good) // 2],
        "empty": b"",
    }[damage]
    path.write_bytes(broken)
    with pytest.raises(BackendError, match=str(path).replace("\\", "\\\\")):
        FaissIndex(SPACE, tmp_path)


def test_file_of_another_dimension_raises_space_mismatch(tmp_path: Path) -> None:
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(SPACE.dim * 2))
    faiss.write_index(other, str(tmp_path / f"{SPACE.key}.faiss"))
    with pytest.raises(SpaceMismatch):
        FaissIndex(SPACE, tmp_path)


def test_file_of_a_foreign_index_type_raises_backend_error(tmp_path: Path) -> None:
    faiss.write_index(faiss.IndexFlatL2(SPACE.dim), str(tmp_path / f"{SPACE.key}.faiss"))
    with pytest.raises(BackendError, match="not one of ours"):
        FaissIndex(SPACE, tmp_path)


# -- rebuild ----------------------------------------------------------------------------------


def test_rebuild_replaces_contents_and_chooses_by_size() -> None:
    index = FaissIndex(SPACE, approx_threshold=THRESHOLD)
    index.add(np.array([1, 2, 3]), VECTORS[:3])
    index.rebuild(IDS, VECTORS)
    assert index.layout == "hnsw" and index.count() == len(IDS)
    assert not np.isin([1, 2, 3], index.ids()).any()
    index.rebuild(IDS[:50], VECTORS[:50])
    assert index.kind == "flat"
    np.testing.assert_array_equal(np.sort(index.ids()), IDS[:50])


def test_rebuild_from_its_own_vector_file_indexes_a_gallery_larger_than_ram() -> None:
    index = FaissIndex(SPACE, layout="ivfpq")
    store = VectorFile(index.vectors_path, SPACE.dim)  # written first, as a bulk load would
    store.write(IDS, VECTORS)
    index.rebuild(IDS, store)
    assert index.layout == "ivfpq" and index.count() == len(IDS)
    _, found = index.search(VECTORS[:5], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[:5])


@pytest.mark.parametrize(
    "options",
    [
        {"approx_threshold": -1},
        {"target_recall": 0.0},
        {"target_recall": 1.5},
        {"memory_gb": 0},
        {"layout": "annoy"},
    ],
)
def test_bad_options_raise_invalid_argument(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        FaissIndex(SPACE, **options)  # type: ignore[arg-type]


# -- the registry -----------------------------------------------------------------------------


def test_open_index_unknown_backend_raises_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="exact, faiss"):
        open_index("annoy", SPACE, None)


def test_open_index_faiss_is_a_persistent_vector_index(tmp_path: Path) -> None:
    index = open_index("faiss", SPACE, tmp_path, approx_threshold=7)
    assert isinstance(index, FaissIndex) and index.approx_threshold == 7
    assert isinstance(index, VectorIndex) and isinstance(index, Persistent)
    exact = open_index("exact", SPACE, None)
    assert isinstance(exact, ExactIndex) and not isinstance(exact, Persistent)


def test_missing_backend_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(INDEXES, "milvus", "no_such_package_countenance_test.index:Index")
    with pytest.raises(BackendUnavailable, match=r"pip install 'countenance\[milvus\]'"):
        open_index("milvus", SPACE, None)


def test_importing_the_registry_does_not_import_faiss() -> None:
    code = "import sys, countenance.index; assert 'faiss' not in sys.modules, 'faiss imported'"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_ivfpq_with_many_lists_finds_them_through_an_hnsw_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faiss_layouts, "HNSW_QUANTIZER_FROM", 8)  # 16 lists here
    index = ivf_index(tmp_path)
    quantizer = faiss.downcast_index(index._layout.index.quantizer)  # type: ignore[union-attr]
    assert isinstance(quantizer, faiss.IndexHNSWFlat)  # adds find their list through it
    _, found = index.search(VECTORS[::25], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[::25])
    index.save()
    assert_same_results(index, FaissIndex(SPACE, tmp_path))
    assert_same_results(index, copy.deepcopy(index))


def test_an_ivfpq_index_written_before_rabitq_still_opens_and_searches(tmp_path: Path) -> None:
    index = ivf_index(tmp_path)
    index.save()
    # What this layout wrote before its codes were RaBitQ: 4-bit PQ fast-scan codes.
    old = faiss.IndexIVFPQFastScan(
        faiss.IndexFlatIP(SPACE.dim), SPACE.dim, 16, 8, 4, faiss.METRIC_INNER_PRODUCT
    )
    old.train(VECTORS)
    old.add_with_ids(VECTORS, IDS)
    old.nprobe = 16
    faiss.write_index(old, str(index.path))
    reopened = FaissIndex(SPACE, tmp_path)
    assert reopened.layout == "ivfpq" and reopened.kind == "ivf16,pq8x4fs"
    sims, found = reopened.search(VECTORS[::25], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[::25])
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)  # re-ranked by the float vectors
