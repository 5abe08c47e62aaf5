"""Every change to persons and watches is one transaction with its audit event: a crash after
any step leaves the whole change, audited, or none of it (as tests/unit/test_atomic_controls.py
checks for the governance controls).

The fake pipeline gives photos of one colour the same vector, so ``red`` and ``red2`` are one
person and ``green`` and ``green2`` another; ``blue`` is a stranger seen once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from countenance.engine import Engine
from tests.unit.fakes import block_photo
from tests.unit.test_atomic_controls import BLUE, GREEN, RED, Crash, crash_after, open_engine

LATER = dt.date.today() + dt.timedelta(days=30)


def build(data: Path, photos: Path) -> None:
    photos.mkdir(parents=True, exist_ok=True)
    for name, colour, size in (
        ("red.png", RED, 80),
        ("red2.png", RED, 100),
        ("green.png", GREEN, 80),
        ("green2.png", GREEN, 100),
        ("blue.png", BLUE, 80),
    ):
        (photos / name).write_bytes(block_photo(colour, size))
    with open_engine(data) as db:
        db.add_source("here", basis="consent")
        db.ingest(photos, source="here")


def person_of(db: Engine, colour: str) -> int | None:
    """The person of the faces of that colour (all of them must agree)."""
    found = set()
    for face in db.catalog.live_face_ids(db.space).tolist():
        if Path(db.catalog.face_details([face])[face]["uri"]).stem.rstrip("0123456789") == colour:
            found.add(db.people.of_faces([face])[face])
    assert len(found) <= 1, found
    return found.pop() if found else None


def faces_of(db: Engine, colour: str) -> list[int]:
    return [
        f
        for f in db.catalog.live_face_ids(db.space).tolist()
        if Path(db.catalog.face_details([f])[f]["uri"]).stem.rstrip("0123456789") == colour
    ]


def name(db: Engine, photos: Path) -> Any:
    red = person_of(db, "red")
    assert red is not None
    db.people.name(red, "Ruby", actor="archivist")


def merge(db: Engine, photos: Path) -> Any:
    red, green = person_of(db, "red"), person_of(db, "green")
    assert red is not None and green is not None
    db.people.merge(red, [green], actor="archivist")


def split(db: Engine, photos: Path) -> Any:
    red = person_of(db, "red")
    assert red is not None
    db.people.split(red, faces_of(db, "red")[:1], actor="archivist")


def reject(db: Engine, photos: Path) -> Any:
    red = person_of(db, "red")
    assert red is not None
    db.people.reject(red, faces_of(db, "red")[:1], actor="archivist")


def hide(db: Engine, photos: Path) -> Any:
    green = person_of(db, "green")
    assert green is not None
    db.people.hide(green, actor="archivist")


def erase_person(db: Engine, photos: Path) -> Any:
    red = person_of(db, "red")
    assert red is not None
    db.erase(person=red, reason="Art. 17", actor="dpo")


def watch(db: Engine, photos: Path) -> Any:
    db.watch(photo=photos / "blue.png", actor="ana", purpose="missing", case="9", expires=LATER)


def recluster(db: Engine, photos: Path) -> Any:
    db.people.recluster(actor="archivist")


def _red_named(db: Engine) -> bool:
    red = person_of(db, "red")
    return red is not None and db.people.show(red)["name"] == "Ruby"


def _one_person(db: Engine) -> bool:
    return person_of(db, "red") == person_of(db, "green") is not None


def _red_split(db: Engine) -> bool:
    try:
        person_of(db, "red")
    except AssertionError:
        return True
    return False


def _red_rejected(db: Engine) -> bool:
    return None in set(db.people.of_faces(faces_of(db, "red")).values())


def _green_hidden(db: Engine) -> bool:
    green = person_of(db, "green")
    return green is not None and db.people.show(green)["hidden"]


Happened = Callable[[Engine], bool]
CONTROLS: dict[str, tuple[Callable[[Engine, Path], Any], str, Happened, list[str]]] = {
    "name": (name, "person", _red_named, ["name_person", "pin_person"]),
    "merge": (merge, "person", _one_person, ["merge_person", "pin_person"]),
    "split": (split, "person", _red_split, ["new_person", "pin_person", "keep_apart"]),
    "not": (reject, "person", _red_rejected, ["assign_faces", "reject_faces", "pin_person"]),
    "hide": (hide, "person", _green_hidden, ["hide_person"]),
    "erase_person": (
        erase_person,
        "erase",
        lambda db: not faces_of(db, "red"),
        ["delete_faces", "delete_person", "add_suppression"],
    ),
    "watch": (watch, "watch", lambda db: bool(db.watches()), ["add_watch"]),
    "recluster": (recluster, "person", lambda db: True, ["unpin_clusters", "new_person"]),
}
CASES = [
    (control, part, step)
    for control, (_, _, _, steps) in CONTROLS.items()
    for part, step in [*(("catalog", s) for s in steps), ("audit", "record")]
]


def changes(db: Engine, action: str) -> int:
    return sum(e.details.get("op") != "run" for e in db.audit.events(action=action))


@pytest.mark.parametrize(("control", "part", "step"), CASES)
def test_a_crash_after_any_step_leaves_the_whole_change_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, control: str, part: str, step: str
) -> None:
    data, photos = tmp_path / "data", tmp_path / "photos"
    build(data, photos)
    run, action, happened, _ = CONTROLS[control]
    db = open_engine(data)
    before = changes(db, action)
    persons_before = {c: person_of(db, c) for c in ("red", "green", "blue")}
    crash_after(monkeypatch, {"catalog": db.catalog, "audit": db.audit}[part], step)
    with pytest.raises(Crash):
        run(db, photos)
    monkeypatch.undo()
    db.catalog.close()

    with open_engine(data) as again:
        assert set(again.index.ids().tolist()) == set(again.catalog.live_face_ids(again.space))
        assert again.audit.verify().ok
        audited = changes(again, action) - before
        if control == "recluster":  # no trace: every face where it was, nothing audited
            assert audited == 0
            assert {c: person_of(again, c) for c in persons_before} == persons_before
        else:
            done = happened(again)
            assert audited == int(done), (done, audited)
            assert not done  # the crash came before the commit
        if control == "erase_person":  # the template goes with the erasure, or neither
            assert len(again.core.templates[0]) == 0


@pytest.mark.parametrize("control", list(CONTROLS))
def test_each_change_audits_once_and_does_what_it_says(tmp_path: Path, control: str) -> None:
    data, photos = tmp_path / "data", tmp_path / "photos"
    build(data, photos)
    run, action, happened, _ = CONTROLS[control]
    with open_engine(data) as db:
        before = changes(db, action)
        run(db, photos)
        assert happened(db)
        assert changes(db, action) - before == 1


def test_ingest_groups_the_same_face_and_leaves_a_stranger_unassigned(tmp_path: Path) -> None:
    data, photos = tmp_path / "data", tmp_path / "photos"
    build(data, photos)
    with open_engine(data) as db:
        red, green, blue = (person_of(db, c) for c in ("red", "green", "blue"))
        assert red is not None and green is not None and red != green
        assert blue is None  # seen once: no person
        listed = {p["id"]: p for p in db.people.list()}
        assert set(listed) == {red, green}
        assert listed[red]["faces"] == 2 and listed[red]["photos"] == 2
        assert db.people.counts() == {"assigned": 4, "unassigned": 1}
        commits = [e for e in db.audit.events(action="ingest") if e.details["op"] == "commit"]
        assert sum(e.details["persons"] for e in commits) == 2


def test_a_crash_in_an_ingest_batch_leaves_no_face_without_its_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, photos = tmp_path / "data", tmp_path / "photos"
    build(data, photos)
    more = tmp_path / "more"
    more.mkdir()
    (more / "red3.png").write_bytes(block_photo(RED, 120))
    db = open_engine(data)
    red = person_of(db, "red")
    crash_after(monkeypatch, db.catalog, "assign_faces")
    with pytest.raises(Crash):
        db.ingest(more, source="here")
    monkeypatch.undo()
    db.catalog.close()
    with open_engine(data) as again:
        assert again.status().photos == 5  # the batch is gone with its placement
        summary = again.ingest(more, source="here")
        assert summary.photos == 1
        assert {again.people.of_faces([f])[f] for f in faces_of(again, "red")} == {red}
