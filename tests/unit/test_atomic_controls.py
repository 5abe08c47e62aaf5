"""Every change to the store is one transaction with its audit event: a crash after any step of
any control leaves the whole change, audited, or none of it.

The crash is injected, not timed: the step runs, then raises ``Crash`` (a BaseException, as
an interpreter torn down mid-call would not be caught by the engine's own handlers), the
crashed engine is abandoned without saving its index, and the store is reopened. Then the
catalog, the index (as repaired on open), the suppression set and the audit chain must agree,
and a change either happened in full with its audit event or left no trace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from countenance.catalog import schema
from countenance.config import Settings
from countenance.engine import Engine
from tests.unit.fakes import block_photo, fake_pipeline

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)


class Crash(BaseException):
    """The process dies here."""


def open_engine(data: Path) -> Engine:
    return Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline())


def build(data: Path, photos: Path) -> None:
    photos.mkdir(parents=True, exist_ok=True)
    for name, colour in (("red.png", RED), ("green.png", GREEN), ("blue.png", BLUE)):
        (photos / name).write_bytes(block_photo(colour))
    with open_engine(data) as db:
        db.add_source("here", basis="consent", jurisdiction="CA")
        db.add_source("there", basis="consent", jurisdiction="FR", retention_days=30)
        db.ingest(photos / "red.png", source="here")
        db.ingest(photos / "green.png", source="here")
        db.ingest(photos / "blue.png", source="there")


# Each control: how to run it, and how to tell, after reopening, whether it happened.
Control = Callable[[Engine, Path], Any]
Happened = Callable[[Engine], bool]


def erase_by_photo(db: Engine, photos: Path) -> Any:
    return db.erase(photo=photos / "red.png", reason="Art. 17", actor="dpo")


def erase_by_face(db: Engine, photos: Path) -> Any:
    (red,) = [i for i in db.index.ids().tolist() if _colour(db, i) == "red"]
    return db.erase(face_id=red, reason="Art. 17", actor="dpo")


def retire(db: Engine, photos: Path) -> Any:
    return db.retire_source("here", actor="dpo")


def exclude(db: Engine, photos: Path) -> Any:
    return db.exclude("CA", reason="OPC", actor="dpo")


def retention(db: Engine, photos: Path) -> Any:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)  # the blue photo's time is up
    with db.catalog.transaction() as conn:
        conn.execute(
            schema.photos.update().where(schema.photos.c.uri.like("%blue%")).values(expires_at=past)
        )
    return db.retention_run(actor="dpo")


def add_source(db: Engine, photos: Path) -> Any:
    return db.add_source("new", basis="consent", actor="dpo")


def ingest(db: Engine, photos: Path) -> Any:
    more = photos.parent / "more"
    more.mkdir(exist_ok=True)
    for name, colour in (("red2.png", RED), ("green2.png", GREEN)):  # other bytes: new photos
        (more / name).write_bytes(block_photo(colour, 100))
    return db.ingest(more, source="here", actor="bot")


def changes(db: Engine, action: str) -> int:
    """Audit events of ``action`` that record a change (not an ingest run's summary)."""
    return sum(e.details.get("op") != "run" for e in db.audit.events(action=action))


def _colour(db: Engine, face_id: int) -> str:
    return Path(db.catalog.face_details([face_id])[face_id]["uri"]).stem


def _colours(db: Engine) -> set[str]:
    return {_colour(db, i) for i in db.catalog.live_face_ids(db.space).tolist()}


CONTROLS: dict[str, tuple[Control, str, Happened]] = {
    "erase_by_photo": (erase_by_photo, "erase", lambda db: "red" not in _colours(db)),
    "erase_by_face": (erase_by_face, "erase", lambda db: "red" not in _colours(db)),
    "retire": (retire, "source", lambda db: _colours(db) == {"blue"}),
    "exclude": (exclude, "policy", lambda db: bool(db.exclusions())),
    "retention": (retention, "retention", lambda db: "blue" not in _colours(db)),
    "add_source": (add_source, "source", lambda db: "new" in {s.name for s in db.sources()}),
    "ingest": (ingest, "ingest", lambda db: db.status().photos == 5),
}

# The steps each control takes, as (part of the engine, method): a crash is injected after
# each. Catalog writes and the audit record are inside the transaction; the index's remove
# and save and the suppression set's reload come after the commit.
CATALOG_STEPS = {
    "erase_by_photo": ["delete_faces", "add_suppression", "suppression_templates"],
    "erase_by_face": ["delete_faces", "add_suppression", "suppression_templates"],
    "retire": ["delete_photos", "retire_source"],
    "exclude": ["add_exclusion", "delete_photos_in"],
    "retention": ["delete_photos"],
    "add_source": ["add_source"],
    "ingest": ["add_photo"],
}
INDEX_STEPS = {
    name: {"add_source": [], "ingest": ["add"]}.get(name, ["remove", "save"])
    for name in CATALOG_STEPS
}
CASES = [
    (name, part, step)
    for name in CONTROLS
    for part, steps in (
        ("catalog", CATALOG_STEPS[name]),
        ("audit", ["record"]),
        ("index", INDEX_STEPS[name]),
    )
    for step in steps
]


def crash_after(monkeypatch: pytest.MonkeyPatch, target: object, method: str) -> None:
    original = getattr(target, method)

    def step(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise Crash(method)

    monkeypatch.setattr(target, method, step)


@pytest.mark.parametrize(("control", "part", "step"), CASES)
def test_a_crash_after_any_step_leaves_the_whole_change_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, control: str, part: str, step: str
) -> None:
    data, photos = tmp_path / "data", tmp_path / "photos"
    build(data, photos)
    run, action, happened = CONTROLS[control]
    db = open_engine(data)
    before = changes(db, action)
    target = {"catalog": db.catalog, "audit": db.audit, "index": db.index}[part]
    crash_after(monkeypatch, target, step)
    with pytest.raises(Crash):
        run(db, photos)
    monkeypatch.undo()
    db.catalog.close()  # the process is gone: its connections with it, its index unsaved

    with open_engine(data) as again:
        live = set(again.catalog.live_face_ids(again.space).tolist())
        assert set(again.index.ids().tolist()) == live  # the index follows the catalog
        assert again.audit.verify().ok
        audited = changes(again, action) - before
        done = happened(again)
        assert audited == int(done), (done, audited)  # all of it, audited, or none of it
        if control.startswith("erase"):
            templates = len(again.core.templates[0])
            assert (templates > 0) == done  # the suppression set goes with the erasure
        if done and control == "erase_by_photo":  # and it still blocks the person
            summary = again.ingest(photos / "red.png", source="there")
            assert summary.faces == 0


@pytest.mark.parametrize("control", list(CONTROLS))
def test_each_control_audits_inside_its_own_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, control: str
) -> None:
    """With no crash, every control commits exactly one audit event of its action."""
    data, photos = tmp_path / "data", tmp_path / "photos"
    build(data, photos)
    run, action, happened = CONTROLS[control]
    with open_engine(data) as db:
        before = changes(db, action)
        run(db, photos)
        assert happened(db)
        assert changes(db, action) - before == 1
        assert set(db.index.ids().tolist()) == set(db.catalog.live_face_ids(db.space).tolist())
