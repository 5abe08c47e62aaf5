"""A store built with dlib, switched to the default model with ``models use``, on real faces:
every search answers in the new space, an erased person stays blocked across the switch, and
``status`` shows one space."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.engine import Engine
from tests.conftest import need_faces, run_cli
from tests.vision.test_models import installed_store

WHO = ("--actor", "alice", "--purpose", "find where a person appears", "--case", "c-1")


@pytest.mark.slow
def test_a_dlib_store_switched_to_the_default_keeps_erased_people_out(tmp_path: Path) -> None:
    faces = need_faces("small_examples")
    installed_store()
    photos = tmp_path / "photos"
    for person in ("barack_obama", "joe_biden", "kit_harington"):
        shutil.copytree(faces / person, photos / person)
    data = tmp_path / "data"
    dlib = {"COUNTENANCE_MODEL": "dlib", "COUNTENANCE_EMBED_VIEWS": "1"}  # one view: quicker
    run_cli(data, "sources", "add", "s", "--basis", "consent", env=dlib)
    run_cli(data, "ingest", str(photos), "--source", "s", env=dlib)
    biden = photos / "joe_biden" / "biden.jpg"
    run_cli(data, "erase", "--photo", str(biden), "--reason", "Art. 17", "--actor", "dpo",
            env=dlib)  # fmt: skip

    done = run_cli(data, "models", "use", "faceplugin", "--json", env=dlib)
    report = json.loads(done.stdout)
    assert report["complete"] and report["faces"] >= 8 and not report["missing"]

    with Engine(Settings(data_dir=data, workers=1, model="dlib", embed_views=1)) as db:
        status = db.status()
        assert status.space.model == "faceplugin_fr_feature" and status.space.dim == 512
        assert [s.model for s in db.catalog.spaces() if s != status.space] == ["dlib_resnet_v1"]
        assert status.indexed == status.faces
    obama = run_cli(data, "search", str(faces / "barack_obama" / "obama.jpg"), *WHO, "--json")
    leads = [m for f in json.loads(obama.stdout)["faces"] for m in f["matches"]]
    assert leads and "barack_obama" in leads[0]["photo"]
    # the erased person: no lead for their photo, and their photos are refused again
    other = run_cli(data, "search", str(photos / "joe_biden" / "biden2.jpg"), *WHO, "--json")
    assert all(not f["matches"] for f in json.loads(other.stdout)["faces"])
    again = tmp_path / "again"
    shutil.copytree(faces / "joe_biden", again)
    (again / "other.jpg").write_bytes((faces / "kit_harington" / "john1.jpeg").read_bytes())
    ingest = run_cli(data, "ingest", str(again), "--source", "s", "--json")
    summary = json.loads(ingest.stdout)
    assert summary["suppressed"] >= 2  # both of Biden's photos, judged in dlib's space
