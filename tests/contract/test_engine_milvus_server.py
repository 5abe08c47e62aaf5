"""The engine on a real Milvus server, configured as a user would: ``index_backend=milvus``,
``index_uri`` and ``index_type`` (settings, hence COUNTENANCE_INDEX_* in the environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import InvalidArgument
from tests.unit.fakes import block_photo, fake_pipeline

RED, GREEN = (200, 30, 30), (30, 200, 30)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}

pytestmark = pytest.mark.milvus_server


def test_engine_builds_its_collection_with_the_configured_index_type(
    tmp_path: Path, milvus_server: str
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "red.png").write_bytes(block_photo(RED))
    (photos / "green.png").write_bytes(block_photo(GREEN))
    settings = Settings(
        data_dir=tmp_path / "data",
        workers=1,
        index_backend="milvus",
        index_uri=milvus_server,
        index_type="ivf_flat",
    )
    with Engine(settings, pipeline=fake_pipeline()) as db:
        try:
            assert db.index.kind == "milvus,ivf_flat"
            db.add_source("s", basis="consent")
            assert db.ingest(photos, source="s").faces == 2
            assert db.index.count() == 2
            match = db.search(block_photo(RED, size=110), **WHO).faces[0].matches[0]
            assert match.photo.endswith("red.png")
        finally:
            db.index.drop()  # type: ignore[attr-defined]


def test_an_unknown_index_type_is_refused_before_anything_is_created(
    tmp_path: Path, milvus_server: str
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        index_backend="milvus",
        index_uri=milvus_server,
        index_type="ANNOY",
    )
    with pytest.raises(InvalidArgument, match="index_type must be one of"):
        Engine(settings, pipeline=fake_pipeline())
