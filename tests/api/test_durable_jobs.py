"""Upload jobs are durable: a server killed mid-job resumes it at its next start, and no
uploaded file is deleted without an audit event (issue 17).

The kill is real and deterministic: the server runs in a subprocess whose face detector
(the fakes of tests/unit) waits for the test to open a gate, then ends the process with
``os._exit`` when asked for the eighth photo, after seven are stored. Synthetic photos
only: no real face is needed to count what was stored.
"""

from __future__ import annotations

import io
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from countenance.config import Settings
from countenance.engine import Engine
from tests.conftest import REPO
from tests.unit.fakes import fake_pipeline

KILLED = 86  # the exit status of the server the detector kills
PHOTOS, KILL_AT = 16, 7  # photos uploaded; photos stored before the kill

# The server of these tests: the real app and uvicorn on 127.0.0.1 over the fake pipeline;
# with a gate, its detector waits for the gate file, then kills the process (os._exit: no
# cleanup runs, as with kill -9) when asked for the photo after the first KILL_AT.
SERVER = """
import os, sys, time
from pathlib import Path
import uvicorn
from countenance.server import create_app
from countenance.config import Settings
from tests.unit.fakes import fake_pipeline

data, gate = sys.argv[1], sys.argv[4]
port, kill_at, status = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])

class DyingDetector:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def detect(self, rgb):
        deadline = time.monotonic() + 120
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.calls == kill_at:
            os._exit(status)
        self.calls += 1
        return self.inner.detect(rgb)

pipeline = fake_pipeline()
if kill_at >= 0:
    pipeline.detector = DyingDetector(pipeline.detector)
app = create_app(
    Settings(data_dir=data, workers=1, ingest_batch=1), pipeline=pipeline, load_models=False
)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def photo(seed: int) -> bytes:
    """A PNG of random coloured blocks: every seed a different photo, none white (the fake
    detector's face is the non-white area) and none a near-duplicate of another."""
    blocks = np.random.default_rng(seed).integers(0, 240, size=(8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(blocks).resize((160, 160), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def prepare(data: Path) -> dict[str, str]:
    """A store with source ``family`` and one key per role used here."""
    with Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline()) as db:
        db.add_source("family", basis="consent", actor="test")
        store = db.catalog.key_store(db.audit)
        return {
            role: store.create(f"{role}-1", role, actor="test")[0] for role in ("ingest", "auditor")
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``countenance``'s app in a subprocess on 127.0.0.1."""

    def __init__(self, data: Path, *, kill_at: int = -1, gate: Path | None = None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = data.parent / f"server-{port}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
        args = [str(data), str(port), str(kill_at), str(gate or ""), str(KILLED)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, *args], cwd=REPO, env=env, stdout=log, stderr=log
            )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server ended: {self.log.read_text()}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def stored_uris(data: Path) -> set[str]:
    with sqlite3.connect(data / "catalog.db", timeout=30) as conn:
        return {uri for (uri,) in conn.execute("select uri from photos")}


def audited(data: Path, action: str) -> list[dict[str, Any]]:
    """The details of every audit event of ``action``, oldest first."""
    with Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline()) as db:
        return [e.details for e in db.audit.events(action=action, limit=1000)]


def stored_sha256(data: Path) -> set[str]:
    with sqlite3.connect(data / "catalog.db", timeout=30) as conn:
        return {digest for (digest,) in conn.execute("select sha256 from photos")}


def uploaded(data: Path) -> list[Path]:
    return sorted(p for p in (data / "uploads").rglob("*") if p.is_file())


def wait_done(http: httpx.Client, job_id: str, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        answer = http.get(f"/v1/jobs/{job_id}", headers=auth(key))
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["state"] in {"done", "failed"}:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_a_server_killed_mid_job_resumes_it_after_restart(
    tmp_path: Path, servers: list[Server]
) -> None:
    data, gate = tmp_path / "data", tmp_path / "gate"
    keys = prepare(data)
    first = Server(data, kill_at=KILL_AT, gate=gate)
    servers.append(first)
    files = [("photos", (f"p{i:02d}.png", photo(i), "image/png")) for i in range(PHOTOS)]
    started = first.http.post(
        "/v1/sources/family/photos", headers=auth(keys["ingest"]), files=files
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["total"] == PHOTOS

    # the job is on disk before it runs: a private record, written whole
    record = data / "jobs" / f"{job['id']}.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(record.parent.stat().st_mode) == 0o700

    gate.touch()  # let the ingest run into the kill
    assert first.proc.wait(timeout=120) == KILLED
    assert len(stored_uris(data)) == KILL_AT  # the kill came mid-job, after 7 photos
    # each photo stored (a batch of one here) was audited in its own commit; no run ended
    commits = audited(data, "ingest")
    assert [c["op"] for c in commits] == ["commit"] * KILL_AT
    assert {d for c in commits for d in c["sha256"]} == stored_sha256(data)
    assert len(uploaded(data)) == PHOTOS

    second = Server(data)
    servers.append(second)
    ended = wait_done(second.http, job["id"], keys["ingest"])
    assert ended["state"] == "done", ended
    assert ended["resumed"] == 1
    summary = ended["summary"]
    # every uploaded photo is accounted for: the 7 stored before the kill by the dedupe
    assert summary["seen"] == PHOTOS
    assert (summary["photos"], summary["unchanged"]) == (PHOTOS - KILL_AT, KILL_AT)
    assert not summary["bad_files"] and not summary["errors"]
    events = second.http.get(
        "/v1/audit", params={"action": "ingest"}, headers=auth(keys["auditor"])
    )
    ingests = events.json()["events"]
    (ingest,) = [e for e in ingests if e["details"]["op"] == "run"]
    assert sum(e["details"].get("photos", 0) for e in ingests if e is not ingest) == PHOTOS
    assert ingest["actor"] == "ingest-1"
    assert (ingest["details"]["photos"], ingest["details"]["unchanged"]) == (9, 7)
    verified = second.http.get("/v1/audit/verify", headers=auth(keys["auditor"])).json()
    assert verified["ok"] is True, verified
    second.stop()

    # nothing uploaded was deleted: every file is there, and each is a stored photo
    files_now = uploaded(data)
    assert len(files_now) == PHOTOS
    assert {str(p.resolve()) for p in files_now} == stored_uris(data)
    uploads = [d for d in audited(data, "upload")]
    assert [(d["op"], d["job"]) for d in uploads] == [
        ("receive", job["id"]),
        ("resume", job["id"]),
    ]
    assert uploads[0]["files"] == PHOTOS


# In-process: the app over a real engine (fake models) on a data directory, reopened as a
# restarted server would be.


@pytest.fixture()
def open_app(tmp_path: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from countenance.server import create_app

    opened: list[tuple[Any, Engine]] = []

    def start(data: Path) -> Any:
        for client, engine in opened:
            client.__exit__(None, None, None)
            engine.close()
        opened.clear()
        settings = Settings(data_dir=data, workers=1)
        engine = Engine(settings, pipeline=fake_pipeline())
        client = TestClient(create_app(settings, engine=engine, load_models=False))
        client.__enter__()
        opened.append((client, engine))
        return client

    yield start
    for client, engine in opened:
        client.__exit__(None, None, None)
        engine.close()


def source_id(client: Any) -> str:
    return str(client.app.state.server.engine.catalog.get_source("family").id)


def discards(client: Any) -> list[dict[str, Any]]:
    engine = client.app.state.server.engine
    return [e.details for e in engine.audit.events(action="upload") if e.details["op"] == "discard"]


def test_files_a_job_did_not_store_are_deleted_with_an_audit_event(
    tmp_path: Path, open_app: Any
) -> None:
    data = tmp_path / "data"
    keys = prepare(data)
    client = open_app(data)
    good = photo(1)
    files = [
        ("photos", ("a.png", good, "image/png")),
        ("photos", ("copy.png", good, "image/png")),  # a duplicate: not stored again
        ("photos", ("notes.txt", b"not a photo", "text/plain")),  # a bad file
    ]
    job = client.post("/v1/sources/family/photos", headers=auth(keys["ingest"]), files=files).json()
    ended = wait_done(client, job["id"], keys["ingest"])
    assert ended["summary"]["photos"] == 1, ended
    assert [p.name for p in uploaded(data)] == ["0000-a.png"]
    assert discards(client) == [
        {"op": "discard", "reason": "not_stored", "files": 2, "jobs": {job["id"]: 2}}
    ]

    # a folder of no job (a server from before jobs were kept): swept at start-up, audited
    stray = data / "uploads" / source_id(client) / "20200101000000-1"
    stray.mkdir()
    (stray / "0000-old.png").write_bytes(photo(2))
    client = open_app(data)
    assert [p.name for p in uploaded(data)] == ["0000-a.png"]
    assert discards(client)[-1] == {
        "op": "discard",
        "reason": "no_job",
        "files": 1,
        "jobs": {"20200101000000-1": 1},
    }
    # a finished job still answers after the restart, as it ended
    answer = client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["ingest"]))
    assert answer.status_code == 200 and answer.json()["summary"] == ended["summary"]


def test_a_job_cut_off_while_received_fails_and_its_files_go_audited(
    tmp_path: Path, open_app: Any
) -> None:
    from countenance.api.state import ServerState

    data = tmp_path / "data"
    keys = prepare(data)
    # a server that stops while an upload's files are being saved: its job says receiving
    with Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline()) as db:
        state = ServerState.open(db.settings, engine=db)
        job = state.jobs.receive("family", actor="ingest-1")
        folder = data / "uploads" / str(db.catalog.get_source("family").id) / job.id
        folder.mkdir(parents=True)
        (folder / "0000-half.png").write_bytes(photo(3)[:100])
        state.close()

    client = open_app(data)
    answer = client.get(f"/v1/jobs/{job.id}", headers=auth(keys["ingest"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "failed"
    assert "stopped" in answer.json()["error"]
    assert not uploaded(data)
    engine = client.app.state.server.engine
    ops = [(e.details["op"], e.details.get("reason")) for e in engine.audit.events(action="upload")]
    assert ops == [("interrupted", None), ("discard", "job_failed")]
    assert discards(client)[0]["files"] == 1


def test_a_queued_job_left_by_a_shutdown_runs_at_the_next_start(
    tmp_path: Path, open_app: Any
) -> None:
    from countenance.api.jobs import Job, JobStore

    data = tmp_path / "data"
    keys = prepare(data)
    # what a server stopped with a job still queued leaves: its files, and its record
    with Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline()) as db:
        folder = data / "uploads" / str(db.catalog.get_source("family").id) / "20200101000000-1"
    folder.mkdir(parents=True)
    files = [folder / f"{n:04d}-p.png" for n in range(3)]
    for n, path in enumerate(files):
        path.write_bytes(photo(10 + n))
    job = Job(id=folder.name, source="family", actor="ingest-1", total=3, files=files)
    JobStore(data / "jobs").save(job)

    client = open_app(data)
    ended = wait_done(client, job.id, keys["ingest"])
    assert ended["state"] == "done" and ended["summary"]["photos"] == 3, ended
    assert ended["resumed"] == 1
    assert len(uploaded(data)) == 3 and not discards(client)
