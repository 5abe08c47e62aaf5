"""Persons, watches and alerts through the real CLI on real faces: ingest groups LFW photos
into persons of one identity each; a name, "not this person" and a split survive a
re-clustering; merge, hide, erase --person (and re-ingest refused); a watch alerts once per
new matching face and on no one else; the human output of search names the persons.

One store is built per module (29 photos) and copied for each test, so the tests stay
independent. Photos are read from ``../shared/faces`` and copied only into pytest's
temporary folders.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_faces, run_cli

pytestmark = pytest.mark.slow

FREQUENT = {"Colin_Powell": 8, "Tony_Blair": 8, "Hugo_Chavez": 7}  # photos ingested of each
SINGLES = 6  # people with one photo in LFW, the first by name
WHO = ["--purpose", "find a missing person", "--case", "case-9"]
ENV = {"COUNTENANCE_ACTOR": "ana", "COUNTENANCE_WORKERS": "1"}


def run(data: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(data, *args, ok=ok, env=ENV)


def js(data: Path, *args: str) -> Any:
    return json.loads(run(data, *args, "--json").stdout)


def identity(uri: str) -> str:
    """The LFW identity of a photo from its file name (``Tony_Blair_0003.jpg``)."""
    return Path(uri).stem.removeprefix("again-").rsplit("_", 1)[0]


class Photos:
    """The LFW photos of the scenario: those ingested into the store, and held-back ones."""

    def __init__(self, root: Path) -> None:
        lfw = need_faces("lfw")
        by_identity: dict[str, list[Path]] = defaultdict(list)
        with (lfw / "manifest.csv").open() as fh:
            for row in csv.DictReader(fh):
                by_identity[row["identity"]].append(lfw / row["path"])
        self.of = {name: sorted(paths) for name, paths in by_identity.items()}
        for name, n in FREQUENT.items():
            if len(self.of.get(name, ())) < n + 3:
                pytest.fail(f"LFW in ../shared/faces has too few photos of {name}")
        singles = sorted(name for name, paths in self.of.items() if len(paths) == 1)[:SINGLES]
        self.gallery = root / "gallery"
        self.gallery.mkdir()
        chosen = [p for name, n in FREQUENT.items() for p in self.of[name][:n]]
        chosen += [self.of[name][0] for name in singles]
        for path in chosen:
            shutil.copyfile(path, self.gallery / path.name)

    def held_back(self, name: str, k: int) -> Path:
        """The k-th photo of ``name`` that is not in the gallery (0-based)."""
        return self.of[name][FREQUENT[name] + k]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Photos]:
    root = tmp_path_factory.mktemp("people")
    photos = Photos(root)
    data = root / "data"
    run(data, "sources", "add", "lfw", "--basis", "legitimate_interest")
    summary = js(data, "ingest", str(photos.gallery), "--source", "lfw")
    assert summary["photos"] == sum(FREQUENT.values()) + SINGLES, summary
    assert summary["persons"] >= len(FREQUENT), summary
    return data, photos


@pytest.fixture()
def store(built: tuple[Path, Photos], tmp_path: Path) -> tuple[Path, Photos]:
    """A copy of the module's store, this test's own."""
    data, photos = built
    mine = tmp_path / "data"
    shutil.copytree(data, mine)
    return mine, photos


def persons(data: Path, *flags: str) -> list[dict[str, Any]]:
    return list(js(data, "people", "list", *flags)["persons"])


def faces_of(data: Path, person: int) -> dict[int, str]:
    """The person's faces: face id -> photo uri."""
    shown = js(data, "people", "show", str(person))
    return {f["face_id"]: f["uri"] for f in shown["face_list"]}


def members(data: Path) -> dict[int, dict[int, str]]:
    """Every person's faces (face id -> photo uri), read from the catalog: the tests'
    bookkeeping only (one query, not a process per person); what they check comes through
    the CLI."""
    with contextlib.closing(sqlite3.connect(data / "catalog.db")) as conn:
        rows = conn.execute(
            "select f.person_id, f.id, p.uri from faces f join photos p on p.id = f.photo_id"
            " where f.person_id is not null and f.skip_reason is null"
        ).fetchall()
    out: dict[int, dict[int, str]] = defaultdict(dict)
    for person, face, uri in rows:
        out[int(person)][int(face)] = uri
    return dict(out)


def persons_of(data: Path, name: str) -> list[int]:
    """The persons holding photos of identity ``name``, most faces first."""
    held = members(data)
    found = [p for p, faces in held.items() if name in {identity(u) for u in faces.values()}]
    return sorted(found, key=lambda p: (-len(held[p]), p))


