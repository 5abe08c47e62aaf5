"""Probe analysis in worker processes, so searches run on several cores at once.

dlib's models hold the GIL and scratch buffers: in one process, face analysis runs for one
caller at a time (:class:`~countenance.api.state.SerialPipeline`). With ``search_workers`` above
1, the server hands each probe to one of that many worker processes instead (spawned, each
loading the models once); the vector search, catalog join and audit stay in the server.

Example::

    pipeline = PooledPipeline(engine.pipeline, settings, workers=4)
    faces = pipeline.analyse(rgb)      # runs in a worker process
    pipeline.close()
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from countenance.config import Settings
from countenance.errors import BackendError, InvalidArgument
from countenance.ports import RGB
from countenance.types import Box
from countenance.vision.pipeline import AnalysedFace, FacePipeline

_worker: FacePipeline | None = None


def _init(settings: Settings) -> None:
    global _worker
    _worker = FacePipeline.from_settings(settings)


def _analyse(rgb: RGB, ages: bool) -> list[AnalysedFace]:
    assert _worker is not None, "worker not initialised"
    return _worker.analyse(rgb, ages=ages)


def _detect(rgb: RGB) -> list[Any]:
    assert _worker is not None, "worker not initialised"
    return _worker.detect(rgb)


def _ready() -> bool:
    return _worker is not None


class PooledPipeline(FacePipeline):
    """A :class:`FacePipeline` whose work runs in ``workers`` processes (same models, same
    settings, same results); a worker that dies is replaced and the search answered 503."""

    def __init__(self, inner: FacePipeline, settings: Settings, workers: int) -> None:
        self.__dict__.update(inner.__dict__)  # space, thresholds: as the in-process pipeline
        self._settings = settings
        self._workers = workers
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            self._workers, mp_context=context, initializer=_init, initargs=(self._settings,)
        )

    def warm_up(self) -> None:
        """Start every worker and load its models now, not on the first searches."""
        for future in [self._pool.submit(_ready) for _ in range(self._workers * 2)]:
            future.result()

    def _run(self, task: Any, rgb: RGB, *args: Any) -> Any:
        pool = self._pool
        try:
            return pool.submit(task, rgb, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:  # the first to notice replaces it
                    self._pool = self._new_pool()
            raise BackendError(
                "a face analysis worker died (out of memory?); try the search again"
            ) from None

    def analyse(
        self, rgb: RGB, boxes: list[Box] | None = None, *, ages: bool = True
    ) -> list[AnalysedFace]:
        if boxes is not None:  # stored boxes (a model switch) are not a server's work
            raise InvalidArgument("the server's analysis pool detects faces itself")
        result: list[AnalysedFace] = self._run(_analyse, rgb, ages)
        return result

    def detect(self, rgb: RGB) -> list[Any]:
        result: list[Any] = self._run(_detect, rgb)
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
