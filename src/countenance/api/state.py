"""What one server process shares between requests: the engine made safe for threads, the
key store, the ingest jobs, the rate limiter and the metrics.

FastAPI runs plain ``def`` routes in a thread pool, so the engine is reached from many
threads at once. What is not safe there is guarded here:

- the dlib models hold scratch buffers: one face analysis at a time (:class:`SerialPipeline`);
- a FAISS index must not be searched while it is added to or rebuilt: every index call holds
  one mutex (:class:`LockedIndex`); a search holds it for milliseconds only;
- the engine's writer lock is a non-blocking ``flock`` per open file, so two writes from one
  process would refuse each other: writes queue on :attr:`ServerState.write_lock` first.

The catalog is safe as it is: SQLAlchemy hands each thread its own connection, and SQLite in
WAL mode lets readers run beside the writer.

Example::

    state = ServerState.open(Settings.from_env(data_dir="countenance-data"))
    with state.write_lock:
        state.engine.add_source("family", basis="consent", actor="alice")
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from countenance.api import service
from countenance.api.jobs import Jobs, JobStore
from countenance.api.metrics import Metrics
from countenance.catalog.keys import KeyStore
from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import RateLimited
from countenance.ports import RGB, Ids, VectorIndex, Vectors
from countenance.types import Box
from countenance.vision.pipeline import AnalysedFace, FacePipeline

if TYPE_CHECKING:
    from countenance.api.pool import PooledPipeline


class SerialPipeline(FacePipeline):
    """A :class:`FacePipeline` whose models run for one caller at a time."""

    def __init__(self, inner: FacePipeline) -> None:
        self.__dict__.update(inner.__dict__)
        self._lock = threading.RLock()

    def detect(self, rgb: RGB) -> list[Any]:
        with self._lock:
            return super().detect(rgb)

    def analyse(
        self, rgb: RGB, boxes: list[Box] | None = None, *, ages: bool = True
    ) -> list[AnalysedFace]:
        with self._lock:
            return super().analyse(rgb, boxes, ages=ages)


def serial(pipeline: FacePipeline) -> FacePipeline:
    """``pipeline`` made safe for threads: a :class:`SerialPipeline` (itself if it is one)."""
    return pipeline if isinstance(pipeline, SerialPipeline) else SerialPipeline(pipeline)


class LockedIndex:
    """A vector index whose every call holds one mutex (FAISS is not safe to search while
    it changes). Anything else is passed through."""

    def __init__(self, inner: VectorIndex) -> None:
        self._inner = inner
        self._lock = threading.RLock()

    @property
    def space(self) -> Any:
        return self._inner.space

    @property
    def kind(self) -> str:
        return self._inner.kind

    def add(self, ids: Ids, vectors: Vectors) -> None:
        with self._lock:
            self._inner.add(ids, vectors)

    def remove(self, ids: Ids) -> int:
        with self._lock:
            return self._inner.remove(ids)

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        with self._lock:
            return self._inner.search(queries, k)

    def count(self) -> int:
        with self._lock:
            return self._inner.count()

    def ids(self) -> Ids:
        with self._lock:
            return self._inner.ids()

    def save(self) -> None:
        with self._lock:
            save = getattr(self._inner, "save", None)
            if callable(save):
                save()

    def rebuild(self, ids: Ids, vectors: Vectors) -> None:
        with self._lock:
            rebuild = getattr(self._inner, "rebuild", None)
            if callable(rebuild):
                rebuild(ids, vectors)
            else:
                self._inner.remove(self._inner.ids())
                self._inner.add(ids, vectors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RateLimiter:
    """At most ``per_minute`` calls per key in any sliding minute (0: no limit)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one call for ``key``; raises RateLimited past the limit."""
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, collections.deque())
            while calls and now - calls[0] > 60.0:
                calls.popleft()
            if len(calls) >= self.per_minute:
                wait = int(60.0 - (now - calls[0])) + 1
                raise RateLimited(
                    f"key {key!r} made {len(calls)} requests in the last minute, the limit is"
                    f" {self.per_minute}; try again in {wait} s"
                )
            calls.append(now)


@dataclass
class ServerState:
    """Everything the routes share; built once per app (see :func:`create_app`)."""

    settings: Settings
    engine: Engine
    keys: KeyStore
    limiter: RateLimiter
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    # one sweep of the uploads folder at a time: each deleted file is audited exactly once
    sweep_lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: Jobs = field(init=False)
    metrics: Metrics = field(init=False)
    # photos whose faces each actor was shown by a search: what an investigator may view
    _seen_photos: dict[str, set[int]] = field(default_factory=dict)
    _seen_lock: threading.Lock = field(default_factory=threading.Lock)
    _seen_loaded: set[str] = field(default_factory=set)
    _pool: PooledPipeline | None = field(default=None, init=False)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        engine: Engine | None = None,
        pipeline: FacePipeline | None = None,
    ) -> ServerState:
        """Open the engine (unless given) and make it safe to share between threads."""
        if engine is None:
            engine = Engine(settings, pipeline=pipeline)
        engine.core.wrap_index(LockedIndex)  # type: ignore[arg-type]
        # with search_workers > 1, load_models starts the worker processes instead
        if settings.search_workers <= 1:
            engine.wrap_pipeline(serial)  # a pipeline given to the engine; else load_models
        state = cls(
            settings=engine.settings,  # the store's model, which settings.model may not name
            engine=engine,
            keys=engine.catalog.key_store(engine.audit),
            limiter=RateLimiter(settings.api_rate_per_minute),
        )
        state.jobs = Jobs(
            lambda source, files, actor, progress: service.run_ingest(
                state, source, files, actor, progress
            ),
            on_done=lambda summary: state.metrics.ingested(
                summary.photos, summary.faces, sum(summary.bad_files.values())
            ),
            after=lambda: service.sweep_uploads(state),
            store=JobStore(engine.data_dir / "jobs"),  # recovered at start-up (create_app)
        )
        state.metrics = Metrics(engine.index.count, state.jobs.running)
        return state

    def close(self) -> None:
        """Finish the running ingest job and stop the analysis workers (the engine is closed
        by whoever opened it)."""
        self.jobs.shutdown()
        if self._pool is not None:
            self._pool.close()

    def load_models(self) -> None:
        """Load the face models now (so the first search is not slow) and serialise them,
        or start the worker processes that analyse probes (``search_workers`` > 1)."""
        from countenance.api.pool import PooledPipeline

        pipeline = self.engine.pipeline
        if isinstance(pipeline, SerialPipeline | PooledPipeline):
            return
        if self.settings.search_workers > 1:

            def pool(inner: FacePipeline) -> FacePipeline:
                pooled = PooledPipeline(inner, self.settings, self.settings.search_workers)
                pooled.warm_up()
                self._pool = pooled  # its worker processes stop in close()
                return pooled

            self.engine.wrap_pipeline(pool)
        else:
            self.engine.wrap_pipeline(serial)

    def saw(self, actor: str, photo_ids: set[int]) -> None:
        """Remember that ``actor`` was shown these photos (by a search)."""
        with self._seen_lock:
            self._seen_photos.setdefault(actor, set()).update(photo_ids)

    def has_seen(self, actor: str, photo_id: int) -> bool:
        """Whether a search by ``actor`` returned a face of this photo: remembered since this
        process started, and before that read once from the audit log (which records the
        faces every search returned)."""
        with self._seen_lock:
            if photo_id in self._seen_photos.get(actor, set()):
                return True
            loaded = actor in self._seen_loaded
        if loaded:
            return False
        events = self.engine.audit.events(actor=actor, action="search")
        face_ids = {i for e in events for i in e.result_face_ids}
        photos = {row.photo_id for row in self.engine.catalog.face_rows(face_ids).values()}
        with self._seen_lock:
            self._seen_photos.setdefault(actor, set()).update(photos)
            self._seen_loaded.add(actor)
        return photo_id in photos
