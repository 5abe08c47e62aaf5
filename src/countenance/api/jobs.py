"""Ingest jobs: uploaded photos are saved into the data directory and ingested in a
background thread, one job at a time, with progress a client (or the sources page) polls.

Example::

    job = jobs.submit("family", [Path("data/uploads/family/1/a.jpg")], actor="ops")
    jobs.get(job.id).to_json()   # {"id": "...", "state": "running", "done": 1, "total": 3, ...}
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from countenance.errors import CountenanceError, NotFound
from countenance.types import IngestSummary

log = logging.getLogger("countenance.api")

KEEP_FINISHED = 200  # finished jobs remembered for polling; older ones are forgotten


@dataclass
class Job:
    """One ingest job: ``state`` is receiving (its files are being saved), queued, running,
    done or failed."""

    id: str
    source: str
    actor: str
    total: int
    state: str = "queued"
    done: int = 0
    created_at: str = field(default_factory=lambda: _now())
    finished_at: str | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "actor": self.actor,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "summary": self.summary,
            "error": self.error,
        }


class Jobs:
    """Runs ingest jobs one after another on a worker thread.

    ``ingest(source, files, actor, progress)`` does the work (the engine's ingest under the
    server's write lock); ``on_done`` sees each summary (metrics); ``after`` runs when a
    job's ingest ends, before the job says so (the sweep of uploaded files it did not store).
    """

    def __init__(
        self,
        ingest: Callable[[str, list[Path], str, Callable[[int, int], None]], IngestSummary],
        on_done: Callable[[IngestSummary], None] | None = None,
        after: Callable[[], object] | None = None,
    ) -> None:
        self._ingest = ingest
        self._on_done = on_done
        self._after = after
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._settling: str | None = None  # the job whose ingest ended and whose files are swept
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")

    def next_id(self) -> str:
        return f"{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{next(self._ids)}"

    def receive(self, source: str, *, actor: str) -> Job:
        """A new job whose files are about to be saved (the sweep leaves them alone)."""
        job = Job(id=self.next_id(), source=source, actor=actor, total=0, state="receiving")
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def start(self, job: Job, files: list[Path]) -> Job:
        """Queue the job on its saved files."""
        job.total, job.state = len(files), "queued"
        self._pool.submit(self._run, job, files)
        return job

    def fail(self, job: Job, error: str) -> None:
        job.state, job.error, job.finished_at = "failed", error, _now()

    def busy_ids(self) -> set[str]:
        """Jobs whose files must stay: being received, queued or running."""
        with self._lock:
            ended = {"done", "failed"}
            return {
                j.id for j in self._jobs.values() if j.state not in ended and j.id != self._settling
            }

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no ingest job {job_id!r}")
        return job

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def running(self) -> int:
        with self._lock:
            return sum(j.state in {"receiving", "queued", "running"} for j in self._jobs.values())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: Job, files: list[Path]) -> None:
        job.state = "running"

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        summary: IngestSummary | None = None
        error: str | None = None
        try:
            summary = self._ingest(job.source, files, job.actor, progress)
        except CountenanceError as exc:
            error = str(exc)
        except Exception as exc:  # a job never takes the server down
            log.exception("ingest job %s failed", job.id)
            error = f"internal error: {type(exc).__name__}"
        # the sweep runs before the job says it ended, so a client that sees "done" sees the
        # uploads folder as it stays: the files the job did not store are already gone
        self._sweep_after(job)
        if summary is not None:
            job.summary, job.done = summary.to_json(), job.total
            if self._on_done is not None:
                self._on_done(summary)
        job.error, job.finished_at = error, _now()
        job.state = "done" if summary is not None else "failed"

    def _sweep_after(self, job: Job) -> None:
        """Run ``after`` with this job's files no longer held back from the sweep."""
        if self._after is None:
            return
        with self._lock:
            self._settling = job.id
        try:
            self._after()
        except Exception:  # a failed sweep is retried by the next one
            log.exception("sweeping uploads after job %s failed", job.id)
        finally:
            with self._lock:
                self._settling = None

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in {"done", "failed"}]
        for job in sorted(finished, key=lambda j: j.created_at)[:-KEEP_FINISHED]:
            del self._jobs[job.id]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
