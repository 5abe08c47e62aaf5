"""Persons over fakes of the vision ports: the linkage rule, what people decide binding later
clustering, names across a re-clustering and a model switch, search grouped by person,
watches alerting exactly once per new matching face, expiry, and the webhook on loopback.

The fake embedder gives one colour one vector: photos of one colour are one person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from countenance.catalog import schema
from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import InvalidArgument, NotFound
from countenance.people.linkage import Linkage, MemoryGroups
from countenance.reembed import switch
from tests.unit.fakes import FakeWideEmbedder, block_photo, fake_pipeline

RED, GREEN, BLUE, GREY = (200, 30, 30), (30, 200, 30), (30, 30, 200), (90, 90, 90)
WHO: dict[str, Any] = {"actor": "ana", "purpose": "find a missing person", "case": "case-9"}
LATER = dt.date.today() + dt.timedelta(days=30)


def open_store(data: Path, **settings: object) -> Engine:
    return Engine(Settings(data_dir=data, workers=1, **settings), pipeline=fake_pipeline())  # type: ignore[arg-type]


def photos_of(folder: Path, colours: dict[str, tuple[int, int, int]], sizes: range) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in colours.items():
        for size in sizes:
            (folder / f"{name}{size}.png").write_bytes(block_photo(colour, size))
    return folder


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    photos = photos_of(tmp_path / "photos", {"red": RED, "green": GREEN}, range(80, 104, 8))
    (photos / "blue.png").write_bytes(block_photo(BLUE))
    data = tmp_path / "data"
    with open_store(data) as db:
        db.add_source("s", basis="consent")
        assert db.ingest(photos, source="s").faces == 7
    return data


def person(db: Engine, colour: str) -> int | None:
    found = {p["id"] for p in db.people.list(hidden=True) if _colours(db, p["id"]) == {colour}}
    assert len(found) <= 1
    return found.pop() if found else None


def _colours(db: Engine, person_id: int) -> set[str]:
    return {
        Path(f["uri"]).stem.rstrip("0123456789") for f in db.people.show(person_id)["face_list"]
    }


# the rule ------------------------------------------------------------------------------


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_average_linkage_joins_on_the_mean_not_the_nearest_face() -> None:
    """A face close to one member of a group but far from the rest does not join it."""
    groups = MemoryGroups()
    linkage = Linkage(groups, edge=0.5)
    a, b = unit(np.array([1.0, 0.0, 0.0])), unit(np.array([0.8, 0.6, 0.0]))
    for face, v in ((1, a), (2, b)):
        groups.add_face(face, v)
    assert linkage.place(1, a, []).person is None  # alone: unassigned
    first = linkage.place(2, b, [(1, float(a @ b))])
    assert first.person is not None and groups.labels([1, 2]) == [first.person] * 2
    # near b (0.8) but far from a (0.28): the average, 0.54, still reaches 0.5 ...
    c = unit(np.array([0.28, 0.96, 0.0]))
    groups.add_face(3, c)
    assert linkage.place(3, c, [(2, float(b @ c)), (1, float(a @ c))]).person == first.person
    # ... one further out does not: nearest 0.6, mean of three under 0.5
    d = unit(np.array([-0.2, 0.9, 0.4]))
    groups.add_face(4, d)
    near = [(i, float(groups.vector[i] @ d)) for i in (1, 2, 3)]
    assert max(s for _, s in near) >= 0.5
    assert linkage.place(4, d, near).person is None


def test_two_groups_merge_when_their_average_linkage_reaches_the_edge() -> None:
    groups = MemoryGroups()
    linkage = Linkage(groups, edge=0.6)
    rng = np.random.default_rng(3)
    centre = unit(rng.normal(size=16))
    faces = [unit(centre + 0.25 * unit(rng.normal(size=16))) for _ in range(6)]
    for i, v in enumerate(faces):
        groups.add_face(i, v)
    # placed with only the neighbours on their own side: two groups form
    assert linkage.place(0, faces[0], []).person is None
    assert linkage.place(1, faces[1], []).person is None
    left = linkage.place(2, faces[2], [(0, float(faces[0] @ faces[2]))]).person
    right = linkage.place(3, faces[3], [(1, float(faces[1] @ faces[3]))]).person
    assert left is not None and right is not None and left != right
    # a face that sees both groups joins one and the two merge: one person of five
    x = faces[4]
    placed = linkage.place(4, x, [(i, float(faces[i] @ x)) for i in range(4)])
    assert placed.merged and len(set(groups.labels(range(5)))) == 1


def test_a_stranger_seen_once_stays_unassigned(store: Path) -> None:
    with open_store(store) as db:
        assert {frozenset(_colours(db, p["id"])) for p in db.people.list()} == {
            frozenset({"red"}),
            frozenset({"green"}),
        }
        assert db.people.counts() == {"assigned": 6, "unassigned": 1}


# what people decide --------------------------------------------------------------------


def test_a_name_survives_a_recluster_and_a_model_switch(store: Path) -> None:
    with open_store(store) as db:
        red = person(db, "red")
        assert red is not None
        db.people.name(red, "Ruby", actor="archivist")
        db.people.recluster(actor="archivist")
        assert person(db, "red") == red and db.people.show(red)["name"] == "Ruby"
        report = switch(db, "faceplugin", actor="dpo", pipeline=fake_pipeline(FakeWideEmbedder()))
        assert report.complete and db.space == FakeWideEmbedder.space
        after = db.people.show(red)
        assert after["name"] == "Ruby" and after["faces"] == 3
        assert _colours(db, red) == {"red"}
        # the audit log names the person, never the name
        assert all("Ruby" not in json.dumps(e.details) for e in db.audit.events())


def test_not_this_person_is_remembered_by_a_recluster(store: Path) -> None:
    with open_store(store) as db:
        red = person(db, "red")
        assert red is not None
        face = db.people.show(red)["face_list"][0]["face_id"]
        assert db.people.reject(red, [face], actor="archivist") == 1
        db.people.recluster(actor="archivist")
        assert db.people.of_faces([face])[face] != red
        assert face not in {f["face_id"] for f in db.people.show(red)["face_list"]}
        with pytest.raises(NotFound):
            db.people.reject(red, [face], actor="archivist")  # not its face any more


def test_split_persons_are_never_merged_again(store: Path) -> None:
    with open_store(store) as db:
        red = person(db, "red")
        assert red is not None
        faces = [f["face_id"] for f in db.people.show(red)["face_list"]]
        new = db.people.split(red, faces[:1], actor="archivist")
        db.people.recluster(actor="archivist")
        assert db.people.of_faces(faces) == {faces[0]: new, faces[1]: red, faces[2]: red}
        with pytest.raises(InvalidArgument):
            db.people.split(red, faces[1:], actor="archivist")  # would leave it empty


def test_merge_keeps_the_name_and_moves_every_face(store: Path) -> None:
    with open_store(store) as db:
        red, green = person(db, "red"), person(db, "green")
        assert red is not None and green is not None
        db.people.name(green, "Jade", actor="archivist")
        assert db.people.merge(red, [green], actor="archivist") == 3
        merged = db.people.show(red)
        assert merged["faces"] == 6 and merged["name"] == "Jade"
        with pytest.raises(NotFound):
            db.people.show(green)


def test_hidden_persons_leave_the_list_but_not_the_store(store: Path) -> None:
    with open_store(store) as db:
        green = person(db, "green")
        assert green is not None
        db.people.hide(green, actor="archivist")
        assert green not in {p["id"] for p in db.people.list()}
        assert green in {p["id"] for p in db.people.list(hidden=True)}
        db.people.hide(green, False, actor="archivist")
        assert green in {p["id"] for p in db.people.list()}


def test_search_groups_its_matches_by_person(store: Path) -> None:
    with open_store(store) as db:
        red = person(db, "red")
        (face,) = db.search(block_photo(RED, 110), **WHO).faces
        assert face.matches and {m.person for m in face.matches} == {red}
        (lead,) = face.persons
        assert lead.person == red and lead.faces == 3 and lead.photos == 3
        assert set(lead.matched) == {m.face_id for m in face.matches}
        assert lead.sources == ("s",) and lead.first_seen and lead.last_seen
        wire = face.to_json()
        assert wire["persons"][0]["person"] == red and wire["matches"][0]["person"] == red


def test_erasing_a_person_takes_every_face_its_name_and_blocks_it(
    store: Path, tmp_path: Path
) -> None:
    with open_store(store) as db:
        red = person(db, "red")
        assert red is not None
        db.people.name(red, "Ruby", actor="archivist")
        receipt = db.erase(person=red, reason="Art. 17", actor="dpo")
        assert receipt.erased_faces == 3 and receipt.suppression_id is not None
        with pytest.raises(NotFound):
            db.people.show(red)
        assert person(db, "red") is None
        again = db.ingest(photos_of(tmp_path / "again", {"red": RED}, range(60, 70, 4)), source="s")
        assert again.faces == 0 and again.suppressed == 3


# watches -------------------------------------------------------------------------------


def test_a_watch_alerts_once_per_new_matching_face_and_never_after_it_expires(
    store: Path, tmp_path: Path
) -> None:
    with open_store(store) as db:
        watch = db.watch(photo=block_photo(BLUE, 90), expires=LATER, **WHO)
        assert watch["alerts"] == 0 and watch["case"] == "case-9"
        new = photos_of(tmp_path / "new", {"blue": BLUE, "grey": GREY}, range(60, 76, 8))
        summary = db.ingest(new, source="s")
        assert summary.alerts == 2
        alerts = db.alerts()
        assert len(alerts) == 2 and {Path(a["photo"]).stem for a in alerts} == {"blue60", "blue68"}
        assert len({a["face_id"] for a in alerts}) == 2  # one per face
        assert db.ingest(new, source="s").alerts == 0  # the same bytes again: nothing new
        events = [e for e in db.audit.events(action="alert") if e.details["op"] == "hit"]
        assert len(events) == 2 and all(e.case_ref == "case-9" for e in events)
        # expired: no more alerts, and the retention run purges it with its template
        with db.catalog.transaction() as conn:
            past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            conn.execute(schema.watches.update().values(expires_at=past))
        later = photos_of(tmp_path / "later", {"blue": BLUE}, range(50, 54, 4))
        assert db.ingest(later, source="s").alerts == 0
        assert db.retention_run(actor="dpo")["watches"] == 1
        assert db.watches() == [] and db.alerts() == []


def test_a_watch_needs_a_purpose_a_case_and_a_future_expiry(store: Path) -> None:
    with open_store(store) as db:
        photo = block_photo(BLUE, 90)
        with pytest.raises(InvalidArgument):
            db.watch(photo=photo, expires=dt.date.today() - dt.timedelta(days=1), **WHO)
        with pytest.raises(InvalidArgument):
            db.watch(photo=photo, expires=dt.date.today() + dt.timedelta(days=400), **WHO)
        with pytest.raises(InvalidArgument):
            db.watch(photo=photo, person=1, expires=LATER, **WHO)
        assert db.watches() == []


def test_a_watch_on_a_person_alerts_on_their_new_photos(store: Path, tmp_path: Path) -> None:
    with open_store(store) as db:
        green = person(db, "green")
        assert green is not None
        db.watch(person=green, expires=LATER, **WHO)
        new = photos_of(tmp_path / "new", {"green": GREEN, "red": RED}, range(60, 64, 4))
        assert db.ingest(new, source="s").alerts == 1
        (alert,) = db.alerts()
        assert Path(alert["photo"]).stem == "green60"


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
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_each_alert_is_posted_to_the_webhook_signed(store: Path, tmp_path: Path, hook: str) -> None:
    with open_store(store, alert_webhook=hook, alert_secret="s3cret") as db:
        db.watch(photo=block_photo(BLUE, 90), expires=LATER, **WHO)
        db.ingest(photos_of(tmp_path / "new", {"blue": BLUE}, range(60, 64, 4)), source="s")
        ((body, signature),) = Hook.received
        sent = json.loads(body)
        (alert,) = db.alerts()
        assert sent["alert"] == alert["id"] and sent["case"] == "case-9"
        assert "embedding" not in sent and "template" not in sent
        assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert alert["delivered_at"] and alert["delivery_error"] is None


def test_a_webhook_that_fails_undoes_nothing(store: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    with open_store(store, alert_webhook=dead) as db:
        db.watch(photo=block_photo(BLUE, 90), expires=LATER, **WHO)
        summary = db.ingest(photos_of(tmp_path / "n", {"blue": BLUE}, range(60, 64, 4)), source="s")
        assert summary.photos == 1 and summary.alerts == 1
        (alert,) = db.alerts()
        assert alert["delivered_at"] is None and "could not be reached" in alert["delivery_error"]
        assert db.audit.verify().ok


def test_erasing_a_person_ends_its_watches_and_takes_its_alerts(
    store: Path, tmp_path: Path
) -> None:
    with open_store(store) as db:
        green = person(db, "green")
        assert green is not None
        db.watch(person=green, expires=LATER, **WHO)
        db.watch(photo=block_photo(BLUE, 90), expires=LATER, **WHO)
        new = photos_of(tmp_path / "new", {"green": GREEN, "blue": BLUE}, range(60, 64, 4))
        assert db.ingest(new, source="s").alerts == 2
        db.erase(person=green, reason="Art. 17", actor="dpo")  # the new face joined it
        assert [w["person"] for w in db.watches()] == [None]  # only the photo watch is left
        assert {Path(a["photo"]).stem for a in db.alerts()} == {"blue60"}
        (event,) = db.audit.events(action="erase")
        assert len(event.details["watches_ended"]) == 1


def test_a_rejected_face_never_comes_back_through_a_merge() -> None:
    u, w = np.array([1, 0, 0], np.float32), np.array([0.6, 0.8, 0], np.float32)
    groups = MemoryGroups()
    for face, v in ((1, u), (2, u), (3, w), (4, w), (9, u)):
        groups.add_face(face, v)
    a, b = groups.new_person([1, 2]), groups.new_person([3, 4])
    groups.rules.rejects[9] = {a}
    Linkage(groups, edge=0.5).place(9, u, [(1, 1.0), (2, 1.0), (3, 0.6), (4, 0.6)])
    assert groups.labels([1, 2, 3, 4, 9]) == [a, a, b, b, b]  # joined B; A not merged in


def test_a_small_person_is_taken_apart_when_its_faces_do_not_belong_together() -> None:
    """Two strangers paired just above the edge; once the first one's own faces arrive, the
    batch pass over the small person leaves the second one out."""
    groups = MemoryGroups()
    linkage = Linkage(groups, edge=0.5)
    x, y = unit(np.array([1.0, 0.0, 0.0])), unit(np.array([0.52, 0.854, 0.0]))
    own = [unit(np.array([1.0, -0.1 * i, 0.05])) for i in (1, 2, 3)]
    for face, v in ((1, x), (2, y), (3, own[0]), (4, own[1]), (5, own[2])):
        groups.add_face(face, v)
    linkage.place(1, x, [])
    assert linkage.place(2, y, [(1, float(x @ y))]).person is not None  # a chance pair
    for face, v in ((3, own[0]), (4, own[1]), (5, own[2])):
        placed = [(i, float(groups.vector[i] @ v)) for i in range(1, face)]
        linkage.place(face, v, placed)
    labels = groups.labels([1, 2, 3, 4, 5])
    assert labels[0] is not None and labels.count(labels[0]) == 4 and labels[1] is None


def test_the_pair_edge_rises_with_the_unassigned_faces() -> None:
    from countenance.people.clusters import pair_edge
    from tests.unit.fakes import FakeWideEmbedder

    bands = FakeWideEmbedder.space.bands
    assert bands is not None
    assert pair_edge(bands, 1) == bands.erase
    assert bands.erase < pair_edge(bands, 10_000) < pair_edge(bands, 1_000_000)
    assert pair_edge(bands, 1_000) == pytest.approx(bands.strong)  # 0.01 / 1,000 = FMR 1e-5
