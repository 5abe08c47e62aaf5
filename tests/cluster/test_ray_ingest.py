"""Ingest through a Ray cluster on loopback builds the store a local ingest builds: the same
photos, faces (boxes, landmarks, embeddings), persons, sources and audit events; a worker killed
mid-ingest and a driver killed mid-run change none of it.

The photos are ../shared/faces/deepface (64 photos, 73 faces, 3 files that are no photos),
analysed by the default model. Batches are by count only (ingest_batch 8, no time limit), so
both sides commit the same batches and write the same audit events.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import BackendUnavailable, InvalidArgument
from tests.cluster.conftest import RayCluster
from tests.conftest import REPO, need_faces, need_model

BATCH = 8
SOURCE = "archive"


def settings(data: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=data,
        model="faceplugin",
        workers=2,
        ingest_batch=BATCH,
        ingest_batch_seconds=3600.0,
        **changes,
    )


def ingest(data: Path, photos: Path, cluster: str | None = None, **kw: Any) -> Any:
    with Engine(settings(data)) as db:
        if not db.catalog.list_sources():
            db.add_source(SOURCE, basis="legitimate_interest")
        return db.ingest(photos, source=SOURCE, cluster=cluster, actor="tester", **kw)


def snapshot(data: Path) -> dict[str, Any]:
    """What the store holds, independent of row ids and times."""
    db = sqlite3.connect(data / "catalog.db")
    photos = {
        sha: row
        for sha, *row in db.execute(
            "SELECT sha256, uri, width, height, format, bytes, n_faces, jurisdiction, minors,"
            " phash, (SELECT sha256 FROM photos o WHERE o.id = p.duplicate_of) FROM photos p"
        )
    }
    faces = {}
    for sha, *box, landmarks, det, quality, skip, embedding, person in db.execute(
        "SELECT p.sha256, x1, y1, x2, y2, landmarks, det_score, quality, skip_reason,"
        " embedding, person_id FROM faces f JOIN photos p ON p.id = f.photo_id"
    ):
        key = (sha, *box)
        assert key not in faces, f"face stored twice: {key}"
        vector = None if embedding is None else np.frombuffer(embedding, dtype=np.float32)
        faces[key] = (json.loads(landmarks), det, quality, skip, vector, person)
    by_person: dict[int, set[tuple[Any, ...]]] = {}
    for key, (*_, person) in faces.items():
        if person is not None:
            by_person.setdefault(person, set()).add(key)
    events = Counter()
    committed: list[str] = []
    for action, details in db.execute("SELECT action, details FROM audit_events"):
        d = json.loads(details or "{}")
        events[(action, d.get("op"))] += 1
        committed += d.get("sha256", []) if d.get("op") == "commit" else []
    sources = sorted(db.execute("SELECT name, kind, lawful_basis FROM sources"))
    db.close()
    return {
        "photos": photos,
        "faces": faces,
        "persons": sorted(sorted(p) for p in by_person.values()),
        "events": events,
        "committed": committed,
        "sources": sources,
    }


def assert_same_store(ours: dict[str, Any], theirs: dict[str, Any], *, events: bool = True) -> None:
    assert ours["photos"] == theirs["photos"]
    assert ours["faces"].keys() == theirs["faces"].keys()
    for key, (landmarks, det, quality, skip, vector, _) in ours["faces"].items():
        other = theirs["faces"][key]
        np.testing.assert_allclose(landmarks, other[0], atol=1e-3)
        assert skip == other[3] and det == pytest.approx(other[1], abs=1e-5)
        assert quality == (None if other[2] is None else pytest.approx(other[2], abs=1e-5))
        if vector is None:
            assert other[4] is None
        else:
            np.testing.assert_allclose(vector, other[4], atol=1e-5)
    assert ours["persons"] == theirs["persons"]
    assert ours["sources"] == theirs["sources"]
    assert sorted(ours["committed"]) == sorted(theirs["committed"])
    assert len(set(ours["committed"])) == len(ours["committed"]), "a photo committed twice"
    if events:
        assert ours["events"] == theirs["events"]


@pytest.fixture(scope="module")
def photos() -> Path:
    need_model("model/fr_feature.onnx")
    return need_faces("deepface")


@pytest.fixture(scope="module")
def local_store(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The store a local ingest (a process pool of 2) builds."""
    data = tmp_path_factory.mktemp("local")
    summary = ingest(data, photos)
    assert summary.photos == 64 and summary.faces >= 70
    return snapshot(data)


