"""The engine over fakes of the vision ports: ingest, search, repair, resume. No models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import countenance
from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import InvalidArgument, NoFaceFound, NotFound, PolicyDenied
from tests.unit.fakes import block_photo, fake_pipeline

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def open_engine(data: Path, **settings: Any) -> Engine:
    return Engine(Settings(data_dir=data, workers=1, **settings), pipeline=fake_pipeline())


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "a" / "red1.png").write_bytes(block_photo(RED))
    (photos / "a" / "red2.png").write_bytes(block_photo(RED, size=100))
    (photos / "green.png").write_bytes(block_photo(GREEN))
    (photos / "blank.png").write_bytes(block_photo(None))  # no face
    (photos / "copy.png").write_bytes(block_photo(GREEN))  # same bytes as green.png
    return photos


def test_ingest_then_search_returns_same_person_first(tmp_path: Path, folder: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        summary = db.ingest(folder, source="s")
        assert (summary.photos, summary.faces, summary.duplicates) == (4, 3, 1)
        result = db.search(block_photo(RED, size=110), **WHO)
        (face,) = result.faces
        assert face.matches and "red" in face.matches[0].photo
        assert all("green" not in m.photo for m in face.matches)  # strangers fall below bands
        assert face.matches[0].band is not None
        st = db.status()
        assert (st.photos, st.faces, st.indexed) == (4, 3, 3)


def test_ingest_needs_a_declared_source_with_a_basis(tmp_path: Path, folder: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        with pytest.raises(NotFound):
            db.ingest(folder, source="nobody")
        with pytest.raises(PolicyDenied):
            db.add_source("s", basis="we_felt_like_it")
        assert db.status().photos == 0


def test_search_validates_arguments(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        with pytest.raises(InvalidArgument):
            db.search(block_photo(RED), top=0, **WHO)
        with pytest.raises(InvalidArgument):
            db.search(block_photo(RED), min_similarity=2.0, **WHO)
        with pytest.raises(NoFaceFound):
            db.search(block_photo(None), **WHO)
        with pytest.raises(InvalidArgument):
            db.search(12345, **WHO)  # type: ignore[arg-type]


def test_reingest_is_a_noop(tmp_path: Path, folder: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        db.ingest(folder, source="s")
        again = db.ingest(folder, source="s")
        assert (again.photos, again.faces, again.unchanged) == (0, 0, 4)
        assert db.status().indexed == 3


def test_index_missing_or_corrupt_is_rebuilt_on_open(tmp_path: Path, folder: Path) -> None:
    data = tmp_path / "data"
    with open_engine(data) as db:
        db.add_source("s", basis="consent")
        db.ingest(folder, source="s")
    (index_file,) = (data / "index").glob("*.faiss")
    index_file.unlink()
    with open_engine(data) as db:
        assert db.repair.added == 3 and db.index.count() == 3
    index_file.write_bytes(b"garbage")
    with open_engine(data) as db:
        assert db.repair.rebuilt and db.index.count() == 3
        assert db.search(block_photo(RED), **WHO).faces[0].matches


def test_index_ahead_of_catalog_is_trimmed_on_open(tmp_path: Path, folder: Path) -> None:
    data = tmp_path / "data"
    with open_engine(data) as db:
        db.add_source("s", basis="consent")
        db.ingest(folder, source="s")
        stray = np.random.default_rng(0).normal(size=(1, 128)).astype(np.float32)
        db.index.add(np.array([10_000], dtype=np.int64), stray / np.linalg.norm(stray))
    with open_engine(data) as db:
        assert db.repair.removed == 1
        assert 10_000 not in set(db.index.ids().tolist())
        assert db.index.count() == 3


def test_reindex_rebuilds_from_catalog(tmp_path: Path, folder: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("s", basis="consent")
        db.ingest(folder, source="s")
        assert db.reindex() == 3
        assert sorted(db.index.ids().tolist()) == sorted(
            db.catalog.live_face_ids(db.space).tolist()
        )


def test_index_layout_settings_reach_the_faiss_index(tmp_path: Path) -> None:
    from countenance.index.faiss import FaissIndex

    settings = {"approx_threshold": 5, "ivfpq_threshold": 7, "index_memory_gb": 2.5}
    with open_engine(tmp_path / "data", **settings) as db:
        index = db.index
        assert isinstance(index, FaissIndex)
        assert (index.approx_threshold, index.ivfpq_threshold, index.memory_gb) == (5, 7, 2.5)
        vectors = np.random.default_rng(0).normal(size=(6, 128)).astype(np.float32)
        index.add(np.arange(6), vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        assert index.layout == "hnsw"  # past 5 faces; IVF would need 1,000 to train


def test_second_writer_is_refused(tmp_path: Path, folder: Path) -> None:
    from countenance.errors import BackendError

    with open_engine(tmp_path / "data") as db, open_engine(tmp_path / "data") as other:
        db.add_source("s", basis="consent")
        with other.core.writing(), pytest.raises(BackendError, match="another countenance"):
            db.ingest(folder, source="s")
        with db.core.writing(), db.core.writing():  # re-entrant in the process that holds it
            pass


def test_public_api_is_pinned() -> None:
    assert sorted(countenance.__all__) == [
        "BackendError",
        "BackendUnavailable",
        "BadImage",
        "Band",
        "Box",
        "CountenanceError",
        "DetectedFace",
        "EmbeddingSpace",
        "Engine",
        "FolderSource",
        "IndexOutOfSync",
        "IngestSummary",
        "InvalidArgument",
        "Landmarks5",
        "Match",
        "Metric",
        "NoFaceFound",
        "NotFound",
        "PolicyDenied",
        "ProbeFace",
        "Provenance",
        "SearchResult",
        "Settings",
        "SourceInfo",
        "SpaceMismatch",
        "Status",
        "Verification",
        "open",
    ]
    for name in countenance.__all__:
        obj = getattr(countenance, name)
        assert obj.__doc__, f"{name} has no docstring"


def test_import_does_no_work() -> None:
    code = (
        "import sys, countenance; "
        "heavy = {'dlib', 'faiss', 'face_recognition_models'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_open_from_python(tmp_path: Path) -> None:
    db = countenance.open(tmp_path / "data")
    try:
        assert db.status().photos == 0 and db.status().index == "flat"
    finally:
        db.close()


def test_a_dying_worker_loses_only_the_photos_in_flight() -> None:
    from countenance.ingest import run_analyses
    from tests.unit.fakes import die_on_request, init_nothing

    names = [f"p{i}" for i in range(6)] + ["die"] + [f"q{i}" for i in range(12)]
    jobs = ((name, (name.encode(), name)) for name in names)
    results = list(
        run_analyses(
            jobs,
            2,
            Settings(),
            local=lambda: None,  # type: ignore[arg-type,return-value]
            worker_init=init_nothing,
            worker_task=die_on_request,
        )
    )
    assert [tag for tag, _ in results] == names  # every photo is accounted for, in order
    died = [tag for tag, a in results if a.error_reason == "worker_died"]
    assert "die" in died
    assert len(died) <= 2 * 3  # only what was in flight with it
    assert all(a.error is None for tag, a in results if tag.startswith("q") and tag not in died)
    assert results[-1][1].format == "FAKE"  # the pool came back for the rest


def test_search_is_purpose_bound_audited_and_rate_limited(tmp_path: Path, folder: Path) -> None:
    data = tmp_path / "data"
    with Engine(
        Settings(data_dir=data, workers=1, search_rate_per_minute=3), pipeline=fake_pipeline()
    ) as db:
        db.add_source("s", basis="consent", actor="operator")
        db.ingest(folder, source="s", actor="operator")
        for missing in ({"actor": ""}, {"purpose": " "}, {"case": None}):
            with pytest.raises(PolicyDenied, match="every search must name"):
                db.search(block_photo(RED), **{**WHO, **missing})  # type: ignore[arg-type]
        result = db.search(block_photo(RED), **WHO)
        (event,) = db.audit.events(action="search")
        assert (event.actor, event.purpose, event.case_ref) == ("alice", WHO["purpose"], "case-17")
        assert event.probe_sha256 == result.probe_sha256
        assert set(event.result_face_ids) == {m.face_id for m in result.faces[0].matches}
        actions = [(e.action, e.details.get("op")) for e in db.audit.events()]
        assert actions == [
            ("source", "add"),
            ("ingest", "commit"),
            ("ingest", "run"),
            ("search", None),
        ]
        db.search(block_photo(GREEN), **WHO)
        db.search(block_photo(GREEN), **WHO)
        with pytest.raises(PolicyDenied, match="limit is 3"):
            db.search(block_photo(GREEN), **WHO)
        db.search(block_photo(GREEN), **{**WHO, "actor": "bob"})  # per actor
        assert db.audit.verify().ok
    no_case = Settings(data_dir=data, workers=1, require_case=False)
    with Engine(no_case, pipeline=fake_pipeline()) as db:
        assert db.search(block_photo(RED), actor="carol", purpose="archive", case=None).faces


def _expire_everything(db: Engine) -> None:
    import datetime as dt

    from countenance.catalog import schema

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with db.catalog.transaction() as conn:
        conn.execute(
            schema.photos.update()
            .where(schema.photos.c.expires_at.is_not(None))
            .values(expires_at=past)
        )


def test_retention_deletes_expired_faces_from_catalog_and_index(
    tmp_path: Path, folder: Path
) -> None:
    data = tmp_path / "data"
    with open_engine(data) as db:
        db.add_source("kept", basis="consent")
        db.add_source("brief", basis="consent", retention_days=30)
        db.ingest(folder / "a", source="brief")  # two red faces
        db.ingest(folder / "green.png", source="kept")
        assert db.status().indexed == 3
        _expire_everything(db)
        assert db.retention_run(actor="dpo") == {"photos": 2, "faces": 2, "watches": 0}
        st = db.status()
        assert (st.photos, st.faces, st.indexed) == (1, 1, 1)
        assert not db.search(block_photo(RED), **WHO).faces[0].matches
        (event,) = db.audit.events(action="retention")
        assert event.actor == "dpo" and event.details["faces"] == 2
    with open_engine(data) as db:  # reopening finds nothing more to delete
        assert db.status().indexed == 1 and db.retention_run() == {
            "photos": 0,
            "faces": 0,
            "watches": 0,
        }


def test_global_retention_cap_applies_and_runs_on_open(tmp_path: Path, folder: Path) -> None:
    data = tmp_path / "data"
    capped = Settings(data_dir=data, workers=1, max_retention_days=1095)
    with Engine(capped, pipeline=fake_pipeline()) as db:
        db.add_source("s", basis="consent")  # no retention of its own
        db.ingest(folder, source="s")
        _expire_everything(db)
    with open_engine(data) as db:  # opening the store runs retention
        assert db.status().photos == 0 and db.index.count() == 0


def test_retire_source_purges_it_and_refuses_more(tmp_path: Path, folder: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        db.add_source("old", basis="consent")
        db.add_source("new", basis="consent")
        db.ingest(folder / "a", source="old")
        db.ingest(folder / "green.png", source="new")
        assert db.retire_source("old", actor="dpo") == {"photos": 2, "faces": 2}
        assert db.index.count() == 1 and db.status().photos == 1
        assert db.catalog.get_source("old").retired_at is not None
        with pytest.raises(PolicyDenied, match="retired"):
            db.ingest(folder / "a", source="old")
        assert db.audit.events(action="source")[-1].details["op"] == "retire"
        assert db.audit.verify().ok


@pytest.mark.parametrize("backend", ["exact", "milvus"])
def test_engine_on_other_index_backends(tmp_path: Path, folder: Path, backend: str) -> None:
    if backend == "milvus" and not _ci():
        pytest.importorskip("pymilvus")
    data = tmp_path / "data"
    settings = Settings(data_dir=data, workers=1, index_backend=backend)
    with Engine(settings, pipeline=fake_pipeline()) as db:
        db.add_source("s", basis="consent")
        db.ingest(folder, source="s")
        assert db.index.count() == 3
        assert "red" in db.search(block_photo(RED), **WHO).faces[0].matches[0].photo
        assert db.reindex() == 3
        db.erase(photo=block_photo(GREEN), reason="r", actor="dpo")
        assert db.index.count() == 2
    with Engine(settings, pipeline=fake_pipeline()) as db:  # reopened and repaired
        assert db.index.count() == 2
        assert sorted(db.index.ids().tolist()) == sorted(
            db.catalog.live_face_ids(db.space).tolist()
        )


def _ci() -> bool:
    import os

    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
