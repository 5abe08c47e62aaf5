"""The governance scenario through the CLI on real faces: erasure by a selfie among hundreds
of other people's photos, jurisdiction exclusion, minors, subject access, audit tampering."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import need_faces, run_cli

pytestmark = pytest.mark.slow

WHO = ["--actor", "alice", "--purpose", "scenario", "--case", "gov-1"]


def run(data: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(data, *args, ok=ok, env={"COUNTENANCE_ACTOR": "dpo"})


def faces_by_photo(data: Path) -> dict[str, int]:
    with sqlite3.connect(data / "catalog.db") as conn:
        rows = conn.execute(
            "select p.uri, count(f.id) from photos p join faces f on f.photo_id = p.id"
            " where f.skip_reason is null group by p.uri"
        ).fetchall()
    return {uri: n for uri, n in rows}


def test_governance_scenario_on_real_faces(tmp_path: Path) -> None:
    lfw = need_faces("lfw")
    by_person: dict[str, list[Path]] = defaultdict(list)
    with (lfw / "manifest.csv").open() as fh:
        for row in csv.DictReader(fh):
            by_person[row["identity"]].append(lfw / row["path"])
    # the first person (by name) with 14 or more photos; 250 photos of other people
    person = next(p for p in sorted(by_person) if len(by_person[p]) >= 14)
    theirs = sorted(by_person[person])
    selfie, other_probe, gallery_theirs = theirs[0], theirs[1], theirs[2:14]
    others = [p for name in sorted(by_person) if name != person for p in by_person[name]][:250]
    canadians = [p for name in sorted(by_person)[-400:] if name != person for p in by_person[name]][
        :20
    ]
    press, canada = tmp_path / "press", tmp_path / "canada"
    for folder, photos in ((press, gallery_theirs + others), (canada, canadians)):
        folder.mkdir()
        for photo in photos:
            shutil.copy(photo, folder / photo.name)
    data = tmp_path / "data"
    run(data, "sources", "add", "press", "--basis", "legitimate_interest", "--jurisdiction", "US")
    run(data, "sources", "add", "canada", "--basis", "consent", "--jurisdiction", "CA")
    run(data, "ingest", str(press), "--source", "press")
    run(data, "ingest", str(canada), "--source", "canada")
    before = faces_by_photo(data)
    their_uris = {str((press / p.name).resolve()) for p in gallery_theirs}
    assert their_uris <= set(before)

    # erasure by a selfie that was never ingested
    receipt = json.loads(
        run(data, "erase", "--photo", str(selfie), "--reason", "Art. 17 #1", "--json").stdout
    )
    assert receipt["suppression_id"] and len(receipt["receipt_sha256"]) == 64
    after = faces_by_photo(data)
    erased = {uri for uri in before if uri not in after}
    assert receipt["erased_faces"] >= 1
    assert erased <= their_uris, "faces of other people were erased"
    untouched = {u: n for u, n in before.items() if u not in their_uris}
    assert {u: after.get(u) for u in untouched} == untouched  # every other face, counted
    # searching with the selfie, or with another photo of them, returns none of their faces
    for probe in (selfie, other_probe):
        result = json.loads(run(data, "search", str(probe), "--json", *WHO).stdout)
        returned = {m["photo"] for face in result["faces"] for m in face["matches"]}
        assert not returned & their_uris, (probe, returned & their_uris)
    # re-ingesting every photo of them stores no face
    again = tmp_path / "again"
    again.mkdir()
    for photo in gallery_theirs:
        shutil.copy(photo, again / f"again-{photo.name}")
    summary = json.loads(run(data, "ingest", str(again), "--source", "press", "--json").stdout)
    assert summary["faces"] == 0, summary

    # jurisdiction exclusion
    excluded = json.loads(
        run(data, "policy", "exclude", "CA", "--reason", "order", "--json").stdout
    )
    assert excluded["photos"] == len({p.name for p in canadians})
    assert not any(str(canada) in uri for uri in faces_by_photo(data))
    refused = run(data, "search", str(canadians[0]), "--location", "CA", *WHO, ok=False)
    assert refused.returncode == 1 and "CA is excluded" in refused.stderr
    result = json.loads(run(data, "search", str(canadians[0]), "--json", *WHO).stdout)
    assert not any(str(canada) in m["photo"] for face in result["faces"] for m in face["matches"])
    more = tmp_path / "more-canada"
    more.mkdir()
    shutil.copy(canadians[0], more / "again.jpg")
    stranger = by_person[sorted(by_person)[1000]][0]  # in no folder ingested so far
    shutil.copy(stranger, more / "other.jpg")
    summary = json.loads(run(data, "ingest", str(more), "--source", "canada", "--json").stdout)
    assert summary["excluded"] == 2 and summary["faces"] == 0

    # a source that may contain minors stores no faces
    run(data, "sources", "add", "school", "--basis", "consent", "--minors")
    summary = json.loads(run(data, "ingest", str(more), "--source", "school", "--json").stdout)
    assert summary["faces"] == 0 and summary["minors"] == 2

    # subject access for someone else, then the audit chain, then tampering
    written = json.loads(
        run(
            data,
            "export",
            "--photo",
            str(others[0]),
            "--out",
            str(tmp_path / "sar"),
            "--purpose",
            "GDPR Art. 15 request",
            "--case",
            "SAR-1",
            "--json",
        ).stdout
    )
    assert written["faces"] >= 1 and Path(written["html"]).is_file()
    assert "intact" in run(data, "audit", "verify").stdout
    with sqlite3.connect(data / "catalog.db") as conn:
        conn.execute("update audit_events set actor = 'mallory' where seq = 3")
    tampered = run(data, "audit", "verify", ok=False)
    assert tampered.returncode == 1 and "event 3" in tampered.stderr
