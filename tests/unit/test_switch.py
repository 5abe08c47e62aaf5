"""A model switch over fakes of the vision ports: every stored face re-embedded into the new
space while searches keep answering in the old one, resumable after a crash, whole or not at
all, audited; unreadable photos keep the store in its old space unless left out on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.reembed import switch
from tests.unit.fakes import FAKE_SPACE, FakeWideEmbedder, block_photo, fake_pipeline

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def open_old(data: Path) -> Engine:
    return Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline())


def new_pipeline():  # type: ignore[no-untyped-def]
    return fake_pipeline(FakeWideEmbedder())


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, colour in [("red", RED), ("green", GREEN), ("blue", BLUE)]:
        (photos / f"{name}.png").write_bytes(block_photo(colour))
        (photos / f"{name}2.png").write_bytes(block_photo(colour, size=100))
    data = tmp_path / "data"
    with open_old(data) as db:
        db.add_source("s", basis="consent")
        assert db.ingest(photos, source="s").faces == 6
    return data


def face_spaces(db: Engine) -> dict[str, int]:
    out = {}
    for space in db.catalog.spaces():
        out[space.key] = db.catalog.live_count(space)
    return {k: v for k, v in out.items() if v}


def test_a_switch_re_embeds_every_face_and_answers_in_the_new_space(store: Path) -> None:
    with open_old(store) as db:
        old_key = db.space.key
        report = switch(db, "faceplugin", actor="dpo", pipeline=new_pipeline())
        assert report.complete and (report.photos, report.faces) == (6, 6)
        assert db.space == FakeWideEmbedder.space and db.space.dim == 512
        assert face_spaces(db) == {db.space.key: 6}  # the old space holds nothing now
        assert db.index.count() == 6 and db.status().space == db.space
        (face,) = db.search(block_photo(GREEN, size=110), **WHO).faces
        assert face.matches and all("green" in m.photo for m in face.matches)
        assert not list((store / "index").glob(f"{old_key}.*"))
        (event,) = db.audit.events(action="model")
        assert event.details["op"] == "switch" and event.details["old_faces_deleted"] == 6
        assert db.audit.verify().ok
    # reopened with no pipeline named, the store keeps the space it switched to
    with Engine(Settings(data_dir=store, workers=1, model="dlib"), pipeline=new_pipeline()) as db:
        assert db.catalog.current_space() == FakeWideEmbedder.space


def test_a_killed_switch_leaves_the_old_space_answering_and_resumes(store: Path) -> None:
    class Dies(Exception):
        pass

    calls = {"n": 0}
    dying = new_pipeline()
    inner = dying.analyse

    def analyse(rgb, boxes=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise Dies()  # stands for kill -9 in the middle of the fourth photo
        return inner(rgb, boxes)

    dying.analyse = analyse  # type: ignore[method-assign]
    with open_old(store) as db, pytest.raises(Dies):
        switch(db, "faceplugin", actor="dpo", pipeline=dying)
    with open_old(store) as db:  # the old space is still the store's, and answers
        assert db.space == FAKE_SPACE and db.catalog.current_space() == FAKE_SPACE
        (face,) = db.search(block_photo(RED, size=110), **WHO).faces
        assert face.matches and all("red" in m.photo for m in face.matches)
        assert db.catalog.live_count(FakeWideEmbedder.space) == 3  # three photos were done
        report = switch(db, "faceplugin", actor="dpo", pipeline=new_pipeline())
        assert report.complete and report.photos == 3  # only the rest
        assert face_spaces(db) == {FakeWideEmbedder.space.key: 6}  # none twice, none lost
        ids = db.catalog.live_face_ids(db.space)
        assert np.array_equal(np.sort(db.index.ids()), np.sort(ids))


def test_unreadable_photos_keep_the_old_space_unless_left_out(store: Path, tmp_path: Path) -> None:
    (tmp_path / "photos" / "blue2.png").unlink()
    (tmp_path / "photos" / "blue.png").write_bytes(block_photo(BLUE, size=90))  # changed
    with open_old(store) as db:
        report = switch(db, "faceplugin", actor="dpo", pipeline=new_pipeline())
        assert not report.complete and len(report.missing) == 2
        assert {"blue.png" in m["photo"] or "blue2.png" in m["photo"] for m in report.missing} == {
            True
        }
        assert db.space == FAKE_SPACE and not db.audit.events(action="model")
        report = switch(db, "faceplugin", actor="dpo", allow_missing=True, pipeline=new_pipeline())
        assert report.complete and len(report.missing) == 2
        assert face_spaces(db) == {FakeWideEmbedder.space.key: 4}
        (event,) = db.audit.events(action="model")
        assert event.details["missing"] == 2


def test_switching_to_the_space_in_use_does_nothing(store: Path) -> None:
    settings = Settings(data_dir=store, workers=1, embed_views=1)
    with Engine(settings, pipeline=fake_pipeline()) as db:
        report = switch(db, "dlib", actor="dpo")  # the fakes embed into dlib's one-view space
        assert report.complete and report.photos == 0
        assert not db.audit.events(action="model")
