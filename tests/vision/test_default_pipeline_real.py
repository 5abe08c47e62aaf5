"""The default model pipeline (faceplugin on ONNX Runtime) through the engine, on real faces:
what a new user's store is built with."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.vision.models import space_of
from countenance.vision.registry import DEFAULT
from tests.conftest import need_faces
from tests.vision.test_models import installed_store

pytestmark = pytest.mark.slow
WHO = {"actor": "alice", "purpose": "find where a person appears", "case": "c-1"}


@pytest.fixture(scope="module")
def default_store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    faces = need_faces("small_examples")
    installed_store()
    root = tmp_path_factory.mktemp("default")
    photos = root / "photos"
    shutil.copytree(faces, photos, ignore=shutil.ignore_patterns("*.csv"))
    with Engine(Settings(data_dir=root / "data", workers=1, model=DEFAULT)) as db:
        db.add_source("s", basis="consent")
        summary = db.ingest(photos, source="s")
        yield db, photos, summary


def test_a_new_store_is_built_in_the_default_space(default_store) -> None:  # type: ignore[no-untyped-def]
    db, _, summary = default_store
    assert db.space == space_of(DEFAULT, Settings()) and db.space.dim == 512
    assert summary.photos == 18 and summary.faces >= 16 and not summary.bad_files
    assert summary.skipped_faces.get("minor", 0) == 0  # these are all adults
    _, vectors = next(iter(db.catalog.embeddings(db.space)))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_search_finds_the_person_and_no_stranger_in_a_strong_band(default_store) -> None:  # type: ignore[no-untyped-def]
    db, photos, _ = default_store
    result = db.search(photos / "joe_biden" / "biden2.jpg", **WHO)
    principal = result.faces[0]
    assert principal.matches and "joe_biden" in principal.matches[0].photo
    for face in result.faces:
        for m in face.matches:
            if m.band is not None and m.band.value == "strong":
                assert "joe_biden" in m.photo  # a strong lead is never a stranger here
    assert principal.matches[0].expected_false_leads is not None
    assert principal.matches[0].expected_false_leads < 1e-2


def test_verify_tells_one_person_from_another(default_store) -> None:  # type: ignore[no-untyped-def]
    db, photos, _ = default_store
    same = db.verify(photos / "barack_obama" / "obama.jpg", photos / "barack_obama" / "obama2.jpg")
    other = db.verify(photos / "barack_obama" / "obama.jpg", photos / "joe_biden" / "biden.jpg")
    assert same.same and not other.same and same.similarity > other.similarity
