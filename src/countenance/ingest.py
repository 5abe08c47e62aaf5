"""The per-photo work of ingest (decode, detect, align, embed, quality), runnable in worker
processes; the engine keeps every catalog and index write in the main process.

Example::

    analyser = PhotoAnalyser(settings)
    result = analyser(data, "photo.jpg")
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from countenance import imaging
from countenance.catalog.sql import FaceRecord
from countenance.config import Settings
from countenance.errors import BadImage
from countenance.vision.pipeline import AnalysedFace, FacePipeline


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one photo yielded: its size and format and every face found, or why it failed."""

    width: int = 0
    height: int = 0
    format: str = ""
    faces: tuple[FaceRecord, ...] = ()
    error: str | None = None
    error_reason: str | None = None


def face_record(face: AnalysedFace) -> FaceRecord:
    return FaceRecord(
        box=face.detected.box,
        landmarks=face.detected.landmarks,
        detector=face.detected.detector,
        det_score=face.detected.score,
        quality=face.quality.score,
        sharpness=face.quality.sharpness,
        skip_reason=face.quality.skip_reason,
        embedding=face.embedding,
    )


class PhotoAnalyser:
    """Bytes in, :class:`Analysis` out; never raises for a bad photo."""

    def __init__(
        self, settings: Settings, pipeline: FacePipeline | None = None, *, ages: bool = True
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline or FacePipeline.from_settings(settings)
        self.ages = ages

    def __call__(self, data: bytes, name: str) -> Analysis:
        try:
            decoded = imaging.decode(data, max_pixels=self.settings.max_pixels, name=name)
        except BadImage as exc:
            return Analysis(error=str(exc), error_reason=exc.reason)
        try:
            faces = self.pipeline.analyse(decoded.rgb, ages=self.ages)
        except Exception as exc:
            # one photo the models choke on never stops the batch
            return Analysis(
                error=f"{name}: face analysis failed: {exc}", error_reason="analysis_failed"
            )
        return Analysis(
            width=decoded.width,
            height=decoded.height,
            format=decoded.format,
            faces=tuple(face_record(f) for f in faces),
        )


_worker: PhotoAnalyser | None = None


def _init_worker(settings: Settings) -> None:
    global _worker
    _worker = PhotoAnalyser(settings)


def _analyse_in_worker(data: bytes, name: str) -> Analysis:
    assert _worker is not None, "worker not initialised"
    return _worker(data, name)


def worker_count(requested: int) -> int:
    """``requested`` workers, or one per core available to this process when 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


Job = tuple[bytes, str]
T = TypeVar("T")


def run_analyses(
    jobs: Iterator[tuple[T, Job]],
    workers: int,
    settings: Settings,
    local: Callable[[], PhotoAnalyser],
    *,
    worker_init: Callable[[Settings], None] | None = None,
    worker_task: Callable[[bytes, str], Analysis] | None = None,
) -> Iterator[tuple[T, Analysis]]:
    """Analyse each job, yielding ``(tag, analysis)`` in submission order.

    One worker runs in this process; more run in a process pool (spawned, so each loads the
    models once) with a bounded number of photos in flight, so memory stays flat. A worker
    that dies takes only the photos in flight with it: they are reported, and a fresh pool
    goes on. ``worker_init`` and ``worker_task`` replace the per-process set-up and work
    (module-level functions, for tests).
    """
    init = worker_init or _init_worker
    task = worker_task or _analyse_in_worker
    if workers <= 1:
        analyser = local()
        for tag, (data, name) in jobs:
            yield tag, analyser(data, name)
        return
    context = multiprocessing.get_context("spawn")
    pending: list[tuple[T, Future[Analysis]]] = []
    pool = _pool(workers, context, settings, init)

    def renew() -> None:
        nonlocal pool
        pool.shutdown(wait=False, cancel_futures=True)
        pool = _pool(workers, context, settings, init)

    def drain(limit: int) -> Iterator[tuple[T, Analysis]]:
        while len(pending) > limit:
            tag, analysis = _next_result(pending)
            yield tag, analysis
            if analysis.error_reason == "worker_died":
                # a worker died (killed, out of memory, a crash in native code): every photo
                # in flight went with it and is reported; a fresh pool takes the rest
                while pending:
                    yield _next_result(pending)
                renew()

    try:
        for tag, (data, name) in jobs:
            try:
                future = pool.submit(task, data, name)
            except BrokenProcessPool:
                # the pool broke before the dead worker's photos were collected
                yield from drain(0)
                renew()
                future = pool.submit(task, data, name)
            pending.append((tag, future))
            yield from drain(workers * 3 - 1)
        yield from drain(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pool(
    workers: int, context: Any, settings: Settings, init: Callable[[Settings], None]
) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=context, initializer=init, initargs=(settings,))


def _next_result(pending: list[tuple[T, Future[Analysis]]]) -> tuple[T, Analysis]:
    tag, future = pending.pop(0)
    try:
        return tag, future.result()
    except BrokenProcessPool:
        return tag, Analysis(
            error="the worker process died while this photo was in flight; run the ingest "
            "again to retry it",
            error_reason="worker_died",
        )
