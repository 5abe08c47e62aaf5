"""The countenance command end to end: real models, real SQLite and FAISS, real photos."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from countenance.cli import cli
from tests.conftest import need_faces, run_cli

pytestmark = pytest.mark.slow


def run(*args: str, data: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(data, *args, ok=ok, env={"COUNTENANCE_WORKERS": "1"})


def huge_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """Real photos copied at test time (never into the repository) plus hostile files."""
    src = need_faces("small_examples")
    folder = tmp_path / "photos"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("*.csv"))
    good = (folder / "joe_biden" / "biden.jpg").read_bytes()
    bad = folder / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(os.urandom(4096))
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (bad / "empty.png").write_bytes(b"")
    (bad / "huge.png").write_bytes(huge_png(100_000, 100_000))
    (bad / "notes.txt").write_text("not a photo")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(good)
    (bad / "link-out.jpg").symlink_to(outside)
    return folder


def test_ingest_search_verify_status(tmp_path: Path, photos: Path) -> None:
    data = tmp_path / "data"
    run("sources", "add", "family", "--basis", "consent", "--jurisdiction", "ca", data=data)
    out = run("ingest", str(photos), "--source", "family", "--json", data=data)
    summary = json.loads(out.stdout)
    assert summary["photos"] == 18 and summary["faces"] >= 18, summary
    assert summary["bad_files"] == {
        "empty": 1,
        "not_an_image": 2,  # notes.txt, and random bytes Pillow cannot identify
        "outside_source": 1,
        "too_many_pixels": 1,
        "truncated": 1,
    }, summary["bad_files"]
    reported = {Path(e["photo"]).name for e in summary["errors"]}
    assert reported == {
        "corrupt.jpg",
        "truncated.jpg",
        "empty.png",
        "huge.png",
        "notes.txt",
        "link-out.jpg",
    }
    assert "ingest" in out.stderr  # the progress bar is on stderr

    # the same command again stores nothing new
    again = json.loads(run("ingest", str(photos), "--source", "family", "--json", data=data).stdout)
    assert again["photos"] == 0 and again["faces"] == 0 and again["unchanged"] == 18

    status = json.loads(run("status", "--json", data=data).stdout)
    assert status["photos"] == 18 and status["indexed"] == status["faces"] == summary["faces"]
    assert status["index"] == "flat" and status["space"]["dim"] == 128

    probe = photos / "barack_obama" / "obama2.jpg"
    who = ["--actor", "alice", "--purpose", "test the search", "--case", "t-1"]
    refused = run("search", str(probe), "--json", data=data, ok=False)
    assert refused.returncode == 1 and "every search must name" in refused.stderr
    result = json.loads(run("search", str(probe), "--json", *who, data=data).stdout)
    assert len(result["faces"]) == 1
    matches = result["faces"][0]["matches"]
    obama = [m for m in matches if "barack_obama" in m["photo"]]
    assert matches[0]["similarity"] > 0.99  # the probe itself is in the gallery
    assert len(obama) >= 5
    assert all(m["source"] == "family" and len(m["box"]) == 4 for m in matches)
    assert set(matches[0]) == {
        "face_id",
        "person",
        "similarity",
        "band",
        "photo",
        "page_url",
        "uri",
        "also_at",
        "source",
        "box",
        "expected_false_leads",
    }
    assert [m["similarity"] for m in matches] == sorted(
        (m["similarity"] for m in matches), reverse=True
    )
    assert all("joe_biden" not in m["photo"] for m in matches if m["band"] == "strong")

    same = json.loads(
        run(
            "verify", str(probe), str(photos / "barack_obama" / "obama.jpg"), "--json", data=data
        ).stdout
    )
    diff = json.loads(
        run(
            "verify", str(probe), str(photos / "joe_biden" / "biden.jpg"), "--json", data=data
        ).stdout
    )
    assert same["same"] is True and diff["same"] is False
    assert same["similarity"] > diff["similarity"]

    listed = json.loads(run("sources", "list", "--json", data=data).stdout)
    assert listed[0]["name"] == "family" and listed[0]["jurisdiction"] == "CA"
    assert listed[0]["photos"] == 18

    rebuilt = run("reindex", data=data)
    assert f"{status['faces']} faces" in rebuilt.stdout

    # the search above is in the audit log, and tampering with any event is named
    events = json.loads(run("audit", "list", "--json", data=data).stdout)
    ops = [(e["action"], e["details"].get("op")) for e in events]
    # the 18 photos stored in batches (each its own audited commit), then a run storing none
    assert ops[0] == ("source", "add") and ops[-3:] == [
        ("ingest", "run"),
        ("ingest", "run"),
        ("search", None),
    ]
    assert set(ops[1:-3]) == {("ingest", "commit")}
    assert sum(e["details"]["photos"] for e in events if e["details"].get("op") == "commit") == 18
    assert events[-1]["actor"] == "alice" and events[-1]["case_ref"] == "t-1"
    assert f"intact: {len(events)} events" in run("audit", "verify", data=data).stdout
    search_seq = events[-1]["seq"]
    import sqlite3

    with sqlite3.connect(data / "catalog.db") as conn:
        conn.execute(
            "update audit_events set purpose = 'nothing to see' where seq = ?", (search_seq,)
        )
    tampered = run("audit", "verify", data=data, ok=False)
    assert tampered.returncode == 1 and f"event {search_seq} was edited" in tampered.stderr
    out = tmp_path / "audit.jsonl"
    run("audit", "export", "--out", str(out), data=data)
    assert len(out.read_text().splitlines()) == len(events)


def test_errors_exit_1_and_usage_errors_exit_2(tmp_path: Path, photos: Path) -> None:
    data = tmp_path / "data"
    no_source = run("ingest", str(photos), "--source", "nowhere", data=data, ok=False)
    assert no_source.returncode == 1 and "no source named 'nowhere'" in no_source.stderr
    no_basis = run("sources", "add", "x", data=data, ok=False)
    assert no_basis.returncode == 2 and "--basis" in no_basis.stderr
    bad_basis = run("sources", "add", "x", "--basis", "because", data=data, ok=False)
    assert bad_basis.returncode == 2
    bad_cc = run(
        "sources", "add", "x", "--basis", "consent", "--jurisdiction", "Canada", data=data, ok=False
    )
    assert bad_cc.returncode == 1 and "ISO 3166" in bad_cc.stderr
    run("sources", "add", "x", "--basis", "consent", data=data)
    twice = run("sources", "add", "x", "--basis", "consent", data=data, ok=False)
    assert twice.returncode == 1 and "already exists" in twice.stderr
    run("sources", "add", "x", "--basis", "consent", "--exist-ok", data=data)
    no_face = tmp_path / "grey.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 120, 120)).save(no_face)
    who = ["--actor", "alice", "--purpose", "test the search", "--case", "t-1"]
    nothing = run("search", str(no_face), *who, data=data, ok=False)
    assert nothing.returncode == 1 and "no usable face" in nothing.stderr
    bad_probe = run("search", str(photos / "bad" / "corrupt.jpg"), *who, data=data, ok=False)
    assert bad_probe.returncode == 1 and "error:" in bad_probe.stderr
    assert "Traceback" not in bad_probe.stderr


def test_every_command_has_help_text() -> None:
    def walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
        found = [(path, command)]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += walk(sub, f"{path} {name}")
        return found

    commands = walk(cli, "countenance")
    assert len(commands) >= 10
    runner = CliRunner()
    for path, command in commands:
        assert command.help and command.help.strip(), f"{path} has no help text"
        args = [*path.split()[1:], "--help"]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


def test_sources_show_retire_and_retention_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run("sources", "add", "press", "--basis", "contract", "--retention-days", "90", data=data)
    shown = json.loads(run("sources", "show", "press", "--json", data=data).stdout)
    assert shown["lawful_basis"] == "contract" and shown["retention_days"] == 90
    assert shown["retired_at"] is None
    unknown = run("sources", "show", "nope", data=data, ok=False)
    assert unknown.returncode == 1 and "no source named 'nope'" in unknown.stderr
    retired = json.loads(
        run("sources", "retire", "press", "--yes", "--actor", "dpo", "--json", data=data).stdout
    )
    assert retired == {"source": "press", "photos": 0, "faces": 0}
    assert json.loads(run("sources", "show", "press", "--json", data=data).stdout)["retired_at"]
    assert json.loads(run("retention", "run", "--json", data=data).stdout) == {
        "photos": 0,
        "faces": 0,
        "watches": 0,
    }
    events = json.loads(run("audit", "list", "--json", data=data).stdout)
    assert [e["details"].get("op") for e in events] == ["add", "retire"]
