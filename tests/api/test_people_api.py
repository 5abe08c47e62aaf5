"""Persons, watches and alerts over the REST API (issue 19), with the real server app: roles,
the round trip of list / show / name / merge / split / not / hide / recluster on real faces,
erasing a person, a watch alerting once per new matching face of its person and only its
owner seeing it, and the signed webhook on a loopback server."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.api.conftest import auth
from tests.conftest import need_faces

GALLERY = [
    "barack_obama/obama.jpg",
    "barack_obama/obama1.jpg",
    "barack_obama/obama2.jpg",
    "kit_harington/john1.jpeg",
    "kit_harington/john2.jpeg",
    "rose_leslie/img1.jpg",
    "rose_leslie/img2.jpg",
    "joe_biden/biden.jpg",
]
LATER = (dt.date.today() + dt.timedelta(days=30)).isoformat()
WATCH = {"purpose": "find a missing person", "case": "CASE-19", "expires": LATER}


def _file(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def upload(client: Any, keys: dict[str, str], faces: Path, photos: list[str]) -> dict[str, Any]:
    """Upload photos into source ``people`` (declared on first use) and wait for the job."""
    if client.get("/v1/sources", headers=auth(keys["admin"])).json()["sources"] == []:
        created = client.post(
            "/v1/sources",
            headers=auth(keys["admin"]),
            json={"name": "people", "lawful_basis": "consent", "consent_ref": "test"},
        )
        assert created.status_code == 201, created.text
    files = [("photos", _file(faces / p)) for p in photos]
    job = client.post("/v1/sources/people/photos", headers=auth(keys["ingest"]), files=files)
    assert job.status_code == 202, job.text
    state = job.json()
    deadline = time.monotonic() + 300
    while state["state"] in {"queued", "running"}:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
        state = client.get(f"/v1/jobs/{state['id']}", headers=auth(keys["ingest"])).json()
    assert state["state"] == "done", state
    summary: dict[str, Any] = state["summary"]
    return summary


def person_of(client: Any, key: str, who: str) -> dict[str, Any]:
    """The one person whose faces are all photos of ``who`` (a folder of small_examples)."""
    listed = client.get("/v1/people", headers=auth(key), params={"min_faces": 1, "hidden": True})
    assert listed.status_code == 200, listed.text
    found = []
    for p in listed.json()["people"]:
        record = client.get(f"/v1/people/{p['id']}", headers=auth(key)).json()
        names = {_stem(f["uri"]) for f in record["face_list"]}
        if names and names <= set(PHOTOS[who]):
            found.append(record)
    assert len(found) == 1, (who, found)
    return found[0]


PHOTOS = {
    "obama": ["obama", "obama1", "obama2", "obama3"],
    "kit": ["john1", "john2"],
    "rose": ["img1", "img2"],
}


def _stem(uri: str) -> str:
    """The photo's name as uploaded: ``NNNN-obama1.jpg`` -> ``obama1``."""
    return Path(uri).stem.split("-", 1)[-1]


# roles ----------------------------------------------------------------------------------------

PEOPLE_ROUTES = [
    ("GET", "/v1/people", {}),
    ("GET", "/v1/people/1", {}),
    ("POST", "/v1/people/1/name", {"json": {"name": "Ada"}}),
    ("POST", "/v1/people/1/merge", {"json": {"others": [2]}}),
    ("POST", "/v1/people/1/split", {"json": {"faces": [1]}}),
    ("POST", "/v1/people/1/hide", {"json": {"hidden": True}}),
    ("POST", "/v1/people/1/not", {"json": {"faces": [1]}}),
    ("POST", "/v1/recluster", {}),
    ("POST", "/v1/watches", {"data": {**WATCH, "person": "1"}}),
    ("GET", "/v1/watches", {}),
    ("DELETE", "/v1/watches/1", {}),
    ("GET", "/v1/alerts", {}),
]


