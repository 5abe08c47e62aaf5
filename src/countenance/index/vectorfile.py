"""Float32 vectors on disk, one row per face id, read through a memory map.

HNSW and IVF keep only short codes in RAM; to give exact similarities each re-ranks its short
list with the float vectors, which live here. Face ids are catalog row ids, dense and growing, so
the row of id ``i`` is simply at byte ``i * dim * 4``: no id map to hold in RAM, one seek per
vector. Rows of ids never written read as zeros (the file is sparse: unwritten rows take no
disk on filesystems with holes). A removed id's row is overwritten with zeros, so an erased
face's vector does not outlive it here.

The file is written with ``pwrite``. Ascending ids that span few more rows than they number
(a chunk of catalog ids) are read with one ``pread`` (the kernel reads ahead, as a scan
wants); scattered ids, as a re-ranking short list has, are
read through a read-only map advised as random access, so that each 512-byte row costs one
page and not the kernel's usual read-ahead window (128 KiB a row would read ~400 MB per
search of a 10^8-face gallery that does not fit the page cache). The map is reopened when
the file grows; the page cache, not the process, holds what is read.

A file that takes at most a quarter of the machine's memory (10^7 faces of 128 dimensions:
5 GB) has its map filled in the background each time it is mapped: its pages are read into
the page cache and entered in the process's page table. Otherwise the first read of each row
faults even when the page cache holds it: at 10^7 faces, searches re-ranking 400 rows took
8.88 ms at p50 with the map filled and 9.55 ms without (300 searches of each, in pairs).
One thread fills, and only the newest map: a file growing under ingest is not filled once
per growth. Larger files are read on demand.

Example::

    store = VectorFile(Path("data/index/space.vectors"), dim=128)
    store.write(np.array([7, 9]), vectors)          # float32[2, 128]
    store.read(np.array([9, 7, 3]))                 # rows 9 and 7, then zeros for 3
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import sys
import threading
import weakref
from pathlib import Path

import numpy as np

from countenance.errors import BackendError
from countenance.ports import Ids, Vectors

# Writes go out in slices of this many rows, so a large write never builds one huge buffer.
_WRITE_ROWS = 1 << 16
# Ascending ids spanning at most this many rows per id asked for are read as one run.
_SPAN_READ = 4
_READ_BYTES = 1 << 28  # bytes per read call of a run
# A file up to this share of physical memory has its map filled in when mapped.
_FILL_SHARE = 0.25
_MADV_POPULATE_READ = 22  # Linux 5.14 and later: read the pages in and map them

log = logging.getLogger("countenance.index")


class VectorFile:
    """Rows of float32[dim] addressed by non-negative int64 id, in one file."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self._row = dim * 4
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BackendError(f"cannot open vector file {self.path}: {exc}") from exc
        self._map: Vectors | None = None
        self._mmap: mmap.mmap | None = None
        self._mapped_rows = 0
        self._filling: threading.Thread | None = None  # the filler, while one runs
        self._fill_next: Vectors | None = None  # the newest map, until the filler takes it
        self._fill_lock = threading.Lock()
        # closes the descriptor of a file dropped without close(), even at interpreter exit
        self._closer = weakref.finalize(self, os.close, self._fd)

    @property
    def rows(self) -> int:
        """Rows the file spans (the largest id written, plus one)."""
        return os.fstat(self._fd).st_size // self._row

    def write(self, ids: Ids, vectors: Vectors) -> None:
        """Store ``vectors[i]`` as the row of ``ids[i]``, growing the file as needed."""
        if len(ids) == 0:
            return
        order = np.argsort(ids, kind="stable")  # ascending offsets: sequential where ids are
        ids, vectors = ids[order], np.ascontiguousarray(vectors[order], dtype=np.float32)
        try:
            end = (int(ids[-1]) + 1) * self._row
            if end > os.fstat(self._fd).st_size:
                os.ftruncate(self._fd, end)
            for start in range(0, len(ids), _WRITE_ROWS):
                self._write_runs(
                    ids[start : start + _WRITE_ROWS], vectors[start : start + _WRITE_ROWS]
                )
        except OSError as exc:
            raise BackendError(f"cannot write vector file {self.path}: {exc}") from exc

    def _write_runs(self, ids: Ids, vectors: Vectors) -> None:
        # Consecutive ids (the usual case: a batch of new faces) go out in one pwrite per run.
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        for run_ids, run_vectors in zip(
            np.split(ids, breaks), np.split(vectors, breaks), strict=True
        ):
            os.pwrite(self._fd, run_vectors.tobytes(), int(run_ids[0]) * self._row)

    def wipe(self, ids: Ids) -> None:
        """Overwrite the rows of ``ids`` with zeros (ids past the end are already zeros)."""
        held = ids[(ids >= 0) & (ids < self.rows)]
        if len(held):
            self.write(held, np.zeros((len(held), self.dim), dtype=np.float32))

    def read(self, ids: Ids) -> Vectors:
        """The rows of ``ids`` as float32[len(ids), dim]; zeros for ids never written."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if len(ids) == 0:
            return out
        rows = self.rows
        first, last = int(ids[0]), int(ids[-1])
        span = last - first + 1
        if (
            first >= 0
            and last < rows
            and span <= _SPAN_READ * len(ids)
            and (np.diff(ids) > 0).all()
        ):
            # ascending and dense enough (a chunk of catalog ids): one sequential read
            run = self._read_run(first, span)
            return run if span == len(ids) else run[ids - first]
        self._map_rows(rows)
        inside = (ids >= 0) & (ids < rows)
        if self._map is not None and inside.any():
            out[inside] = self._map[ids[inside]]
        return out

    def _read_run(self, first: int, count: int) -> Vectors:
        out = np.empty((count, self.dim), dtype=np.float32)
        view = out.data.cast("B")
        done, offset = 0, first * self._row
        try:
            while done < len(view):  # pread returns at most ~2 GiB at a time
                got = os.preadv(self._fd, [view[done : done + _READ_BYTES]], offset + done)
                if got == 0:
                    raise BackendError(f"vector file {self.path} ended early (truncated?)")
                done += got
        except OSError as exc:
            raise BackendError(f"cannot read vector file {self.path}: {exc}") from exc
        return out

    def _remap(self, rows: int) -> None:
        self._map, self._mmap = None, None
        self._mapped_rows = rows
        if rows:
            self._mmap = mmap.mmap(self._fd, rows * self._row, prot=mmap.PROT_READ)
            if hasattr(mmap, "MADV_RANDOM"):  # Linux and most Unix; a hint, not a need
                self._mmap.madvise(mmap.MADV_RANDOM)
            self._map = np.frombuffer(self._mmap, dtype=np.float32).reshape(rows, self.dim)
            if self._map.nbytes <= _FILL_SHARE * _physical_memory():
                self._fill_later(self._map)

    def _fill_later(self, view: Vectors) -> None:
        with self._fill_lock:
            self._fill_next = view  # a map not yet taken is dropped: this one replaces it
            if self._filling is None:
                self._filling = threading.Thread(
                    target=self._filler, name=f"fill {self.path.name}", daemon=True
                )
                self._filling.start()

    def _filler(self) -> None:
        while True:
            with self._fill_lock:
                view, self._fill_next = self._fill_next, None
                if view is None:
                    self._filling = None
                    return
            _fill(view, self.path)

    def open_map(self) -> None:
        """Map the file now (which starts its fill) rather than at the first scattered read."""
        self._map_rows(self.rows)

    def _map_rows(self, rows: int) -> None:
        """Map ``rows`` rows unless the current map already spans them."""
        if self._map is None or self._mapped_rows != rows:
            self._remap(rows)

    def wait_filled(self, timeout: float | None = None) -> None:
        """Wait for the background fill of the map, if one is under way (benchmarks and
        tests; searches need not wait: a row not yet filled in is read on demand)."""
        filler = self._filling
        if filler is not None:
            filler.join(timeout)

    def truncate(self) -> None:
        """Drop every row."""
        self._map, self._mmap, self._mapped_rows = None, None, 0
        os.ftruncate(self._fd, 0)

    def flush(self) -> None:
        """Make every write so far durable."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise BackendError(f"cannot flush vector file {self.path}: {exc}") from exc

    def close(self) -> None:
        self._map, self._mmap = None, None
        self._closer()


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says
        return 0


def _fill(view: Vectors, path: Path) -> None:
    """Read the mapped rows in and map them (``view`` keeps the map open meanwhile). Through
    ctypes, which releases the GIL for the seconds a cold 5 GB file takes."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.madvise(view.ctypes.data, view.nbytes, _MADV_POPULATE_READ) != 0:
        # a kernel before 5.14, or a read error: searches read on demand as before
        log.debug("cannot fill the map of %s: %s", path, os.strerror(ctypes.get_errno()))
