"""The ingest job runner: a job says it ended only after the sweep of its unstored files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from countenance.api.jobs import Jobs
from countenance.errors import InvalidArgument
from countenance.types import IngestSummary


def _wait(jobs: Jobs, job_id: str) -> dict[str, Any]:
    """Poll as a client does, until the job says it ended."""
    while (job := jobs.get(job_id).to_json())["state"] not in {"done", "failed"}:
        time.sleep(0.01)
    return job


@pytest.mark.parametrize("fails", [False, True])
def test_a_job_ends_after_the_sweep_that_sees_its_files_free(fails: bool) -> None:
    seen: list[tuple[str, bool]] = []
    jobs: Jobs

    def ingest(
        source: str, files: list[Path], actor: str, progress: Callable[[int, int], None]
    ) -> IngestSummary:
        progress(len(files), len(files))
        if fails:
            raise InvalidArgument("no such photos")
        return IngestSummary(source=source, photos=len(files))

    def sweep() -> None:
        (job,) = jobs.all()
        seen.append((job.state, job.id in jobs.busy_ids()))

    jobs = Jobs(ingest, after=sweep)
    try:
        job = jobs.receive("family", actor="ops")
        assert job.id in jobs.busy_ids()  # files being received stay
        jobs.start(job, [Path("a.jpg"), Path("b.jpg")])
        ended = _wait(jobs, job.id)
    finally:
        jobs.shutdown()
    # while the sweep ran, a poller still saw the job running, and its files were free to go
    assert seen == [("running", False)]
    assert ended["state"] == ("failed" if fails else "done")
    assert ended["finished_at"] is not None
    if fails:
        assert ended["error"] == "no such photos" and ended["summary"] is None
    else:
        assert ended["summary"]["photos"] == 2 and ended["done"] == 2


def test_a_failing_sweep_still_ends_the_job() -> None:
    def ingest(
        source: str, files: list[Path], actor: str, progress: Callable[[int, int], None]
    ) -> IngestSummary:
        return IngestSummary(source=source, photos=1)

    def sweep() -> None:
        raise OSError("disk gone")

    jobs = Jobs(ingest, after=sweep)
    try:
        job = jobs.start(jobs.receive("family", actor="ops"), [Path("a.jpg")])
        ended = _wait(jobs, job.id)
    finally:
        jobs.shutdown()
    assert ended["state"] == "done"
    assert jobs.busy_ids() == set()