@pytest.mark.parametrize("role", ["ingest", "auditor"])
@pytest.mark.parametrize(("method", "path", "kwargs"), PEOPLE_ROUTES)
def test_ingest_and_auditor_keys_may_not_touch_persons_or_watches(
    api: Any, role: str, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    client, keys = api
    response = client.request(method, path, headers=auth(keys[role]), **kwargs)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_only_an_admin_reclusters_and_erases_a_person(api: Any) -> None:
    client, keys = api
    investigator = auth(keys["investigator"])
    assert client.post("/v1/recluster", headers=investigator).status_code == 403
    erased = client.post(
        "/v1/erasures", headers=investigator, data={"reason": "Art. 17", "person": "1"}
    )
    assert erased.status_code == 403
    done = client.post("/v1/recluster", headers=auth(keys["admin"]))
    assert done.status_code == 200, done.text
    assert client.get("/v1/people", headers=investigator).json() == {
        "people": [],
        "counts": {"assigned": 0, "unassigned": 0},
    }


def test_person_routes_answer_404_for_a_person_that_is_not_there(api: Any) -> None:
    client, keys = api
    admin = auth(keys["admin"])
    for response in (
        client.get("/v1/people/77", headers=admin),
        client.post("/v1/people/77/name", headers=admin, json={"name": "Ada"}),
        client.post("/v1/people/77/merge", headers=admin, json={"others": [78]}),
        client.post("/v1/people/77/merge", headers=admin, json={"others": [77]}),
        client.post("/v1/people/77/split", headers=admin, json={"faces": [1]}),
        client.post("/v1/people/77/hide", headers=admin, json={"hidden": True}),
        client.post("/v1/people/77/not", headers=admin, json={"faces": [1]}),
        client.post("/v1/watches", headers=admin, data={**WATCH, "person": "77"}),
        client.delete("/v1/watches/77", headers=admin),
        client.get("/v1/alerts", headers=admin, params={"watch": 77}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"name": "  "}, {"name": 7}, {}, {"name": "a" * 201}, {"name": "x", "y": 1}],
)
def test_a_name_is_text_or_null(api: Any, body: dict[str, Any]) -> None:
    client, keys = api
    response = client.post("/v1/people/1/name", headers=auth(keys["admin"]), json=body)
    assert response.status_code == 422, response.text


def test_the_document_declares_the_people_routes(api: Any) -> None:
    client, _keys = api
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/v1/people",
        "/v1/people/{person_id}",
        "/v1/people/{person_id}/name",
        "/v1/people/{person_id}/merge",
        "/v1/people/{person_id}/split",
        "/v1/people/{person_id}/hide",
        "/v1/people/{person_id}/not",
        "/v1/recluster",
        "/v1/watches",
        "/v1/watches/{watch_id}",
        "/v1/alerts",
    ]:
        assert path in paths, path
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "person" in schemas["Body_erase_v1_erasures_post"]["properties"]


# persons on real faces ----------------------------------------------------------------------


