"""Ingest jobs: uploaded photos are saved into the data directory and ingested in a
background thread, one job at a time, with progress a client (or the sources page) polls.

A job is durable when the runner has a :class:`JobStore`: its record (source, actor, files,
state, progress, summary) is a JSON file in the data directory, replaced atomically at every
change, so a server that stops mid-job finds it on start-up (:meth:`Jobs.recover`) and runs
it again (:meth:`Jobs.resume`); the ingest skips the photos already stored by their sha256.

Example::

    jobs = Jobs(ingest, store=JobStore(Path("data/jobs")))
    job = jobs.start(jobs.receive("family", actor="ops"), [Path("data/uploads/1/J/a.jpg")])
    jobs.get(job.id).to_json()   # {"id": "...", "state": "running", "done": 1, "total": 3, ...}
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from countenance.errors import CountenanceError, NotFound
from countenance.files import write_private
from countenance.types import IngestSummary

log = logging.getLogger("countenance.api")

KEEP_FINISHED = 200  # finished jobs remembered for polling; older ones are forgotten
PROGRESS_SAVE_SECONDS = 1.0  # a record is rewritten for progress at most this often
UNFINISHED = frozenset({"receiving", "queued", "running"})
ENDED = frozenset({"done", "failed"})
RECORD_VERSION = 1


@dataclass
class Job:
    """One ingest job: ``state`` is receiving (its files are being saved), queued, running,
    done or failed; ``resumed`` counts the restarts that ran it again."""

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
    resumed: int = 0
    files: list[Path] = field(default_factory=list)  # what it ingests: never shown to clients

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
            "resumed": self.resumed,
        }

    def to_record(self) -> dict[str, Any]:
        """What :class:`JobStore` keeps: the JSON a client sees, and the files."""
        return {"version": RECORD_VERSION, **self.to_json(), "files": [str(p) for p in self.files]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        return cls(
            id=str(record["id"]),
            source=str(record["source"]),
            actor=str(record["actor"]),
            total=int(record["total"]),
            state=str(record["state"]),
            done=int(record.get("done", 0)),
            created_at=str(record["created_at"]),
            finished_at=record.get("finished_at"),
            summary=record.get("summary"),
            error=record.get("error"),
            resumed=int(record.get("resumed", 0)),
            files=[Path(p) for p in record.get("files", [])],
        )


_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


class JobStore:
    """Job records, one ``ID.json`` per job in ``folder`` (mode 0700; each file 0600).

    A record is written to a temporary file, flushed to disk and renamed over the old one, so
    a kill at any moment leaves the old record or the new, never a torn one.

    Example::

        store = JobStore(Path("data/jobs"))
        store.save(job)
        [j.id for j in store.load()]
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.unreadable: set[str] = set()  # ids whose record would not load (see load)
        self._lock = threading.Lock()  # one writer at a time: the last save is the newest

    def path(self, job_id: str) -> Path:
        if not _ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / f"{job_id}.json"

    def has(self, job_id: str) -> bool:
        return self.path(job_id).exists()

    def save(self, job: Job) -> None:
        with self._lock:
            data = json.dumps(job.to_record(), sort_keys=True).encode()
            self._make_folder()
            write_private(self.path(job.id), data)
            fsync_dir(self.folder)

    def delete(self, job_id: str) -> None:
        with self._lock:
            self.path(job_id).unlink(missing_ok=True)

    def load(self) -> list[Job]:
        """Every readable record. One that does not parse is left where it is and its id
        noted in :attr:`unreadable` (its files are then kept, not swept)."""
        if not self.folder.is_dir():
            return []
        jobs = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a save cut off before its rename
                continue
            if path.suffix != ".json" or not _ID.match(path.stem):
                continue
            try:
                job = Job.from_record(json.loads(path.read_text()))
                if job.id != path.stem:
                    raise ValueError(f"it names job {job.id!r}")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("cannot read job record %s (its files are kept): %s", path, exc)
                self.unreadable.add(path.stem)
                continue
            jobs.append(job)
        return jobs

    def _make_folder(self) -> None:
        if not self.folder.is_dir():
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.chmod(0o700)  # mkdir's mode is masked by the umask


