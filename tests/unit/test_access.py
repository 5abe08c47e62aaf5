"""Subject access export: the JSON round-trips, the HTML is complete, inert and self-contained."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from countenance.errors import InvalidArgument
from countenance.governance.access import (
    HTML_NAME,
    JSON_NAME,
    NOTHING_HELD,
    AccessReport,
    HeldFace,
    render_html,
    write_access_report,
)

HOSTILE = "<script>alert(1)</script>"


def _face(face_id: int, photo: str, purposes: list[str], page_url: str | None = None) -> HeldFace:
    return HeldFace(
        face_id=face_id,
        similarity=0.8125,
        band="strong" if face_id % 2 else None,
        box=[10, 20, 110, 140],
        photo_id=100 + face_id,
        photo=photo,
        page_url=page_url,
        source="staff-directory",
        lawful_basis="consent",
        jurisdiction="EU" if face_id % 2 else None,
        ingested_at="2024-01-02T09:00:00+00:00",
        expires_at="2025-01-02T09:00:00+00:00" if face_id % 2 else None,
        searches=[
            {
                "seq": 7 + i,
                "at": f"2024-03-0{i + 1}T10:00:00+00:00",
                "actor": "alice",
                "purpose": purpose,
                "case_ref": f"case-{i}" if i else None,
            }
            for i, purpose in enumerate(purposes)
        ],
    )


def _report(faces: list[HeldFace] | None = None) -> AccessReport:
    return AccessReport(
        generated_at="2024-05-01T12:00:00+00:00",
        requested_by="dpo@example.org — Zoë",
        probe_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        min_similarity=0.6,
        faces=faces
        if faces is not None
        else [
            _face(1, "photos/beach.jpg", ["missing person", "fraud check"]),
            _face(2, "/srv/photos/Ünïcode office.png", ["door access"]),
            _face(3, "photos/no-searches.jpg", []),
        ],
        sources=[
            {
                "name": "staff-directory",
                "lawful_basis": "consent",
                "consent_ref": "HR-2023-44",
                "jurisdiction": "EU",
                "licence": None,
                "retention_days": 365,
            },
            {
                "name": "event-photos",
                "lawful_basis": "legitimate_interest",
                "consent_ref": None,
                "jurisdiction": None,
                "licence": "CC-BY-4.0",
                "retention_days": None,
            },
        ],
    )


def _empty_report() -> AccessReport:
    return AccessReport(
        generated_at="2024-05-01T12:00:00+00:00",
        requested_by="dpo",
        probe_sha256="0" * 64,
        min_similarity=0.6,
        faces=[],
        sources=[],
    )


def test_json_round_trips_every_field(tmp_path: Path) -> None:
    report = _report()
    json_path, _ = write_access_report(report, tmp_path / "out")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert AccessReport.from_json(data) == report
    assert data == report.to_json()
    face_fields = set(HeldFace.__dataclass_fields__)
    assert set(data["faces"][0]) == face_fields
    assert set(data) == set(AccessReport.__dataclass_fields__)
    assert data["faces"][1]["photo"] == "/srv/photos/Ünïcode office.png"


def test_json_is_stable(tmp_path: Path) -> None:
    report = _report()
    first, _ = write_access_report(report, tmp_path / "a")
    second, _ = write_access_report(report, tmp_path / "b")
    text = first.read_text(encoding="utf-8")
    assert text == second.read_text(encoding="utf-8")
    assert text == json.dumps(report.to_json(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert "Zoë" in text  # ensure_ascii=False keeps names readable


def test_to_json_copies_mutable_fields() -> None:
    report = _report()
    data = report.to_json()
    data["faces"][0]["searches"][0]["purpose"] = "changed"
    data["faces"][0]["box"][0] = -1
    data["sources"][0]["name"] = "changed"
    assert report.faces[0].searches[0]["purpose"] == "missing person"
    assert report.faces[0].box[0] == 10
    assert report.sources[0]["name"] == "staff-directory"


def test_html_lists_sources_photos_and_purposes(tmp_path: Path) -> None:
    report = _report()
    _, html_path = write_access_report(report, tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    for source in report.sources:
        assert source["name"] in page
    for face in report.faces:
        assert face.photo in page
        for search in face.searches:
            assert search["purpose"] in page
    assert "HR-2023-44" in page
    assert "365 days" in page
    assert "0.600" in page  # the threshold is stated
    assert report.generated_at in page
    assert "dpo@example.org" in page
    assert "No recorded search has returned this face." in page
    assert NOTHING_HELD not in page


def test_html_says_when_nothing_is_held(tmp_path: Path) -> None:
    _, html_path = write_access_report(_empty_report(), tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    assert NOTHING_HELD in page
    assert "<table" not in page


def test_hostile_values_are_escaped() -> None:
    face = _face(1, f"photos/{HOSTILE}.jpg", [HOSTILE], page_url=f'"><img src=x>{HOSTILE}')
    report = AccessReport(
        generated_at=HOSTILE,
        requested_by=HOSTILE,
        probe_sha256=HOSTILE,
        min_similarity=0.5,
        faces=[face],
        sources=[{"name": HOSTILE, "lawful_basis": HOSTILE, "consent_ref": "<b>x</b>"}],
    )
    page = render_html(report)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("make", [_report, _empty_report], ids=["full", "empty"])
def test_html_is_self_contained(make: Callable[[], AccessReport], tmp_path: Path) -> None:
    _, html_path = write_access_report(make(), tmp_path / "out")
    page = html_path.read_text(encoding="utf-8").lower()
    for banned in ("http://", "https://", "<script", "<img", "<link", "<iframe", "@import"):
        assert banned not in page
    assert not re.search(r"\s(href|src|srcset|on\w+)\s*=", page)
    assert page.startswith("<!doctype html>")
    assert "<style>" in page


def test_uri_photos_are_text_not_links() -> None:
    report = _report([_face(1, "https://cdn.example.org/a.jpg", ["x"], "https://example.org/p")])
    page = render_html(report)
    assert "https://cdn.example.org/a.jpg" in page  # the location is shown...
    assert not re.search(r"\s(href|src)\s*=", page.lower())  # ...but never fetched or linked


def test_non_empty_out_dir_is_refused_and_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / JSON_NAME).write_text("old json", encoding="utf-8")
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    before = {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}
    with pytest.raises(InvalidArgument, match="not empty"):
        write_access_report(_report(), out)
    assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == before


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="not a folder"):
        write_access_report(_report(), target)
    assert target.read_text(encoding="utf-8") == "x"


def test_missing_out_dir_is_created(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "new" / "out"
    json_path, html_path = write_access_report(_report(), out)
    assert (json_path, html_path) == (out / JSON_NAME, out / HTML_NAME)
    # Only the two reports: no temp file left behind.
    assert sorted(p.name for p in out.iterdir()) == sorted([JSON_NAME, HTML_NAME])


def test_empty_existing_out_dir_is_used(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    json_path, html_path = write_access_report(_empty_report(), out)
    assert json_path.is_file() and html_path.is_file()
