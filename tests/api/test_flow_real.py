"""The API end to end on real faces and the real models: upload photos into a source as an
ingest job, search, verify, subject access, erasure with its receipt, exclusions, audit and
metrics; and the browser session's rules for face crops."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import auth
from tests.conftest import need_faces

pytestmark = pytest.mark.slow

GALLERY = [
    "joe_biden/biden.jpg",
    "barack_obama/obama.jpg",
    "barack_obama/obama1.jpg",
    "kit_harington/john1.jpeg",
    "rose_leslie/img1.jpg",
]


def _file(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def ingest_gallery(client: Any, keys: dict[str, str], faces: Path) -> dict[str, Any]:
    created = client.post(
        "/v1/sources",
        headers=auth(keys["admin"]),
        json={"name": "people", "lawful_basis": "consent", "consent_ref": "test"},
    )
    assert created.status_code == 201, created.text
    files = [("photos", _file(faces / p)) for p in GALLERY]
    started = client.post("/v1/sources/people/photos", headers=auth(keys["ingest"]), files=files)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["total"] == len(GALLERY) and job["state"] in {"queued", "running", "done"}
    deadline = time.monotonic() + 300
    while job["state"] in {"queued", "running"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["ingest"])).json()
    assert job["state"] == "done", job
    assert job["summary"]["photos"] == len(GALLERY)
    return job


def search(client: Any, key: str, photo: Path) -> Any:
    return client.post(
        "/v1/search",
        headers=auth(key),
        data={"purpose": "find the subject", "case": "CASE-1"},
        files={"photo": _file(photo)},
    )


def sign_in(client: Any, key: str) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    done = client.post("/login", data={"key": key, "csrf": token.group(1)}, follow_redirects=False)
    assert done.status_code == 303, done.text


def test_ingest_search_verify_export_erase(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    ingest_gallery(client, keys, faces)

    found = search(client, keys["investigator"], faces / "joe_biden/biden2.jpg")
    assert found.status_code == 200, found.text
    leads = found.json()["faces"][0]["matches"]
    assert leads and leads[0]["photo"].endswith("biden.jpg"), leads
    assert leads[0]["band"] in {"strong", "possible"}
    assert leads[0]["source"] == "people" and leads[0]["ingested_at"]

    # the investigator may open the photos and crops of its results, and only those
    lead_photo = client.get(
        f"/v1/photos/{leads[0]['photo_id']}", headers=auth(keys["investigator"])
    )
    assert lead_photo.status_code == 200 and lead_photo.json()["faces"], lead_photo.text
    crop = client.get(f"/v1/faces/{leads[0]['face_id']}/crop", headers=auth(keys["investigator"]))
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert (
        client.get(
            f"/v1/faces/{leads[0]['face_id']}/crop", headers=auth(keys["auditor"])
        ).status_code
        == 403
    )
    state = client.app.state.server
    state._seen_photos.clear()  # as after a restart: the audit log says what it was shown
    state._seen_loaded.clear()
    assert (
        client.get(
            f"/v1/photos/{leads[0]['photo_id']}", headers=auth(keys["investigator"])
        ).status_code
        == 200
    )

    verified = client.post(
        "/v1/verify",
        headers=auth(keys["investigator"]),
        files={
            "a": _file(faces / "barack_obama/obama2.jpg"),
            "b": _file(faces / "barack_obama/obama3.jpg"),
        },
    )
    assert verified.status_code == 200 and verified.json()["same"] is True

    event = client.get(
        "/v1/audit", headers=auth(keys["auditor"]), params={"action": "search"}
    ).json()["events"][-1]
    assert (event["actor"], event["purpose"], event["case_ref"]) == (
        "investigator-1",
        "find the subject",
        "CASE-1",
    )
    assert leads[0]["face_id"] in event["result_face_ids"]

    # subject access by photo is a search: refused without a purpose, audited as a search
    unstated = client.post(
        "/v1/exports",
        headers=auth(keys["auditor"]),
        files={"photo": _file(faces / "joe_biden/biden2.jpg")},
    )
    assert unstated.status_code == 422, unstated.text
    report = client.post(
        "/v1/exports",
        headers=auth(keys["auditor"]),
        data={"purpose": "GDPR Art. 15 request", "case": "SAR-9"},
        files={"photo": _file(faces / "joe_biden/biden2.jpg")},
    )
    assert report.status_code == 200, report.text
    assert leads[0]["face_id"] in [f["face_id"] for f in report.json()["faces"]]
    events = client.get("/v1/audit", headers=auth(keys["auditor"]), params={"action": "search"})
    (sar,) = [e for e in events.json()["events"] if e["details"].get("op")]
    assert (sar["details"]["op"], sar["purpose"], sar["case_ref"]) == (
        "subject_access",
        "GDPR Art. 15 request",
        "SAR-9",
    )

    receipt = client.post(
        "/v1/erasures",
        headers=auth(keys["admin"]),
        data={"reason": "Art. 17 request 1"},
        files={"photo": _file(faces / "joe_biden/biden2.jpg")},
    )
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["erased_faces"] >= 1 and len(receipt.json()["receipt_sha256"]) == 64
    # the server's own copy of the erased photo goes too; the others stay
    uploads = client.app.state.server.engine.data_dir / "uploads"
    kept = sorted(p.name for p in uploads.rglob("*") if p.is_file())
    assert not any(name.endswith("biden.jpg") for name in kept)
    assert len(kept) == len(GALLERY) - 1, kept
    again = search(client, keys["investigator"], faces / "joe_biden/biden2.jpg")
    assert all(not f["matches"] for f in again.json()["faces"])

    metrics = client.get("/metrics").text
    assert re.search(r"countenance_ingest_faces_total [1-9]", metrics)
    assert re.search(r"countenance_index_faces [1-9]", metrics)
    assert 'route="/v1/search",status="200"' in metrics
    assert client.get("/v1/audit/verify", headers=auth(keys["auditor"])).json()["ok"] is True
    # probes are held in memory only unless the operator enables keep_probes
    assert not (client.app.state.server.engine.data_dir / "probes").exists()


def test_exclusions_by_api(api: Any) -> None:
    client, keys = api
    added = client.post(
        "/v1/policy/exclusions", headers=auth(keys["admin"]), json={"code": "CA", "reason": "r"}
    )
    assert added.status_code == 201, added.text
    listed = client.get("/v1/policy/exclusions", headers=auth(keys["investigator"])).json()
    assert [e["code"] for e in listed["exclusions"]] == ["CA"]
    lifted = client.delete("/v1/policy/exclusions/CA", headers=auth(keys["admin"]))
    assert lifted.json()["lifted"] is True


def test_ui_search_and_crops_only_for_the_right_role(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    ingest_gallery(client, keys, faces)
    assert client.get("/search", follow_redirects=False).status_code == 303  # not signed in

    sign_in(client, keys["investigator"])
    page = client.get("/search")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    refused = client.post(
        "/search",
        data={"purpose": "p", "case": "c", "csrf": "forged"},
        files={"photo": _file(faces / "joe_biden/biden2.jpg")},
    )
    assert refused.status_code == 403
    results = client.post(
        "/search",
        data={"purpose": "find the subject", "case": "CASE-2", "csrf": csrf.group(1)},
        files={"photo": _file(faces / "joe_biden/biden2.jpg")},
    )
    assert results.status_code == 200, results.text
    crops = re.findall(r'src="/faces/(\d+)/crop"', results.text)
    assert crops
    crop = client.get(f"/faces/{crops[0]}/crop")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    photo = re.search(r'href="/photos/(\d+)"', results.text)
    assert photo is not None
    assert client.get(f"/photos/{photo.group(1)}").status_code == 200

    client.cookies.clear()
    sign_in(client, keys["auditor"])
    assert client.get(f"/faces/{crops[0]}/crop").status_code == 403
    assert client.get("/search").status_code == 403
    assert client.get("/audit").status_code == 200


def test_searches_run_while_an_ingest_job_writes(make_client: Any) -> None:
    """The engine is shared by FastAPI's thread pool: searches in many threads while a job
    adds to the index all answer, and find what they should."""
    import concurrent.futures

    faces = need_faces("small_examples")
    client, keys = make_client(search_rate_per_minute=0)
    ingest_gallery(client, keys, faces)
    more = [
        ("photos", _file(faces / p)) for p in ["barack_obama/obama2.jpg", "alex_lacamoire/img1.jpg"]
    ]
    job = client.post("/v1/sources/people/photos", headers=auth(keys["ingest"]), files=more).json()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda _: search(client, keys["investigator"], faces / "joe_biden/biden2.jpg"),
                range(12),
            )
        )
    assert [a.status_code for a in answers] == [200] * 12
    assert all(a.json()["faces"][0]["matches"][0]["photo"].endswith("biden.jpg") for a in answers)
    deadline = time.monotonic() + 300
    while job["state"] in {"queued", "running"} and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["ingest"])).json()
    assert job["state"] == "done" and job["summary"]["photos"] == 2


def test_probes_analysed_in_worker_processes(make_client: Any) -> None:
    """With search_workers > 1 the models run in worker processes: same leads."""
    from countenance.api.pool import PooledPipeline

    faces = need_faces("small_examples")
    client, keys = make_client(search_workers=2)
    assert isinstance(client.app.state.server.engine.pipeline, PooledPipeline)
    ingest_gallery(client, keys, faces)
    found = search(client, keys["investigator"], faces / "joe_biden/biden2.jpg")
    assert found.status_code == 200, found.text
    assert found.json()["faces"][0]["matches"][0]["photo"].endswith("biden.jpg")


def test_uploads_without_suffix_bad_files_and_retirement(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    ingest_gallery(client, keys, faces)
    files = [
        ("photos", ("blob", (faces / "joe_biden/biden2.jpg").read_bytes(), "image/jpeg")),
        ("photos", ("notes.jpg", b"not a photo", "image/jpeg")),
        (
            "photos",
            ("../../escape.jpg", (faces / "rose_leslie/img2.jpg").read_bytes(), "image/jpeg"),
        ),
    ]
    job = client.post("/v1/sources/people/photos", headers=auth(keys["ingest"]), files=files).json()
    while job["state"] in {"queued", "running"}:
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["ingest"])).json()
    assert job["summary"]["photos"] == 2, job  # a name without suffix is sniffed
    assert sum(job["summary"]["bad_files"].values()) == 1
    uploads = client.app.state.server.engine.data_dir / "uploads"
    names = sorted(p.name for p in uploads.rglob("*") if p.is_file())
    assert not any("notes" in n for n in names), names  # never stored: swept
    assert all(p.resolve().is_relative_to(uploads.resolve()) for p in uploads.rglob("*"))
    retired = client.delete("/v1/sources/people", headers=auth(keys["admin"]))
    assert retired.status_code == 200 and retired.json()["photos"] == len(GALLERY) + 2
    assert not [p for p in uploads.rglob("*") if p.is_file()]
