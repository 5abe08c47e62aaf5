"""FaissIndex beyond the shared contract: persistence, the switch to IVF, nprobe, the registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from countenance.errors import BackendError, BackendUnavailable, InvalidArgument, SpaceMismatch
from countenance.index import INDEXES, open_index
from countenance.index.exact import ExactIndex
from countenance.index.faiss import FaissIndex, choose_nlist, tune_nprobe
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


def ivf_index(directory: Path | None = None, target_recall: float = 0.99) -> FaissIndex:
    index = FaissIndex(SPACE, directory, approx_threshold=THRESHOLD, target_recall=target_recall)
    index.add(IDS, VECTORS)
    return index


def assert_same_results(a: FaissIndex, b: FaissIndex) -> None:
    np.testing.assert_array_equal(np.sort(a.ids()), np.sort(b.ids()))
    sims_a, ids_a = a.search(VECTORS[::50], k=10)
    sims_b, ids_b = b.search(VECTORS[::50], k=10)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(sims_a, sims_b)


# -- the switch to IVF and nprobe --------------------------------------------------------------


def test_stays_flat_up_to_the_threshold_and_turns_ivf_past_it() -> None:
    index = FaissIndex(SPACE, approx_threshold=THRESHOLD)
    index.add(IDS[:THRESHOLD], VECTORS[:THRESHOLD])
    assert index.kind == "flat" and index.nprobe is None
    index.add(IDS[THRESHOLD : THRESHOLD + 1], VECTORS[THRESHOLD : THRESHOLD + 1])
    assert index.kind == f"ivf{choose_nlist(THRESHOLD + 1)},flat"
    assert index.nprobe is not None and 1 <= index.nprobe <= choose_nlist(THRESHOLD + 1)
    np.testing.assert_array_equal(np.sort(index.ids()), IDS[: THRESHOLD + 1])
    _, found = index.search(VECTORS[:THRESHOLD:25], k=1)
    np.testing.assert_array_equal(found[:, 0], IDS[:THRESHOLD:25])


def test_ivf_retrains_with_more_lists_as_the_gallery_grows_fourfold() -> None:
    index = FaissIndex(SPACE, approx_threshold=200)
    index.add(IDS[:300], VECTORS[:300])
    assert index.kind == f"ivf{choose_nlist(300)},flat"
    index.add(IDS[300:], VECTORS[300:])
    assert index.kind == f"ivf{choose_nlist(len(IDS))},flat"
    assert choose_nlist(len(IDS)) >= 2 * choose_nlist(300)
    np.testing.assert_array_equal(np.sort(index.ids()), IDS)


@pytest.mark.parametrize(
    ("n", "nlist"), [(10, 1), (100, 2), (2_000, 32), (200_000, 2048), (1_000_000, 4096)]
)
def test_nlist_is_about_4_sqrt_n_with_39_points_per_list(n: int, nlist: int) -> None:
    assert choose_nlist(n) == nlist
    assert nlist == 1 or n // nlist >= 39


def test_nprobe_is_the_smallest_power_of_two_reaching_the_target() -> None:
    index = ivf_index()
    ivf = index._index
    exact = ExactIndex(SPACE)
    exact.add(IDS, VECTORS)
    queries = VECTORS[:: len(IDS) // 100]
    _, truth = exact.search(queries, k=11)

    def recall(nprobe: int) -> float:
        ivf.nprobe = nprobe
        _, found = ivf.search(queries, 11)
        return float(
            np.mean([len(set(t) & set(f)) / 11 for t, f in zip(truth, found, strict=True)])
        )

    chosen = index.nprobe  # what the switch to IVF set, from the default target 0.99
    assert chosen is not None
    assert tune_nprobe(ivf, IDS, VECTORS, 0.99) == chosen
    assert chosen & (chosen - 1) == 0  # a power of two
    assert tune_nprobe(ivf, IDS, VECTORS, 0.5) < chosen  # set from the target, not fixed
    assert index.nprobe == chosen  # tuning leaves the index as it was
    # Measured on other queries than the tuning used (and counting each query's own id).
    assert recall(chosen) >= 0.97
    assert chosen == 1 or recall(chosen // 2) < 0.99


def test_ivf_slots_it_cannot_fill_are_empty_not_minus_flt_max() -> None:
    index = ivf_index()
    assert index.nprobe is not None and index.nprobe < choose_nlist(len(IDS))
    sims, ids = index.search(VECTORS[:3], k=index.count())  # more than the probed lists hold
    empty = ids == -1
    assert empty.any() and np.isneginf(sims[empty]).all()
    assert np.isfinite(sims[~empty]).all()


# -- persistence ------------------------------------------------------------------------------


def test_flat_round_trip(tmp_path: Path) -> None:
    index = FaissIndex(SPACE, tmp_path)
    index.add(IDS[:300], VECTORS[:300])
    index.save()
    assert index.path == tmp_path / f"{SPACE.key}.faiss" and index.path.is_file()
    again = FaissIndex(SPACE, tmp_path)
    assert again.kind == "flat" and again.count() == 300
    assert_same_results(index, again)


def test_ivf_round_trip_keeps_nprobe(tmp_path: Path) -> None:
    index = ivf_index(tmp_path, target_recall=1.0)
    index.save()
    # A different threshold and target do not matter: the file holds the index as built.
    again = FaissIndex(SPACE, tmp_path, approx_threshold=10**9, target_recall=0.5)
    assert again.kind == index.kind and index.kind.startswith("ivf")
    assert again.nprobe == index.nprobe
    assert_same_results(index, again)


def test_changes_after_reopen_persist(tmp_path: Path) -> None:
    index = ivf_index(tmp_path)
    index.save()
    again = FaissIndex(SPACE, tmp_path, approx_threshold=THRESHOLD)
    assert again.remove(IDS[:5]) == 5
    again.save()
    third = FaissIndex(SPACE, tmp_path)
    assert third.count() == len(IDS) - 5
    assert not np.isin(IDS[:5], third.ids()).any()


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
    assert index.kind.startswith("ivf") and index.count() == len(IDS)
    assert not np.isin([1, 2, 3], index.ids()).any()
    index.rebuild(IDS[:50], VECTORS[:50])
    assert index.kind == "flat"
    np.testing.assert_array_equal(np.sort(index.ids()), IDS[:50])


@pytest.mark.parametrize(("threshold", "target"), [(-1, 0.99), (10, 0.0), (10, 1.5)])
def test_bad_options_raise_invalid_argument(threshold: int, target: float) -> None:
    with pytest.raises(InvalidArgument):
        FaissIndex(SPACE, approx_threshold=threshold, target_recall=target)


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