@pytest.mark.slow
def test_list_show_name_merge_split_not_hide_round_trip(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    summary = upload(client, keys, faces, GALLERY)
    assert summary["persons"] == 3, summary
    key = keys["investigator"]
    who = auth(key)

    listed = client.get("/v1/people", headers=who).json()
    assert sorted(p["faces"] for p in listed["people"]) == [2, 2, 3]
    assert listed["counts"] == {"assigned": 7, "unassigned": 1}  # biden's one face: no person
    obama, kit, rose = (person_of(client, key, w) for w in ("obama", "kit", "rose"))
    assert obama["faces"] == 3 and obama["sources"] == ["people"] and obama["cover_face_id"]
    # an investigator sees a photo's name, never where the server keeps it
    assert all("/" not in f["uri"] for f in obama["face_list"])
    admin_view = client.get(f"/v1/people/{obama['id']}", headers=auth(keys["admin"])).json()
    assert all(f["uri"].startswith("/") for f in admin_view["face_list"])

    named = client.post(f"/v1/people/{obama['id']}/name", headers=who, json={"name": "Obama"})
    assert named.status_code == 200 and named.json()["name"] == "Obama", named.text
    only_named = client.get("/v1/people", headers=who, params={"named": True}).json()["people"]
    assert [(p["id"], p["name"]) for p in only_named] == [(obama["id"], "Obama")]
    unnamed = client.get("/v1/people", headers=who, params={"named": False}).json()["people"]
    assert {p["id"] for p in unnamed} == {kit["id"], rose["id"]}
    assert client.get("/v1/people", headers=who, params={"limit": 1, "offset": 1}).json()[
        "people"
    ] == [next(p for p in listed["people"][1:2])]

    # merge kit into rose: one person of four faces; merging a person with itself is a no-op
    merged = client.post(
        f"/v1/people/{rose['id']}/merge", headers=who, json={"others": [kit["id"]]}
    )
    assert merged.json() == {"person": rose["id"], "merged": [kit["id"]], "moved": 2}, merged.text
    assert client.get(f"/v1/people/{kit['id']}", headers=who).status_code == 404
    same = client.post(f"/v1/people/{rose['id']}/merge", headers=who, json={"others": [rose["id"]]})
    assert same.json()["moved"] == 0
    both = client.get(f"/v1/people/{rose['id']}", headers=who).json()
    assert both["faces"] == 4

    # split kit's faces out again: a new person, kept apart
    kits = [f["face_id"] for f in both["face_list"] if _stem(f["uri"]) in PHOTOS["kit"]]
    split = client.post(f"/v1/people/{rose['id']}/split", headers=who, json={"faces": kits})
    assert split.status_code == 201, split.text
    new = split.json()["new_person"]
    assert split.json() == {"person": rose["id"], "new_person": new, "faces": sorted(kits)}
    assert client.get(f"/v1/people/{new}", headers=who).json()["faces"] == 2
    rest = [
        f["face_id"]
        for f in client.get(f"/v1/people/{rose['id']}", headers=who).json()["face_list"]
    ]
    everything = client.post(f"/v1/people/{rose['id']}/split", headers=who, json={"faces": rest})
    assert everything.status_code == 409, everything.text
    stranger = client.post(f"/v1/people/{rose['id']}/split", headers=who, json={"faces": [kits[0]]})
    assert stranger.status_code == 404, stranger.text

    # not this person: the face leaves, and a re-clustering does not put it back
    doubted = obama["face_list"][-1]["face_id"]
    rejected = client.post(f"/v1/people/{obama['id']}/not", headers=who, json={"faces": [doubted]})
    assert rejected.json() == {"person": obama["id"], "faces": [doubted], "removed": 1}
    reclustered = client.post("/v1/recluster", headers=auth(keys["admin"]))
    assert reclustered.status_code == 200, reclustered.text
    after = client.get(f"/v1/people/{obama['id']}", headers=who).json()
    assert after["name"] == "Obama" and doubted not in {f["face_id"] for f in after["face_list"]}

    # hide: gone from the list, there with hidden=true, and back when shown
    hidden = client.post(f"/v1/people/{new}/hide", headers=who, json={"hidden": True})
    assert hidden.status_code == 200 and hidden.json()["hidden"] is True
    assert new not in {p["id"] for p in client.get("/v1/people", headers=who).json()["people"]}
    every = client.get("/v1/people", headers=who, params={"hidden": True}).json()["people"]
    assert any(p["id"] == new and p["hidden"] for p in every)
    shown = client.post(f"/v1/people/{new}/hide", headers=who, json={"hidden": False})
    assert shown.json()["hidden"] is False

    # every change is audited as the key's name, never with the name given
    events = client.get("/v1/audit", headers=auth(keys["auditor"]), params={"action": "person"})
    ops = [(e["actor"], e["details"]["op"]) for e in events.json()["events"]]
    assert ("investigator-1", "name") in ops and ("investigator-1", "split") in ops
    assert "Obama" not in events.text


@pytest.mark.slow
def test_erase_a_person_by_api(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    upload(client, keys, faces, GALLERY)
    obama = person_of(client, keys["admin"], "obama")
    receipt = client.post(
        "/v1/erasures",
        headers=auth(keys["admin"]),
        data={"reason": "Art. 17 request 19", "person": str(obama["id"])},
    )
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["erased_faces"] == 3 and len(receipt.json()["receipt_sha256"]) == 64
    assert client.get(f"/v1/people/{obama['id']}", headers=auth(keys["admin"])).status_code == 404
    both = client.post(
        "/v1/erasures",
        headers=auth(keys["admin"]),
        data={"reason": "r", "person": "1", "face_id": "1"},
    )
    assert both.status_code == 400, both.text
    # a new photo of the erased person is refused at ingest
    again = upload(client, keys, faces, ["barack_obama/obama3.jpg"])
    assert again["suppressed"] == 1 and again["faces"] == 0, again


# watches and alerts -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_watch_alerts_once_per_new_matching_face_and_only_to_its_owner(
    make_client: Any,
) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    upload(client, keys, faces, GALLERY)
    owner = auth(keys["investigator"])
    state = client.app.state.server
    other_key, _ = state.keys.create("investigator-2", "investigator", actor="test")
    other = auth(other_key)
    obama = person_of(client, keys["investigator"], "obama")

    created = client.post("/v1/watches", headers=owner, data={**WATCH, "person": obama["id"]})
    assert created.status_code == 201, created.text
    watch = created.json()
    assert (watch["actor"], watch["person"], watch["case"], watch["alerts"]) == (
        "investigator-1",
        obama["id"],
        "CASE-19",
        0,
    )
    assert watch["expires_at"].startswith(LATER)
    # another investigator neither sees nor removes it, nor reads its alerts
    assert client.get("/v1/watches", headers=other).json() == {"watches": []}
    assert client.delete(f"/v1/watches/{watch['id']}", headers=other).status_code == 404
    assert client.get("/v1/alerts", headers=other, params={"watch": watch["id"]}).status_code == 404
    assert [
        w["id"] for w in client.get("/v1/watches", headers=auth(keys["admin"])).json()["watches"]
    ] == [watch["id"]]

    # a new photo of the person and a stranger's: one alert, for the person's face
    summary = upload(client, keys, faces, ["barack_obama/obama3.jpg", "alex_lacamoire/img1.jpg"])
    assert summary["alerts"] == 1, summary
    (alert,) = client.get("/v1/alerts", headers=owner).json()["alerts"]
    assert alert["watch"] == watch["id"] and alert["case"] == "CASE-19"
    assert alert["photo"] == "0000-obama3.jpg" and alert["source"] == "people"
    assert client.get("/v1/alerts", headers=other).json() == {"alerts": []}
    assert [
        a["id"] for a in client.get("/v1/alerts", headers=auth(keys["admin"])).json()["alerts"]
    ] == [alert["id"]]
    assert client.get("/v1/alerts", headers=owner, params={"after": alert["id"]}).json() == {
        "alerts": []
    }
    # the alert is the owner's result: its crop opens for the owner alone
    crop = client.get(f"/v1/faces/{alert['face_id']}/crop", headers=owner)
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert client.get(f"/v1/faces/{alert['face_id']}/crop", headers=other).status_code == 404
    # the same bytes again store nothing, so alert nothing
    assert upload(client, keys, faces, ["barack_obama/obama3.jpg"])["alerts"] == 0
    assert client.get("/v1/watches", headers=owner).json()["watches"][0]["alerts"] == 1
    # raising the alert was audited for the owner, with the watch's purpose and case
    events = client.get("/v1/audit", headers=auth(keys["auditor"]), params={"action": "alert"})
    (hit,) = [e for e in events.json()["events"] if e["details"].get("op") == "hit"]
    assert (hit["actor"], hit["case_ref"], hit["result_face_ids"]) == (
        "investigator-1",
        "CASE-19",
        [alert["face_id"]],
    )

    removed = client.delete(f"/v1/watches/{watch['id']}", headers=owner)
    assert removed.json() == {"watch": watch["id"], "removed": True}, removed.text
    assert client.get("/v1/alerts", headers=owner).json() == {"alerts": []}


@pytest.mark.slow
def test_a_watch_is_refused_like_a_search(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client(search_rate_per_minute=2)
    who = auth(keys["investigator"])
    photo = {"photo": _file(faces / "barack_obama/obama.jpg")}
    no_purpose = client.post(
        "/v1/watches", headers=who, data={"case": "C", "expires": LATER}, files=photo
    )
    assert no_purpose.status_code == 422, no_purpose.text
    no_case = client.post(
        "/v1/watches", headers=who, data={"purpose": "p", "expires": LATER}, files=photo
    )
    assert no_case.status_code == 403 and no_case.json()["error"]["code"] == "policy_denied"
    for expires in ["2001-01-01", (dt.date.today() + dt.timedelta(days=400)).isoformat()]:
        late = client.post(
            "/v1/watches", headers=who, data={**WATCH, "expires": expires}, files=photo
        )
        assert late.status_code == 400, late.text
    neither = client.post("/v1/watches", headers=who, data=WATCH)
    assert neither.status_code == 400, neither.text
    not_a_day = client.post("/v1/watches", headers=who, data={**WATCH, "expires": "2027-02-30"})
    assert not_a_day.status_code in {400, 422}, not_a_day.text
    first = client.post("/v1/watches", headers=who, data=WATCH, files=photo)
    assert first.status_code == 201, first.text
    assert first.json()["person"] is None
    client.post("/v1/search", headers=who, data={"purpose": "p", "case": "C"}, files=photo)
    limited = client.post("/v1/watches", headers=who, data=WATCH, files=photo)
    assert limited.status_code == 429, limited.text
    events = client.get("/v1/audit", headers=auth(keys["auditor"]), params={"action": "watch"})
    (added,) = events.json()["events"]
    assert (added["actor"], added["purpose"], added["case_ref"]) == (
        "investigator-1",
        WATCH["purpose"],
        WATCH["case"],
    )
    assert added["probe_sha256"]


class Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[bytes, str | None]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((body, self.headers.get("X-Countenance-Signature")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hook() -> Iterator[str]:
    Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_the_webhook_receives_each_alert_signed(make_client: Any, hook: str) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client(alert_webhook=hook, alert_secret="s3cret")
    upload(client, keys, faces, GALLERY)
    owner = auth(keys["investigator"])
    created = client.post(
        "/v1/watches",
        headers=owner,
        data=WATCH,
        files={"photo": _file(faces / "barack_obama/obama1.jpg")},
    )
    assert created.status_code == 201, created.text
    assert Hook.received == []
    upload(client, keys, faces, ["barack_obama/obama3.jpg", "rose_leslie/img2.jpg"])
    ((body, signature),) = Hook.received
    (alert,) = client.get("/v1/alerts", headers=auth(keys["admin"])).json()["alerts"]
    fields = ["watch", "case", "face_id", "photo_id", "photo_sha256", "source", "similarity", "at"]
    assert json.loads(body) == {"alert": alert["id"], **{k: alert[k] for k in fields}}
    assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert alert["delivered_at"] and alert["delivery_error"] is None
    assert "embedding" not in body.decode() and "template" not in body.decode()


@pytest.mark.slow
def test_search_results_group_leads_by_person(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    upload(client, keys, faces, GALLERY)
    obama = person_of(client, keys["investigator"], "obama")
    found = client.post(
        "/v1/search",
        headers=auth(keys["investigator"]),
        data={"purpose": "find the subject", "case": "CASE-1"},
        files={"photo": _file(faces / "barack_obama/obama3.jpg")},
    )
    assert found.status_code == 200, found.text
    (face,) = found.json()["faces"]
    top = face["persons"][0]
    assert top["person"] == obama["id"] and top["faces"] == 3 and top["sources"] == ["people"]
    assert set(top["matched"]) <= {f["face_id"] for f in obama["face_list"]}
    assert {m["person"] for m in face["matches"] if m["face_id"] in top["matched"]} == {obama["id"]}


# the browser UI's rules on these pages (a TestClient session; the browser tests drive them) --


def sign_in(client: Any, key: str) -> str:
    """Sign the client in as ``key``; the session's CSRF token."""
    client.cookies.clear()
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    done = client.post("/login", data={"key": key, "csrf": token.group(1)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    page = client.get("/sources")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return csrf.group(1)


@pytest.mark.slow
def test_ui_people_and_alerts_pages_follow_the_roles_and_csrf(make_client: Any) -> None:
    faces = need_faces("small_examples")
    client, keys = make_client()
    upload(client, keys, faces, GALLERY)
    obama = person_of(client, keys["admin"], "obama")
    page = f"/people/{obama['id']}"

    for role in ("ingest", "auditor"):
        csrf = sign_in(client, keys[role])
        for path in ("/people", page, f"{page}/erase", "/alerts"):
            assert client.get(path).status_code == 403, (role, path)
        # a refused form never shows the page it came from to a role that may not read it
        refused = client.post(f"{page}/name", data={"name": "X", "csrf": csrf})
        assert refused.status_code == 403 and "obama" not in refused.text.lower()
        assert f"face {obama['face_list'][0]['face_id']}" not in refused.text
        assert 'href="/people"' not in client.get("/sources").text  # not in the nav

    csrf = sign_in(client, keys["investigator"])
    assert 'href="/people"' in client.get("/sources").text
    # an admin form refused to this role shows the refusal alone, not the admin page's data
    for path in ("/erasures", "/policy/allow"):
        refused = client.post(path, data={"csrf": csrf, "code": "CA", "reason": "r"})
        assert refused.status_code == 403 and "Not possible" in refused.text, path
        assert "<table" not in refused.text
    listed = client.get("/people")
    assert listed.status_code == 200 and f'data-person="{obama["id"]}"' in listed.text
    assert "/crop" not in listed.text  # no face among its results yet: placeholders
    forged = client.post(f"{page}/name", data={"name": "X", "csrf": "forged"})
    assert forged.status_code == 403
    named = client.post(
        f"{page}/name", data={"name": "Obama", "csrf": csrf}, follow_redirects=False
    )
    assert named.status_code == 303 and named.headers["location"] == page
    assert "Obama" in client.get("/people?show=named").text
    # erasure is for those who may erase, even with a valid token
    assert client.get(f"{page}/erase").status_code == 403
    erase = client.post(f"{page}/erase", data={"reason": "r", "confirm": "yes", "csrf": csrf})
    assert erase.status_code == 403
    assert client.get(f"/v1/people/{obama['id']}", headers=auth(keys["admin"])).status_code == 200
    assert client.get(page).headers["cache-control"] == "no-store"

    csrf = sign_in(client, keys["admin"])
    unconfirmed = client.post(f"{page}/erase", data={"reason": "Art. 17", "csrf": csrf})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    done = client.post(f"{page}/erase", data={"reason": "Art. 17", "confirm": "yes", "csrf": csrf})
    assert done.status_code == 200 and "Erased 3 faces" in done.text
