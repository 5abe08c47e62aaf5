"""Archives read in place: zip bombs, '..' and absolute entries, links and devices refused with a
clear reason while the rest is ingested; entry-count and size limits. Archives are built here."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from countenance.errors import InvalidArgument
from countenance.sources.archive import ArchiveSource, unsafe_name
from tests.sources.photos import open_fake_engine
from tests.unit.fakes import block_photo

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_a_zip_bomb_and_climbing_entries_are_refused_and_the_rest_ingested(
    tmp_path: Path,
) -> None:
    archive = _zip(
        tmp_path / "photos.zip",
        {
            "red.png": block_photo(RED),
            "sub/green.png": block_photo(GREEN),
            "bomb.png": b"\0" * (20 << 20),  # 20 MB of zeros: deflates about 1000:1
            "../../evil.png": block_photo(BLUE),
            "/abs.png": block_photo(BLUE),
            "C:/win.png": block_photo(BLUE),
            "notes.txt": b"not a photo",
        },
    )
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("box", basis="consent")
        summary = db.ingest(archive, source="box")  # a .zip path is an archive
    assert (summary.photos, summary.faces) == (2, 2)
    assert summary.bad_files == {"archive_bomb": 1, "not_an_image": 1, "unsafe_path": 3}
    messages = {e["reason"]: e["message"] for e in summary.errors}
    assert (
        "compression ratio" in messages["archive_bomb"] and "bomb.png" in messages["archive_bomb"]
    )
    assert "'..'" in messages["unsafe_path"]


def test_tar_gz_links_devices_and_climbing_entries_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in {"red.png": block_photo(RED), "../up.png": block_photo(GREEN)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
        dev = tarfile.TarInfo("dev.png")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    with open_fake_engine(tmp_path / "data") as db:
        db.add_source("box", basis="consent")
        summary = db.ingest(archive, source="box")
    assert summary.photos == 1
    assert summary.bad_files == {"unsafe_entry": 2, "unsafe_path": 1}


def test_a_gzip_bomb_is_read_no_further_than_the_budget(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        data = block_photo(RED)
        info = tarfile.TarInfo("red.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        for n in range(3):
            big = tarfile.TarInfo(f"zeros{n}.png")
            big.size = 8 << 20
            tf.addfile(big, io.BytesIO(b"\0" * big.size))
    assert archive.stat().st_size < 200_000  # 24 MB of zeros in a few kB
    items = list(ArchiveSource(archive, max_ratio=50).items())
    assert [getattr(i, "reason", "ok") for i in items] == ["ok", "archive_limit"]


def test_too_many_entries_refuse_the_archive_whole(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"{n}.png": b"x" for n in range(11)})
    with pytest.raises(InvalidArgument, match="more than 10"):
        list(ArchiveSource(archive, max_entries=10).items())


def test_total_size_limit(tmp_path: Path) -> None:
    photos = {f"{n}.png": block_photo((n * 20, 30, 30)) for n in range(4)}
    archive = _zip(tmp_path / "p.zip", photos)
    src = ArchiveSource(archive, max_total_bytes=sum(len(d) for d in photos.values()) - 1)
    read = []
    for item in src.items():
        try:
            read.append(len(item.read(1 << 20)))
        except Exception as exc:
            read.append(getattr(exc, "reason", "?"))
    assert read[:3] == [len(d) for d in list(photos.values())[:3]]
    assert read[3] == "archive_limit"


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(InvalidArgument, match="not a readable zip"):
        list(ArchiveSource(bad).items())


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("a/b.jpg", False),
        ("a..b.jpg", False),
        ("../a.jpg", True),
        ("a/../../b.jpg", True),
        ("a\\..\\b.jpg", True),
        ("/etc/x", True),
        ("C:\\x.jpg", True),
    ],
)
def test_unsafe_names(name: str, unsafe: bool) -> None:
    assert unsafe_name(name) is unsafe
