"""Persons, watches and alerts behave alike on both catalog backends (SQLite, PostgreSQL):
placement at ingest, names, splits, "not this person", merges, a recluster that keeps what
people decided, a watch's alert, and erasure of a person with its watches."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import NotFound
from tests.unit.fakes import block_photo, fake_pipeline
from tests.unit.test_people import BLUE, GREEN, RED, WHO, person, photos_of


def test_persons_and_watches_on_each_backend(tmp_path: Path, catalog_url: str) -> None:
    photos = photos_of(tmp_path / "photos", {"red": RED, "green": GREEN}, range(80, 104, 8))
    (photos / "blue.png").write_bytes(block_photo(BLUE))
    settings = Settings(data_dir=tmp_path / "data", workers=1, catalog_url=catalog_url)
    with Engine(settings, pipeline=fake_pipeline()) as db:
        db.add_source("s", basis="consent")
        assert db.ingest(photos, source="s").persons == 2
        red, green = person(db, "red"), person(db, "green")
        assert red is not None and green is not None
        assert db.people.counts() == {"assigned": 6, "unassigned": 1}
        db.people.name(red, "Ruby", actor="a")
        faces = [f["face_id"] for f in db.people.show(red)["face_list"]]
        new = db.people.split(red, faces[:1], actor="a")
        gone = [f["face_id"] for f in db.people.show(green)["face_list"]][:1]
        db.people.reject(green, gone, actor="a")
        db.people.recluster(actor="a")
        assert db.people.of_faces(faces) == {faces[0]: new, faces[1]: red, faces[2]: red}
        assert db.people.of_faces(gone)[gone[0]] != green
        assert db.people.show(red)["name"] == "Ruby"
        assert db.people.merge(red, [new], actor="a") == 1
        assert db.people.show(red)["faces"] == 3
        later = dt.date.today() + dt.timedelta(days=3)
        db.watch(person=green, expires=later, **WHO)
        more = photos_of(tmp_path / "more", {"green": GREEN}, range(60, 64, 4))
        assert db.ingest(more, source="s").alerts == 1
        assert len(db.alerts()) == 1 and db.watches()[0]["alerts"] == 1
        db.erase(person=green, reason="Art. 17", actor="dpo")
        assert db.watches() == [] and db.alerts() == []
        with pytest.raises(NotFound):
            db.people.show(green)
        assert db.audit.verify().ok
