"""Names in and out of a store as XMP sidecars: a round trip into a fresh store of the same
photos, a sidecar written elsewhere matched by file name, conflicts left alone, and a hostile
sidecar reported without stopping the import."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from countenance.engine import Engine
from countenance.people.xmp import Region, read_sidecar, sidecar
from countenance.types import Box
from tests.unit.test_people import GREEN, RED, open_store, person, photos_of


def build(tmp: Path, name: str) -> tuple[Engine, Path]:
    photos = tmp / "photos"
    if not photos.exists():
        photos_of(photos, {"red": RED, "green": GREEN}, range(80, 104, 8))
    db = open_store(tmp / name)
    db.add_source("s", basis="consent")
    db.ingest(photos, source="s")
    return db, photos


def test_names_go_out_and_come_back_into_another_store(tmp_path: Path) -> None:
    db, _ = build(tmp_path, "one")
    with db:
        red = person(db, "red")
        assert red is not None
        db.people.name(red, "Ruby <&> Ré", actor="archivist")
        out = tmp_path / "xmp"
        assert db.people.export_xmp(out) == {"photos": 3, "faces": 3}
        files = sorted(out.glob("*.xmp"))
        assert [f.name for f in files] == ["red80.png.xmp", "red88.png.xmp", "red96.png.xmp"]
        assert not os.stat(files[0]).st_mode & (stat.S_IRWXG | stat.S_IRWXO)
        found = read_sidecar(files[0].read_bytes())
        assert [r.name for r in found.regions] == ["Ruby <&> Ré"]
    other, _ = build(tmp_path, "two")
    with other:
        assert all(p["name"] is None for p in other.people.list())
        report = other.people.import_xmp(out, actor="archivist")
        assert report["matched_faces"] == 3 and report["conflicts"] == 0 and not report["errors"]
        red = person(other, "red")
        assert red is not None and other.people.show(red)["name"] == "Ruby <&> Ré"
        assert person(other, "green") is not None  # untouched, still unnamed
        (event,) = [e for e in other.audit.events(action="person")]
        assert event.details["op"] == "xmp_import" and "Ruby" not in str(event.details)


def test_a_sidecar_from_elsewhere_is_matched_by_file_name_and_box(tmp_path: Path) -> None:
    db, _ = build(tmp_path, "one")
    with db:
        elsewhere = tmp_path / "lightroom"
        elsewhere.mkdir()
        # as another program writes it: no DocumentID, the face's box a little off
        box = db.people.show(person(db, "green") or 0)["face_list"][0]
        x1, y1, x2, y2 = box["box"]
        name = Path(box["uri"]).name
        data = sidecar(200, 200, [Region(Box(x1 + 2, y1 - 1, x2 - 1, y2 + 2), "Jade")])
        (elsewhere / f"{name}.xmp").write_bytes(data)
        (elsewhere / "bomb.jpg.xmp").write_bytes(
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
        )
        (elsewhere / "nobody.jpg.xmp").write_bytes(data)
        report = db.people.import_xmp(elsewhere, actor="archivist")
        assert report["matched_faces"] == 1
        assert {Path(e["sidecar"]).name for e in report["errors"]} == {
            "bomb.jpg.xmp",
            "nobody.jpg.xmp",
        }
        green = person(db, "green")
        assert green is not None
        shown = db.people.show(green)
        assert shown["name"] == "Jade" and shown["faces"] == 3  # the whole person is named


def test_a_face_of_someone_named_otherwise_is_a_conflict(tmp_path: Path) -> None:
    db, _ = build(tmp_path, "one")
    with db:
        red, green = person(db, "red"), person(db, "green")
        assert red is not None and green is not None
        db.people.name(red, "Ruby", actor="archivist")
        db.people.name(green, "Jade", actor="archivist")
        out = tmp_path / "xmp"
        db.people.export_xmp(out)
        db.people.name(red, "Rose", actor="archivist")  # renamed since
        report = db.people.import_xmp(out, actor="archivist")
        assert report["conflicts"] == 3 and report["matched_faces"] == 3
        assert db.people.show(red)["name"] == "Rose" and db.people.show(green)["name"] == "Jade"
