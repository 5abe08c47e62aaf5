"""Governance controls over fakes of the vision ports: exclusion by jurisdiction, erasure and
suppression, minors, subject access. Each control is checked in catalog, index and search."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import InvalidArgument, PolicyDenied
from countenance.vision.pipeline import FacePipeline
from tests.unit.fakes import block_photo, fake_pipeline

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def open_engine(data: Path) -> Engine:
    return Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline())


def with_gps(
    png: bytes,
    lat: tuple[float, float, float],
    lat_ref: str,
    lon: tuple[float, float, float],
    lon_ref: str,
) -> bytes:
    """The same picture as a JPEG whose EXIF says where it was taken."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    exif = Image.Exif()
    exif[0x8825] = {1: lat_ref, 2: lat, 3: lon_ref, 4: lon}
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def face_ids(db: Engine) -> set[int]:
    return set(db.catalog.live_face_ids(db.space).tolist())


def test_exclusion_purges_refuses_ingest_and_refuses_searchers(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("montreal", basis="consent", jurisdiction="CA-QC")
        db.add_source("chicago", basis="consent", jurisdiction="US-IL")
        db.ingest(write(tmp_path / "ca", "red.png", block_photo(RED)), source="montreal")
        db.ingest(write(tmp_path / "us", "green.png", block_photo(GREEN)), source="chicago")
        # a photo whose EXIF puts it in Paris, from the Chicago source: the photo's place wins
        paris = with_gps(block_photo(BLUE), (48.0, 51.0, 0.0), "N", (2.0, 21.0, 0.0), "E")
        db.ingest(write(tmp_path / "fr", "blue.jpg", paris), source="chicago")
        assert db.status().indexed == 3

        removed = db.exclude("ca", reason="OPC finding", actor="dpo")
        assert removed == {"code": "CA", "photos": 1, "faces": 1}
        assert db.status().indexed == 2 and db.status().photos == 2
        assert not db.search(block_photo(RED, size=110), **WHO).faces[0].matches
        summary = db.ingest(
            write(tmp_path / "ca2", "red2.png", block_photo(RED, 100)), source="montreal"
        )
        assert (summary.excluded, summary.photos, summary.faces) == (1, 0, 0)
        for where in ("CA", "CA-QC"):
            with pytest.raises(PolicyDenied, match="CA is excluded"):
                db.search(block_photo(GREEN), location=where, **WHO)
        assert db.search(block_photo(GREEN), location="US-IL", **WHO).faces[0].matches

        assert db.exclude("FR", actor="dpo")["faces"] == 1  # EXIF GPS said Paris
        assert db.exclude("US-NY", actor="dpo")["faces"] == 0  # Illinois is not New York
        with pytest.raises(InvalidArgument, match="already excluded"):
            db.exclude("CA", actor="dpo")
        assert [e["code"] for e in db.exclusions()] == ["CA", "FR", "US-NY"]
        assert db.allow("CA", actor="dpo") and not db.allow("CA", actor="dpo")
        again = db.ingest(tmp_path / "ca2", source="montreal")
        assert again.photos == 1 and again.excluded == 0
        ops = [e.details.get("op") for e in db.audit.events(action="policy")]
        assert ops == ["exclude", "exclude", "exclude", "allow"]


def test_erase_by_photo_removes_the_person_and_keeps_only_a_template(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        photos = tmp_path / "photos"
        for i, size in enumerate((120, 110, 100, 90)):
            write(photos, f"red{i}.png", block_photo(RED, size))
        write(photos, "green.png", block_photo(GREEN))
        write(photos, "blue.png", block_photo(BLUE))
        db.ingest(photos, source="s")
        others = {i for i in face_ids(db)}
        assert len(others) == 6

        selfie = block_photo(RED, 80)
        receipt = db.erase(photo=selfie, reason="Art. 17 request 114", actor="dpo")
        assert (receipt.erased_faces, receipt.erased_photos) == (4, 4)
        assert receipt.suppression_id is not None and len(receipt.receipt_sha256) == 64
        assert len(face_ids(db)) == 2 and db.index.count() == 2  # the others are untouched
        assert db.status().photos == 2

        # no search with another photo of them returns anything
        assert db.search(block_photo(RED, 70), **WHO).faces[0].matches == ()
        # re-ingesting their photos (new bytes, same person) stores no face
        again = db.ingest(write(tmp_path / "again", "red.png", block_photo(RED, 115)), source="s")
        assert (again.suppressed, again.faces) == (1, 0)
        assert len(face_ids(db)) == 2
        # the receipt is audited, with the erased face ids
        (event,) = db.audit.events(action="erase")
        assert event.details["receipt_sha256"] == receipt.receipt_sha256
        assert len(event.result_face_ids) == 4 and event.purpose == "Art. 17 request 114"
        assert db.audit.verify().ok


def test_erase_by_face_photo_id_and_source(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("a", basis="consent")
        db.add_source("b", basis="consent")
        db.ingest(write(tmp_path / "a", "red.png", block_photo(RED)), source="a")
        db.ingest(write(tmp_path / "a", "green.png", block_photo(GREEN)), source="a")
        db.ingest(write(tmp_path / "b", "blue.png", block_photo(BLUE)), source="b")
        red_face = next(iter(db.search(block_photo(RED), **WHO).faces[0].matches))
        r1 = db.erase(face_id=red_face.face_id, reason="opt-out", actor="dpo")
        assert (r1.erased_faces, r1.erased_photos) == (1, 1) and r1.suppression_id
        green = db.search(block_photo(GREEN), **WHO).faces[0].matches[0]
        r2 = db.erase(photo_id=green.photo_id, reason="takedown", actor="dpo")
        assert (r2.erased_faces, r2.erased_photos, r2.suppression_id) == (1, 1, None)
        r3 = db.erase(source="b", reason="licence ended", actor="dpo")
        assert r3.erased_faces == 1 and db.index.count() == 0
        with pytest.raises(InvalidArgument, match="exactly one"):
            db.erase(face_id=1, source="a", reason="x", actor="dpo")
        with pytest.raises(InvalidArgument, match="reason and an actor"):
            db.erase(face_id=1, reason=" ", actor="dpo")


def test_a_source_that_may_hold_minors_stores_no_faces(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("school", basis="consent", minors=True)
        photos = tmp_path / "photos"
        write(photos, "red.png", block_photo(RED))
        write(photos, "green.png", block_photo(GREEN))
        summary = db.ingest(photos, source="school")
        assert (summary.photos, summary.minors, summary.faces) == (2, 2, 0)
        assert db.status().faces == 0 and db.index.count() == 0
        assert db.ingest(photos, source="school").unchanged == 2  # recorded: not fetched again
        assert db.catalog.get_source("school").minors


def test_subject_access_export_lists_faces_sources_and_searches(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("press", basis="legitimate_interest", consent_ref="n/a")
        photos = tmp_path / "photos"
        write(photos, "red1.png", block_photo(RED))
        write(photos, "red2.png", block_photo(RED, 100))
        write(photos, "green.png", block_photo(GREEN))
        db.ingest(photos, source="press")
        hits = db.search(block_photo(RED, 90), **WHO).faces[0].matches
        written = db.export(
            block_photo(RED, 80), tmp_path / "out", actor="dpo", purpose="Art. 15", case="SAR-1"
        )
        assert written["faces"] == 2
        report = json.loads(Path(written["json"]).read_text())
        assert {f["face_id"] for f in report["faces"]} == {m.face_id for m in hits}
        assert all(f["source"] == "press" for f in report["faces"])
        assert all(f["searches"][0]["case_ref"] == "case-17" for f in report["faces"])
        assert report["sources"][0]["lawful_basis"] == "legitimate_interest"
        html = Path(written["html"]).read_text()
        assert "red1.png" in html and "green.png" not in html
        # a search by photo: audited as one, with its purpose and case
        (event,) = [e for e in db.audit.events(action="search") if e.details.get("op")]
        assert (event.details["op"], event.details["faces"], event.case_ref) == (
            "subject_access",
            2,
            "SAR-1",
        )
        with pytest.raises(PolicyDenied, match="a purpose"):
            db.export(block_photo(RED, 80), tmp_path / "o2", actor="dpo", purpose="", case="c")
        with pytest.raises(PolicyDenied, match="a case reference"):
            db.export(block_photo(RED, 80), tmp_path / "o3", actor="dpo", purpose="Art. 15")


def test_unit_vectors_stay_unit_in_templates(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        db.ingest(write(tmp_path / "p", "red.png", block_photo(RED)), source="s")
        db.erase(photo=block_photo(RED), reason="r", actor="dpo")
        _, vectors, edges = db.catalog.suppression_templates(db.space)
        assert vectors.shape == (2, 128)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert float(edges[0]) == pytest.approx(db.bands.possible)


def test_a_photo_can_state_its_own_jurisdiction_and_minors(tmp_path: Path) -> None:
    from countenance.sources.folder import FileItem
    from countenance.types import Provenance

    class Stated:
        kind = "manifest"

        def __init__(self, rows: list[tuple[Path, str | None, bool]]) -> None:
            self.rows = rows

        def items(self):  # type: ignore[no-untyped-def]
            for path, where, minors in self.rows:
                yield FileItem(path, path.parent, Provenance(str(path), None, where, minors))

    photos = tmp_path / "p"
    red = write(photos, "red.png", block_photo(RED))
    green = write(photos, "green.png", block_photo(GREEN))
    blue = write(photos, "blue.png", block_photo(BLUE))
    with open_engine(tmp_path / "data") as db:
        db.add_source("m", basis="consent", jurisdiction="FR")
        db.exclude("CA", actor="dpo")
        summary = db.ingest(
            Stated([(red, "ca", False), (green, None, True), (blue, "Nowhere", False)]),
            source="m",
        )
        assert (summary.excluded, summary.minors, summary.faces) == (1, 1, 0)
        assert summary.bad_files == {"bad_jurisdiction": 1}


def test_an_age_estimator_keeps_likely_minors_out(tmp_path: Path) -> None:
    from countenance.vision.models import ModelStore
    from countenance.vision.pipeline import FacePipeline, load_age_estimator
    from tests.unit.fakes import FakeDetector, FakeEmbedder, RedIsAChild

    store = ModelStore(tmp_path / "models")

    def load(name: str):  # type: ignore[no-untyped-def]
        return load_age_estimator(Settings(age_estimator=name), store, default=None)

    assert load("auto") is None and load("none") is None
    estimator = load("tests.unit.fakes:RedIsAChild")
    assert isinstance(estimator, RedIsAChild)
    pipeline = FacePipeline(
        FakeDetector(), FakeEmbedder(), min_sharpness=0.0, age_estimator=estimator, adult_age=23
    )
    photos = tmp_path / "p"
    write(photos, "red.png", block_photo(RED))
    write(photos, "green.png", block_photo(GREEN))
    with Engine(Settings(data_dir=tmp_path / "data", workers=1), pipeline=pipeline) as db:
        db.add_source("s", basis="consent")
        summary = db.ingest(photos, source="s")
        assert summary.faces == 1 and summary.skipped_faces == {"minor": 1}
        assert db.index.count() == 1
    from countenance.errors import BackendUnavailable

    with pytest.raises(InvalidArgument, match=r"package\.module:Class"):
        load("no_colon")
    with pytest.raises(BackendUnavailable):
        load("tests.unit.fakes:Nope")
    with pytest.raises(InvalidArgument, match="no estimate"):
        load("tests.unit.fakes:FakeDetector")


def test_a_source_declared_to_hold_no_minors_is_not_age_estimated(tmp_path: Path) -> None:
    from tests.unit.fakes import FakeDetector, FakeEmbedder, RedIsAChild

    pipeline = FacePipeline(
        FakeDetector(), FakeEmbedder(), min_sharpness=0.0, age_estimator=RedIsAChild(), adult_age=23
    )
    checked, declared = tmp_path / "c", tmp_path / "d"
    for folder, size in ((checked, 120), (declared, 110)):  # other bytes: not duplicates
        write(folder, "red.png", block_photo(RED, size))
        write(folder, "green.png", block_photo(GREEN, size))
    with Engine(Settings(data_dir=tmp_path / "data", workers=1), pipeline=pipeline) as db:
        db.add_source("checked", basis="consent")
        db.add_source("declared", basis="consent", adults_only=True, actor="dpo")
        assert db.ingest(checked, source="checked").skipped_faces == {"minor": 1}
        summary = db.ingest(declared, source="declared")
        assert summary.faces == 2 and summary.skipped_faces == {}
        assert {s.name: s.adults_only for s in db.sources()} == {
            "checked": False,
            "declared": True,
        }
        (event,) = [
            e for e in db.audit.events(action="source") if e.details["source"] == "declared"
        ]
        assert event.details["adults_only"] is True and event.actor == "dpo"
        with pytest.raises(InvalidArgument, match="both hold minors"):
            db.add_source("both", basis="consent", minors=True, adults_only=True)


def test_an_erased_face_id_is_never_given_to_another_face(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        db.ingest(write(tmp_path / "a", "green.png", block_photo(GREEN)), source="s")
        (last,) = face_ids(db)
        db.erase(face_id=last, reason="opt-out", actor="dpo")
        db.ingest(write(tmp_path / "b", "blue.png", block_photo(BLUE)), source="s")
        (new,) = face_ids(db)
        assert new > last  # the audit log's result ids keep meaning one face
