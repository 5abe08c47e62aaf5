"""VectorFile: float32 rows addressed by face id, in one sparse, memory-mapped file."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from countenance.errors import BackendError
from countenance.index import vectorfile
from countenance.index.vectorfile import VectorFile

DIM = 8


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_rows_are_read_back_by_id_in_any_order_with_zeros_where_never_written(
    tmp_path: Path,
) -> None:
    store = VectorFile(tmp_path / "v", DIM)
    values = rows(3)
    store.write(np.array([9, 2, 5]), values)
    assert store.rows == 10  # the file spans up to the largest id
    got = store.read(np.array([5, 9, 3, 2, 100]))
    np.testing.assert_array_equal(got[0], values[2])
    np.testing.assert_array_equal(got[1], values[0])
    np.testing.assert_array_equal(got[3], values[1])
    assert not got[2].any() and not got[4].any()  # never written; past the end


def test_a_run_of_ids_reads_as_one_slice_and_growth_is_seen(tmp_path: Path) -> None:
    store = VectorFile(tmp_path / "v", DIM)
    values = rows(100)
    store.write(np.arange(100), values)
    np.testing.assert_array_equal(store.read(np.arange(10, 60)), values[10:60])
    more = rows(5, seed=1)
    store.write(np.arange(1000, 1005), more)  # grows the file after a read mapped it
    np.testing.assert_array_equal(store.read(np.arange(1000, 1005)), more)


def test_wipe_zeroes_rows_on_disk_and_reopening_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "v"
    store = VectorFile(path, DIM)
    values = rows(4)
    store.write(np.arange(4), values)
    store.wipe(np.array([1, 3, 77]))  # 77 was never written: nothing to do
    store.flush()
    store.close()
    raw = np.frombuffer(path.read_bytes(), dtype=np.float32).reshape(-1, DIM)
    assert not raw[1].any() and not raw[3].any()
    again = VectorFile(path, DIM)
    np.testing.assert_array_equal(again.read(np.array([0, 2])), values[[0, 2]])


def test_truncate_drops_every_row(tmp_path: Path) -> None:
    store = VectorFile(tmp_path / "v", DIM)
    store.write(np.arange(3), rows(3))
    store.truncate()
    assert store.rows == 0 and not store.read(np.arange(3)).any()


def test_an_unopenable_path_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackendError, match="cannot open vector file"):
        VectorFile(tmp_path / "file" / "v", DIM)


def test_every_way_of_reading_returns_the_rows_asked_for(tmp_path: Path) -> None:
    store = VectorFile(tmp_path / "v.vectors", 8)
    vectors = np.random.default_rng(4).standard_normal((200, 8)).astype(np.float32)
    store.write(np.arange(200, dtype=np.int64), vectors)
    for ids in (
        np.arange(10, 60),  # a run: one sequential read
        np.array([3, 5, 6, 11]),  # ascending and dense: one read, rows picked from it
        np.array([190, 4, 77]),  # scattered: through the map
        np.array([1, 150, 199]),  # ascending but sparse: through the map
    ):
        got = store.read(ids.astype(np.int64))
        np.testing.assert_array_equal(got, vectors[ids])
        got[:] = 0  # a result is the caller's own, never a view of the file
    np.testing.assert_array_equal(store.read(np.arange(10, 60, dtype=np.int64)), vectors[10:60])
    np.testing.assert_array_equal(
        store.read(np.array([198, 250])), np.stack([vectors[198], np.zeros(8)])
    )


def _resident_kb(path: Path) -> tuple[int, int]:
    """(size, resident) in KiB of this process's map of ``path``, from /proc/self/smaps."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for at, line in enumerate(lines):
        if line.endswith(str(path)):
            fields = dict(f.split(":", 1) for f in lines[at + 1 : at + 24] if ":" in f)
            return int(fields["Size"].split()[0]), int(fields["Rss"].split()[0])
    raise AssertionError(f"{path} is not mapped")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's smaps")
@pytest.mark.parametrize("fits", [True, False])
def test_a_file_that_fits_memory_is_mapped_in_whole_before_searches_touch_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fits: bool
) -> None:
    if not fits:
        monkeypatch.setattr(vectorfile, "_FILL_SHARE", 0.0)
    path = tmp_path / "v"
    store = VectorFile(path, DIM)
    values = rows(1 << 20)  # 32 MiB
    store.write(np.arange(1 << 20), values)
    np.testing.assert_array_equal(store.read(np.array([7, 600_000])), values[[7, 600_000]])
    store.wait_filled(timeout=60)
    size, resident = _resident_kb(path)
    assert size == 32 << 10
    if fits:
        assert resident == size  # every page entered in the page table: no fault per row
    else:
        assert resident <= size // 4  # the pages read (a fault may map a large folio: 2 MiB)
    np.testing.assert_array_equal(store.read(np.array([600_000, 7])), values[[600_000, 7]])


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's smaps")
def test_a_growing_file_is_filled_by_one_thread_and_its_newest_map_whole(tmp_path: Path) -> None:
    path = tmp_path / "growing.vectors"
    store = VectorFile(path, DIM)
    step = 1 << 18  # 8 MiB of rows
    for grown in range(1, 6):
        store.write(np.arange((grown - 1) * step, grown * step), rows(step, seed=grown))
        store.read(np.array([0, grown * step - 1]))  # the file grew: a new map, to fill
        fillers = [t for t in threading.enumerate() if t.name == f"fill {path.name}"]
        assert len(fillers) <= 1  # one filler, whatever the growth
    store.wait_filled(timeout=60)
    lines = Path("/proc/self/smaps").read_text().splitlines()
    maps = [
        dict(f.split(":", 1) for f in lines[at + 1 : at + 24] if ":" in f)
        for at, line in enumerate(lines)
        if line.endswith(str(path))
    ]
    newest = max(maps, key=lambda fields: int(fields["Size"].split()[0]))
    assert int(newest["Size"].split()[0]) == 5 * 8 << 10
    assert int(newest["Rss"].split()[0]) == 5 * 8 << 10  # the newest map, filled whole
    np.testing.assert_array_equal(store.read(np.array([3 * step])), rows(step, seed=4)[:1])


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's smaps")
def test_open_map_maps_and_fills_before_any_read(tmp_path: Path) -> None:
    # What IVF tuning relies on before it times searches: the map is whole when they start.
    path = tmp_path / "v"
    store = VectorFile(path, DIM)
    values = rows(1 << 18)  # 8 MiB
    store.write(np.arange(1 << 18), values)
    with pytest.raises(AssertionError, match="not mapped"):
        _resident_kb(path)  # written with pwrite: not mapped yet
    store.open_map()
    store.wait_filled(timeout=60)
    size, resident = _resident_kb(path)
    assert size == 8 << 10 and resident == size
    store.open_map()  # already mapped at this size: nothing changes
    np.testing.assert_array_equal(store.read(np.array([9, 5])), values[[9, 5]])