class Jobs:
    """Runs ingest jobs one after another on a worker thread.

    ``ingest(source, files, actor, progress)`` does the work (the engine's ingest under the
    server's write lock); ``on_done`` sees each summary (metrics); ``after`` runs when a
    job's ingest ends, before the job says so (the sweep of uploaded files it did not store);
    with a ``store`` every job is recorded there and survives a restart.
    """

    def __init__(
        self,
        ingest: Callable[[str, list[Path], str, Callable[[int, int], None]], IngestSummary],
        on_done: Callable[[IngestSummary], None] | None = None,
        after: Callable[[], object] | None = None,
        store: JobStore | None = None,
    ) -> None:
        self._ingest = ingest
        self._on_done = on_done
        self._after = after
        self._store = store
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # the job whose ingest ended and whose files are swept, and whether it failed
        self._settling: tuple[str, bool] | None = None
        self._recovered: list[Job] = []  # found unfinished by recover, not yet resumed
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")

    def next_id(self) -> str:
        while True:
            job_id = f"{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{next(self._ids)}"
            # the counter starts again with each process: an id of an earlier run is taken
            if job_id not in self._jobs and (self._store is None or not self._store.has(job_id)):
                return job_id

    def receive(self, source: str, *, actor: str) -> Job:
        """A new job whose files are about to be saved (the sweep leaves them alone)."""
        with self._lock:
            job = Job(id=self.next_id(), source=source, actor=actor, total=0, state="receiving")
            self._jobs[job.id] = job
            self._forget_old()
        self._save(job)
        return job

    def start(self, job: Job, files: list[Path]) -> Job:
        """Queue the job on its saved files."""
        job.files, job.total, job.state = list(files), len(files), "queued"
        self._save(job)  # before it runs: from here a restart resumes it
        self._pool.submit(self._run, job, job.files)
        return job

    def fail(self, job: Job, error: str) -> None:
        job.state, job.error, job.finished_at = "failed", error, _now()
        self._save(job)

    def recover(self) -> list[Job]:
        """Load the stored jobs (once, at start-up, before any new one). Returns those a
        stopped server left unfinished: queued or running ones are queued again (call
        :meth:`resume` to run them); one stopped while its files were received is failed,
        since its client was never told it started."""
        if self._store is None:
            return []
        found: list[Job] = []
        for job in self._store.load():
            with self._lock:
                self._jobs[job.id] = job
            if job.state not in UNFINISHED:
                continue
            if job.state == "receiving":
                job.state, job.finished_at = "failed", _now()
                job.error = "the server stopped while this upload was being received"
            else:
                job.state, job.resumed = "queued", job.resumed + 1
                self._recovered.append(job)
            found.append(job)
            self._save(job)
        with self._lock:
            self._forget_old()
        return found

    def resume(self) -> list[Job]:
        """Run the jobs :meth:`recover` queued again, oldest first."""
        resumed, self._recovered = self._recovered, []
        for job in sorted(resumed, key=lambda j: j.created_at):
            self._pool.submit(self._run, job, job.files)
        return resumed

    def busy_ids(self) -> set[str]:
        """Jobs whose files must stay: being received, queued or running."""
        with self._lock:
            settling = self._settling[0] if self._settling else None
            return {j.id for j in self._jobs.values() if j.state not in ENDED and j.id != settling}

    def phase(self, job_id: str) -> str:
        """What the sweep needs to know of a job: ``busy`` (its files stay), ``failed``,
        ``ended`` or ``unknown`` (no such job is remembered)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if self._settling is not None and self._settling[0] == job_id:
                return "failed" if self._settling[1] else "ended"
        if job is None:
            if self._store is not None and job_id in self._store.unreadable:
                return "busy"  # a record that did not load: keep what it may hold
            return "unknown"
        if job.state not in ENDED:
            return "busy"
        return "failed" if job.state == "failed" else "ended"

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
            return sum(j.state in UNFINISHED for j in self._jobs.values())

    def shutdown(self) -> None:
        """Finish the running job; queued ones stay queued in the store for the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: Job, files: list[Path]) -> None:
        job.state = "running"
        self._save(job)
        last_save = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal last_save
            job.done, job.total = done, total
            if time.monotonic() - last_save >= PROGRESS_SAVE_SECONDS:
                self._save(job)
                last_save = time.monotonic()

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
        self._sweep_after(job, failed=summary is None)
        if summary is not None:
            job.summary, job.done = summary.to_json(), job.total
            if self._on_done is not None:
                self._on_done(summary)
        job.error, job.finished_at = error, _now()
        job.state = "done" if summary is not None else "failed"
        self._save(job)

    def _sweep_after(self, job: Job, *, failed: bool) -> None:
        """Run ``after`` with this job's files no longer held back from the sweep."""
        if self._after is None:
            return
        with self._lock:
            self._settling = (job.id, failed)
        try:
            self._after()
        except Exception:  # a failed sweep is retried by the next one
            log.exception("sweeping uploads after job %s failed", job.id)
        finally:
            with self._lock:
                self._settling = None

    def _save(self, job: Job) -> None:
        if self._store is None:
            return
        try:
            self._store.save(job)
        except OSError:  # the job goes on; it is only the restart that would not find it
            log.exception("cannot record ingest job %s", job.id)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ENDED]
        for job in sorted(finished, key=lambda j: j.created_at)[:-KEEP_FINISHED]:
            del self._jobs[job.id]
            if self._store is not None:
                self._store.delete(job.id)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a new or renamed file in it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
