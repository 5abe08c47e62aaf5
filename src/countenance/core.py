"""The write core: every change to the store is one catalog transaction with its audit event
inside it, and the vector index follows the catalog.

The engine, the governance controls and ingestion change the store only through
:meth:`WriteCore.change`. Inside it they write catalog rows on ``change.conn``, name the
faces the index must drop or add (``change.forget``, ``change.index``) and record the audit
event (``change.record``); the transaction commits all of it or none of it. Only after the
commit does the index follow, and a failure there is repaired from the catalog at once (or on
the next open), so a crash at any point leaves either the whole change, audited, or nothing.

It also owns the writer lock (one writing process per data directory) and the suppression
set (templates of erased people, in the store's space).

Example::

    with core.change() as change:
        n, photos = core.catalog.delete_faces([7], conn=change.conn)
        change.forget([7])
        change.record(actor="dpo", action="erase", details={"faces": n})
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from countenance.catalog.audit import AuditEvent, AuditLog
from countenance.catalog.sql import SqlCatalog
from countenance.errors import BackendError, WriterBusy
from countenance.ports import Ids, Persistent, VectorIndex, Vectors
from countenance.types import Bands, EmbeddingSpace

log = logging.getLogger("countenance")

Repair = Callable[[], VectorIndex]


@dataclass
class Change:
    """One change being made: its open transaction and what the index must do after it."""

    conn: sa.Connection
    audit: AuditLog
    removed: list[Ids] = field(default_factory=list)
    added: list[tuple[Ids, Vectors]] = field(default_factory=list)
    templates_changed: bool = False
    events: list[AuditEvent] = field(default_factory=list)

    def forget(self, face_ids: Iterable[int] | Ids) -> None:
        """Take these faces out of the index once the change commits."""
        ids = np.asarray(list(face_ids) if not isinstance(face_ids, np.ndarray) else face_ids)
        if ids.size:
            self.removed.append(ids.astype(np.int64))

    def index(self, face_ids: Iterable[int], vectors: Vectors) -> None:
        """Add these faces to the index once the change commits."""
        ids = np.asarray(list(face_ids), dtype=np.int64)
        if ids.size:
            self.added.append((ids, np.asarray(vectors, dtype=np.float32)))

    def record(self, **event: Any) -> AuditEvent:
        """The change's audit event, inside its transaction (see AuditLog.record)."""
        recorded = self.audit.record(self.conn, **event)
        self.events.append(recorded)
        return recorded


LOW_SPACE = 1 << 20  # bytes: below this, a failed write is put down to a full disk


def no_space(data_dir: Path) -> str | None:
    """What to tell the operator when the disk holding ``data_dir`` is (nearly) full, else
    None."""
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError:
        return None
    if free >= LOW_SPACE:
        return None
    return (
        f"the disk holding {data_dir} is full ({free:,} bytes free): free some space and run"
        " again; nothing of this change was stored"
    )


class WriteCore:
    """Catalog–index agreement, the writer lock and the suppression set of one store."""

    def __init__(
        self,
        data_dir: Path,
        catalog: SqlCatalog,
        audit: AuditLog,
        space: EmbeddingSpace,
        index: VectorIndex,
        bands: Bands,
        *,
        repair: Repair,
    ) -> None:
        self.data_dir = data_dir
        self.catalog = catalog
        self.audit = audit
        self.space = space
        self.index = index
        self.bands = bands
        self._repair = repair
        self._wrap: Callable[[VectorIndex], VectorIndex] | None = None
        self._lock = threading.RLock()
        self._depth = 0
        self._lock_file: IO[str] | None = None
        self.templates: tuple[Vectors, Vectors] = self._load_templates()

    # the writer lock -----------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One writing process per data directory at a time (re-entrant in this process);
        readers are never blocked. Another process holding it: BackendError at once."""
        with self._lock:
            if self._depth == 0:
                fh = (self.data_dir / ".writer.lock").open("w")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.close()
                    raise WriterBusy(
                        f"another countenance process is writing to {self.data_dir};"
                        " try again later"
                    ) from None
                self._lock_file = fh
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_file is not None:
                    fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                    self._lock_file.close()
                    self._lock_file = None

    # changes -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def change(self) -> Iterator[Change]:
        """One transaction under the writer lock; the index follows after it commits."""
        with self.writing():
            self.catalog.space_id(self.space)  # cached before the transaction holds the db
            try:
                with self.catalog.transaction() as conn:
                    change = Change(conn, self.audit)
                    yield change
            except sa.exc.SQLAlchemyError as exc:
                raise BackendError(
                    no_space(self.data_dir) or f"catalog write failed, nothing was changed: {exc}"
                ) from exc
            try:
                self.follow(change)
            except (OSError, BackendError) as exc:  # made; the index is repaired on next open
                raise BackendError(
                    (no_space(self.data_dir) or f"the index could not be saved ({exc})")
                    + "; the change itself was made, and the index is repaired from the catalog"
                    " when the store is next opened"
                ) from exc

    def follow(self, change: Change) -> None:
        """Bring the index (and the suppression set) in line with a committed change; where
        that fails, rebuild the index's agreement with the catalog now."""
        try:
            for ids in change.removed:
                self.index.remove(ids)
            if change.added:  # one insert for the whole change (a batch of photos)
                ids = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in change.added])
                self.index.add(ids, np.concatenate([v for _, v in change.added]))
            if change.removed:
                self.save_index()
        except Exception as exc:  # the catalog has committed: the index must catch up
            log.warning("index out of step after a change (%s); repairing it", exc)
            self.index = self._wrapped(self._repair())
        if change.templates_changed:
            self.templates = self._load_templates()

    def adopt(self, space: EmbeddingSpace, index: VectorIndex, bands: Bands) -> None:
        """Take the space (and its index and bands) a model switch completed."""
        self.space, self.index, self.bands = space, self._wrapped(index), bands
        self.templates = self._load_templates()

    def wrap_index(self, wrap: Callable[[VectorIndex], VectorIndex]) -> None:
        """Wrap the index, now and whenever it is replaced (the server's lock for threads)."""
        self._wrap = wrap
        self.index = wrap(self.index)

    def _wrapped(self, index: VectorIndex) -> VectorIndex:
        return self._wrap(index) if self._wrap is not None else index

    def save_index(self) -> None:
        if isinstance(self.index, Persistent):
            self.index.save()

    # the suppression set -------------------------------------------------------------------

    def _load_templates(self) -> tuple[Vectors, Vectors]:
        return self.catalog.suppression_templates(self.space)[1:]

    def reload_templates(self) -> None:
        self.templates = self._load_templates()

    def suppressed(self, vectors: list[Vectors] | Vectors) -> npt.NDArray[np.bool_]:
        """Which vectors match a suppression template at its edge."""
        templates, edges = self.templates
        stacked = np.asarray(vectors, dtype=np.float32).reshape(-1, self.space.dim)
        if not len(templates) or not len(stacked):
            return np.zeros(len(stacked), dtype=bool)
        return np.asarray(((stacked @ templates.T) >= edges[None, :]).any(axis=1))