def test_people_list_groups_faces_into_persons_of_one_identity(
    store: tuple[Path, Photos],
) -> None:
    data, _ = store
    listed = js(data, "people", "list")
    found = listed["persons"]
    assert found and all(p["faces"] >= 2 for p in found)
    assert [p["faces"] for p in found] == sorted((p["faces"] for p in found), reverse=True)
    held = members(data)
    for p in found:
        shown = faces_of(data, p["id"])
        assert shown == held[p["id"]] and len(shown) == p["faces"]
        names = {identity(u) for u in shown.values()}
        assert len(names) == 1, f"person {p['id']} holds {sorted(names)}"
        assert p["name"] is None and not p["hidden"] and p["sources"] == ["lfw"]
        assert p["photos"] == p["faces"] and p["first_seen"] and p["last_seen"]
    # every frequent identity forms a person; the single-photo people form none
    assert {identity(u) for faces in held.values() for u in faces.values()} == set(FREQUENT)
    status = js(data, "status")
    assert listed["assigned"] + listed["unassigned"] == status["indexed"]
    assert listed["assigned"] == sum(len(faces) for faces in held.values())
    assert listed["unassigned"] >= SINGLES

    table = run(data, "people", "list").stdout
    assert "first seen" in table and f"{listed['unassigned']:,} unassigned" in table
    page = persons(data, "--limit", "1", "--offset", "1")
    assert [p["id"] for p in page] == [found[1]["id"]]
    shown = run(data, "people", "show", str(found[0]["id"])).stdout
    assert "pinned" in shown and str(min(held[found[0]["id"]])) in shown


def test_a_name_survives_reclustering_and_is_not_audited(store: tuple[Path, Photos]) -> None:
    data, _ = store
    powell = persons_of(data, "Colin_Powell")[0]
    before = members(data)[powell]
    run(data, "people", "name", str(powell), "Ada Example")
    assert [p["id"] for p in persons(data, "--named")] == [powell]
    assert powell not in {p["id"] for p in persons(data, "--unnamed")}

    counts = js(data, "people", "recluster")
    assert set(counts) >= {"persons", "assigned", "released"}
    after = {p["id"]: p for p in persons(data)}
    assert after[powell]["name"] == "Ada Example"
    assert set(members(data)[powell]) >= set(before)
    shown = js(data, "people", "show", str(powell))["face_list"]
    assert all(f["pinned"] for f in shown if f["face_id"] in before)

    events = js(data, "audit", "list", "--action", "person")
    assert [e["details"]["op"] for e in events] == ["name", "recluster"]
    assert events[0]["details"]["person"] == powell and events[0]["actor"] == "ana"
    exported = data.parent / "audit.jsonl"
    run(data, "audit", "export", "--out", str(exported))
    assert "Ada Example" not in exported.read_text()

    run(data, "people", "name", str(powell), "--clear")
    assert persons(data, "--named") == []


def test_not_this_person_and_split_are_remembered_by_reclustering(
    store: tuple[Path, Photos],
) -> None:
    data, _ = store
    powell = persons_of(data, "Colin_Powell")[0]
    faces = sorted(members(data)[powell])
    assert len(faces) >= 5
    rejected, moved = faces[0], faces[1:3]

    out = js(data, "people", "not", str(powell), "--faces", str(rejected))
    assert out["removed"] == 1
    assert rejected not in members(data)[powell]
    new = js(data, "people", "split", str(powell), "--faces", ",".join(map(str, moved)))
    assert new["person"] == powell and new["faces"] == moved
    split_off = new["new_person"]
    assert sorted(faces_of(data, split_off)) == moved

    run(data, "people", "recluster")
    held = members(data)
    kept, apart = held[powell], held[split_off]
    assert rejected not in kept, "re-clustering put a rejected face back"
    assert set(apart) >= set(moved), "re-clustering undid a split"
    assert not set(apart) & set(kept), "re-clustering merged a split again"
    assert set(kept) >= set(faces) - {rejected, *moved}

    # the split prints the new id alone in its human form
    more = sorted(kept)[:1]
    printed = run(data, "people", "split", str(powell), "--faces", str(more[0])).stdout.strip()
    assert printed.isdigit() and sorted(members(data)[int(printed)]) == more


