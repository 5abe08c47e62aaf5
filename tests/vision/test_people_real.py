"""Persons on real faces with the default model: LFW people with many photos are grouped
into persons by ingest, erasing a person takes (nearly) all of their faces and no stranger's,
a watch alerts on each new photo of its person and on no one else, and ``eval cluster``
reports its figures on a labelled folder.

Photos are read from ``../shared/faces`` and copied only into pytest's temporary folders.
"""

from __future__ import annotations

import collections
import datetime as dt
import shutil
from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.evaluation import eval_cluster
from countenance.labelled import read_manifest
from tests.conftest import need_faces

DISTRACTORS = 300  # photos of people seen once or twice
WHO = {"actor": "ana", "purpose": "find a missing person", "case": "case-9"}


def lfw_people(tmp: Path) -> tuple[Path, dict[str, str], list[str]]:
    """A folder of the photos of every LFW identity with 12+ photos but its last one, and
    DISTRACTORS photos of rare identities; the held-back last photos go to ``tmp/later``."""
    lfw = need_faces("lfw")
    by_identity: dict[str, list[Path]] = collections.defaultdict(list)
    for path, identity in read_manifest(lfw):
        by_identity[identity].append(path)
    frequent = sorted(i for i, p in by_identity.items() if len(p) >= 12)
    rare = sorted(i for i, p in by_identity.items() if len(p) <= 2)[:DISTRACTORS]
    photos, later = tmp / "photos", tmp / "later"
    photos.mkdir()
    later.mkdir()
    who: dict[str, str] = {}
    for identity in frequent:
        paths = sorted(by_identity[identity])
        for path in paths[:-1]:
            shutil.copyfile(path, photos / path.name)
        shutil.copyfile(paths[-1], later / paths[-1].name)
        who.update((p.name, identity) for p in paths)
    for identity in rare:
        path = by_identity[identity][0]
        shutil.copyfile(path, photos / path.name)
        who[path.name] = identity
    return photos, who, frequent


@pytest.mark.slow
def test_people_on_lfw_watch_then_erase_each_frequent_person(tmp_path: Path) -> None:
    """Every LFW identity with 12+ photos: a watch alerts on the held-back photo of its
    person only; then erasing each identity's person takes >= 95% of their faces and at
    most 0.1% of the other faces."""
    photos, who, frequent = lfw_people(tmp_path)
    with Engine(Settings(data_dir=tmp_path / "data")) as db:
        db.add_source("lfw", basis="legitimate_interest")
        db.ingest(photos, source="lfw")

        target = frequent[0]
        probe = sorted(p for p in photos.iterdir() if who[p.name] == target)[0]
        watch = db.watch(photo=probe, expires=dt.date.today() + dt.timedelta(days=7), **WHO)
        summary = db.ingest(tmp_path / "later", source="lfw")
        alerts = db.alerts(watch=watch["id"])
        assert summary.alerts == len(alerts) >= 1
        assert {who[Path(a["photo"]).name] for a in alerts} == {target}
        assert len({a["face_id"] for a in alerts}) == len(alerts)  # one per face
        assert len(db.audit.events(action="alert")) == len(alerts)

        faces = db.catalog.faces_with_photos(db.space)
        details = db.catalog.face_details(f for f, _, _ in faces)
        principal = {
            fid
            for fid, _ in db.catalog.principal_faces(db.space, {d for _, d, _ in faces}).values()
        }
        identity = {
            f: who[Path(details[f]["uri"]).name] if f in principal else f"unknown:{f}"
            for f, _, _ in faces
        }
        for name in frequent:
            mine = [f for f, _, _ in faces if identity[f] == name]
            persons = collections.Counter(db.people.of_faces(mine).values())
            persons.pop(None, None)
            assert persons, f"{name}: no person formed"
            db.erase(person=persons.most_common(1)[0][0], reason="Art. 17", actor="dpo")
        live = set(db.catalog.live_face_ids(db.space).tolist())
        own = [f for f, _, _ in faces if identity[f] in frequent]
        others = [f for f, _, _ in faces if identity[f] not in frequent]
        assert sum(f not in live for f in own) >= 0.95 * len(own)
        assert sum(f not in live for f in others) <= 0.001 * len(others) * len(frequent)


@pytest.mark.slow
def test_eval_cluster_reports_bcubed_on_a_labelled_folder() -> None:
    folder = need_faces("deepface")
    report = eval_cluster(folder, Settings(workers=1))
    for key in (
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f",
        "pairwise_f",
        "n_clusters",
        "n_identities",
        "unassigned",
    ):
        assert key in report
    assert report["n_photos"] == 64 and report["n_faces"] >= 64
    # far above what putting every face alone (or all in one) would score on these photos
    assert report["bcubed_f"] >= 0.8 and report["bcubed_precision"] >= 0.75
    assert 0 < report["n_clusters"] <= report["n_faces"]