def analyser_pids() -> set[int]:
    """The processes of this machine running the pool's actors (Ray names them after it)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if command.startswith(b"ray::Analyser"):
            pids.add(int(entry.name))
    return pids


def test_the_cluster_builds_the_store_a_local_ingest_builds(
    photos: Path, local_store: dict[str, Any], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    summary = ingest(tmp_path, photos, cluster=ray_cluster.address)
    assert summary.photos == 64 and summary.bad_files == {"not_an_image": 3}
    ours = snapshot(tmp_path)
    assert ours["events"][("ingest", "commit")] == 8  # 64 photos in batches of 8
    assert_same_store(ours, local_store)


def test_ray_client_addresses_build_the_same_store(
    photos: Path, local_store: dict[str, Any], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    ingest(tmp_path, photos, cluster=ray_cluster.client)
    assert_same_store(snapshot(tmp_path), local_store)


def test_a_worker_killed_mid_ingest_loses_and_repeats_nothing(
    photos: Path, local_store: dict[str, Any], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    killed: list[int] = []
    after: list[set[int]] = []

    def progress(done: int, total: int) -> None:
        if done == 20 and not killed:
            workers = sorted(analyser_pids())
            assert len(workers) == 2, workers
            os.kill(workers[0], signal.SIGKILL)  # a photo or more in flight with it
            killed.append(workers[0])
        if done == total:
            after.append(analyser_pids())

    summary = ingest(tmp_path, photos, cluster=ray_cluster.address, progress=progress)
    assert killed, "no worker was killed"
    assert killed[0] not in after[0] and len(after[0]) == 2  # Ray started another
    assert summary.photos == 64 and "worker_died" not in summary.bad_files
    assert_same_store(snapshot(tmp_path), local_store)


def test_a_driver_killed_mid_run_resumes_on_the_next_run(
    photos: Path, local_store: dict[str, Any], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    with Engine(settings(tmp_path)) as db:
        db.add_source(SOURCE, basis="legitimate_interest")
    env = {
        **os.environ,
        "COUNTENANCE_MODEL": "faceplugin",
        "COUNTENANCE_INGEST_BATCH": str(BATCH),
        "COUNTENANCE_INGEST_BATCH_SECONDS": "3600",
    }
    command = [sys.executable, "-m", "countenance", "--data", str(tmp_path), "ingest"]
    command += [str(photos), "--source", SOURCE, "--workers", "2"]
    command += ["--cluster", ray_cluster.address]
    driver = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stored = 0
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and driver.poll() is None:
            stored = stored_photos(tmp_path)
            if stored >= 2 * BATCH:
                break
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert 2 * BATCH <= stored < 64, f"the driver was not killed mid-run ({stored} stored)"
    partial = stored_photos(tmp_path)
    summary = ingest(tmp_path, photos, cluster=ray_cluster.address)
    assert summary.unchanged == partial and summary.photos == 64 - partial
    ours = snapshot(tmp_path)
    assert ours["events"][("ingest", "run")] == 1  # the killed run never finished
    assert_same_store(ours, local_store, events=False)


def stored_photos(data: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT count(*) FROM photos").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:  # not created yet, or busy
        return 0


def test_a_cluster_nothing_listens_at_is_refused_clearly(tmp_path: Path) -> None:
    with Engine(settings(tmp_path)) as db:
        db.add_source(SOURCE, basis="legitimate_interest")
        folder = tmp_path / "none"
        folder.mkdir()
        with pytest.raises(BackendUnavailable, match=r"no Ray cluster at 127\.0\.0\.1:9"):
            db.ingest(folder, source=SOURCE, cluster="127.0.0.1:9")
        with pytest.raises(InvalidArgument, match="ray://HOST:PORT"):
            db.ingest(folder, source=SOURCE, cluster="http://127.0.0.1:9/x")


def test_a_failed_connection_leaves_the_process_able_to_connect(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """Something that is no Ray Client server at a ray:// address: the ingest is refused (after
    Ray Client's 30 s), and the next one, at the real cluster, connects (a failed init of Ray's
    left half a connection behind, on which every later one failed)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            while True:
                listener.accept()[0].close()

    threading.Thread(target=hang_up, daemon=True).start()
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "one.jpg").write_bytes((need_faces("deepface") / "img1.jpg").read_bytes())
    try:
        with pytest.raises(
            BackendUnavailable, match=rf"no Ray cluster at ray://127\.0\.0\.1:{port}"
        ):
            ingest(tmp_path / "data", folder, cluster=f"ray://127.0.0.1:{port}")
    finally:
        listener.close()
    assert ingest(tmp_path / "data", folder, cluster=ray_cluster.address).photos == 1


def test_an_upload_to_the_api_server_is_analysed_on_the_cluster(
    photos: Path, local_store: dict[str, Any], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """A server whose ``cluster`` setting names a Ray cluster runs its upload jobs there (on
    its jobs thread): the faces stored are those a local ingest finds in the same files."""
    from fastapi.testclient import TestClient

    from countenance.server import create_app

    config = settings(tmp_path, cluster=ray_cluster.address)
    files = sorted(p for p in photos.glob("img*.jpg"))[:8]
    with Engine(config) as engine:
        key = engine.catalog.key_store(engine.audit).create("up-1", "ingest", actor="test")[0]
        engine.add_source(SOURCE, basis="legitimate_interest")
        with TestClient(create_app(config, engine=engine, load_models=False)) as client:
            headers = {"Authorization": f"Bearer {key}"}
            upload = [("photos", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
            job = client.post(f"/v1/sources/{SOURCE}/photos", headers=headers, files=upload)
            assert job.status_code == 202, job.text
            job_id, deadline = job.json()["id"], time.monotonic() + 300
            state = job.json()
            while state["state"] in {"queued", "running"} and time.monotonic() < deadline:
                time.sleep(0.5)
                state = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert state["state"] == "done", state
    assert state["summary"]["photos"] == len(files)
    stored = snapshot(tmp_path)
    ours, shas = stored["faces"], set(stored["photos"])
    assert len(shas) == len(files)
    theirs = {key: face for key, face in local_store["faces"].items() if key[0] in shas}
    assert ours.keys() == theirs.keys() and len(ours) >= len(files) - 1
    for key, face in ours.items():
        if face[4] is None:
            assert theirs[key][4] is None
        else:
            np.testing.assert_allclose(face[4], theirs[key][4], atol=1e-5)