def test_merge_and_hide(store: tuple[Path, Photos]) -> None:
    data, _ = store
    blair = persons_of(data, "Tony_Blair")
    if len(blair) < 2:  # ingest found them one person: make two, to merge back
        faces = sorted(members(data)[blair[0]])
        blair.append(
            js(data, "people", "split", str(blair[0]), "--faces", str(faces[-1]))["new_person"]
        )
    into, others = blair[0], blair[1:]
    held = members(data)
    total = sum(len(held[p]) for p in blair)
    merged = js(data, "people", "merge", str(into), *map(str, others))
    assert merged["person"] == into and merged["merged"] == sorted(others)
    assert merged["faces"] == total - len(held[into])
    held = members(data)
    assert len(held[into]) == total and not set(others) & set(held)
    gone = run(data, "people", "show", str(others[0]), ok=False)
    assert gone.returncode == 1 and f"no person {others[0]}" in gone.stderr
    assert {identity(u) for u in held[into].values()} == {"Tony_Blair"}

    run(data, "people", "hide", str(into))
    assert into not in {p["id"] for p in persons(data)}
    shown = {p["id"]: p for p in persons(data, "--all")}
    assert shown[into]["hidden"] is True
    assert "(hidden)" in run(data, "people", "list", "--all").stdout
    run(data, "people", "hide", str(into), "--undo")
    assert into in {p["id"] for p in persons(data)}
    run(data, "people", "hide", str(into))
    run(data, "people", "unhide", str(into))
    assert into in {p["id"] for p in persons(data)}


def test_erase_person_removes_its_faces_and_blocks_reingest(
    store: tuple[Path, Photos], tmp_path: Path
) -> None:
    data, _ = store
    chavez = persons_of(data, "Hugo_Chavez")[0]
    theirs = members(data)[chavez]
    before = js(data, "status")
    listed_before = js(data, "people", "list")
    receipt = js(data, "erase", "--person", str(chavez), "--reason", "Art. 17 #5")
    assert receipt["erased_faces"] == len(theirs) and receipt["suppression_id"]
    after = js(data, "status")
    assert after["faces"] == before["faces"] - len(theirs)
    assert after["indexed"] == before["indexed"] - len(theirs)
    listed = js(data, "people", "list")
    assert chavez not in {p["id"] for p in listed["persons"]}
    assert listed["assigned"] == listed_before["assigned"] - len(theirs)
    missing = run(data, "people", "show", str(chavez), ok=False)
    assert missing.returncode == 1 and f"no person {chavez}" in missing.stderr
    two = run(data, "erase", "--person", "1", "--face", "1", "--reason", "x", ok=False)
    assert two.returncode == 1 and "exactly one of" in two.stderr

    again = tmp_path / "again"
    again.mkdir()
    for uri in theirs.values():
        shutil.copyfile(uri, again / f"again-{Path(uri).name}")
    summary = js(data, "ingest", str(again), "--source", "lfw")
    assert summary["faces"] == 0, summary
    assert summary["suppressed"] >= receipt["erased_photos"] >= 1, summary
    assert "Hugo_Chavez" not in {identity(u) for f in members(data).values() for u in f.values()}


def test_a_watch_alerts_once_per_new_matching_face(
    store: tuple[Path, Photos], tmp_path: Path
) -> None:
    data, photos = store
    probe = photos.held_back("Tony_Blair", 0)
    later = [
        photos.held_back("Tony_Blair", 1),
        photos.held_back("Tony_Blair", 2),
        photos.held_back("Colin_Powell", 0),
        photos.held_back("Hugo_Chavez", 0),
    ]
    past = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    refused = run(data, "watch", "add", "--photo", str(probe), *WHO, "--expires", past, ok=False)
    assert refused.returncode in (1, 2) and "must expire in the future" in refused.stderr
    assert js(data, "watch", "list") == []

    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    watch = js(data, "watch", "add", "--photo", str(probe), *WHO, "--expires", until)
    assert watch["actor"] == "ana" and watch["case"] == "case-9" and watch["alerts"] == 0
    assert watch["expires_at"].startswith(until)
    edge = watch["min_similarity"]

    folder = tmp_path / "later"
    folder.mkdir()
    for path in later:
        shutil.copyfile(path, folder / path.name)
    summary = js(data, "ingest", str(folder), "--source", "lfw")
    # the same rule by hand: the new faces a search with the probe finds at the edge
    found = js(data, "search", str(probe), "--top", "100", *WHO)["faces"][0]["matches"]
    new = [m for m in found if Path(m["uri"]).parent == folder.resolve()]
    expected = {m["face_id"] for m in new if m["similarity"] >= edge}
    assert expected and {identity(m["uri"]) for m in new if m["face_id"] in expected} == {
        "Tony_Blair"
    }, new
    assert summary["faces"] >= len(later) and summary["alerts"] == len(expected), summary
    alerts = js(data, "alerts", "list")
    assert len({a["face_id"] for a in alerts}) == len(alerts) == len(expected)
    assert {a["face_id"] for a in alerts} == expected
    assert {identity(a["photo"]) for a in alerts} == {"Tony_Blair"}
    assert all(a["watch"] == watch["id"] and a["case"] == "case-9" for a in alerts)
    assert all(a["similarity"] >= edge - 1e-4 for a in alerts)
    assert js(data, "alerts", "list", "--watch", str(watch["id"]), "--after", "0") == alerts
    assert js(data, "alerts", "list", "--after", str(alerts[-1]["id"])) == []
    assert js(data, "watch", "list")[0]["alerts"] == len(alerts)
    # the same photos again: nothing new is stored, so nothing is alerted twice
    js(data, "ingest", str(folder), "--source", "lfw")
    assert len(js(data, "alerts", "list")) == len(alerts)
    assert str(alerts[0]["face_id"]) in run(data, "alerts", "list").stdout

    run(data, "watch", "remove", str(watch["id"]))
    assert js(data, "watch", "list") == [] and js(data, "alerts", "list") == []


def test_a_watch_on_a_person(store: tuple[Path, Photos]) -> None:
    data, _ = store
    powell = persons_of(data, "Colin_Powell")[0]
    until = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    watch = js(data, "watch", "add", "--person", str(powell), *WHO, "--expires", until)
    assert watch["person"] == powell
    assert js(data, "watch", "list") == [watch]
    assert "person" in run(data, "watch", "list").stdout


def test_search_shows_the_persons_of_its_leads(store: tuple[Path, Photos]) -> None:
    data, photos = store
    powell = persons_of(data, "Colin_Powell")[0]
    probe = photos.held_back("Colin_Powell", 0)
    result = js(data, "search", str(probe), *WHO)
    face = result["faces"][0]
    assert face["persons"] and face["persons"][0]["person"] == powell
    lead = face["persons"][0]
    theirs = members(data)[powell]
    assert set(lead["matched"]) <= set(theirs)
    assert lead["faces"] == len(theirs) and lead["sources"] == ["lfw"]
    assert {m["person"] for m in face["matches"] if m["face_id"] in lead["matched"]} == {powell}

    run(data, "people", "name", str(powell), "Ada Example")
    human = run(data, "search", str(probe), *WHO).stdout
    line = next(x for x in human.splitlines() if f"Ada Example (person {powell})" in x)
    assert f"{len(lead['matched'])} matched faces" in line and "first seen" in line


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for faces in ("12,x", "0", "", "-3", "1,,2"):
        bad = run(data, "people", "not", "1", "--faces", faces, ok=False)
        assert bad.returncode == 2 and "--faces" in bad.stderr, (faces, bad.stderr)
    assert "not a face id" in run(data, "people", "split", "1", "--faces", "a", ok=False).stderr
    assert run(data, "people", "name", "1", ok=False).returncode == 2
    assert run(data, "people", "name", "1", "X", "--clear", ok=False).returncode == 2
    assert run(data, "people", "show", "0", ok=False).returncode == 2
    assert run(data, "people", "merge", "1", ok=False).returncode == 2
    photo = need_faces("small_examples") / "joe_biden" / "biden.jpg"
    until = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    both = run(
        data,
        "watch",
        "add",
        "--photo",
        str(photo),
        "--person",
        "1",
        *WHO,
        "--expires",
        until,
        ok=False,
    )
    assert both.returncode == 2 and "exactly one of --photo and --person" in both.stderr
    neither = run(data, "watch", "add", *WHO, "--expires", until, ok=False)
    assert neither.returncode == 2
    soon = run(data, "watch", "add", "--person", "1", *WHO, "--expires", "soon", ok=False)
    assert soon.returncode == 2 and "is not a date" in soon.stderr
    assert run(data, "alerts", "list", "--limit", "0", ok=False).returncode == 2
    # handled errors exit 1 with the library's message
    none = run(data, "people", "show", "7", ok=False)
    assert none.returncode == 1 and "no person 7" in none.stderr
    nowatch = run(data, "watch", "remove", "3", ok=False)
    assert nowatch.returncode == 1 and "no watch 3" in nowatch.stderr
    assert "Traceback" not in none.stderr + nowatch.stderr
