"""Names, numbers and text are bounded where they enter (issue 18): a source name cannot
steer a URL or pass for another source; a retention cannot overflow a date; a reference or a
purpose cannot be megabytes or hold a lone surrogate."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from countenance.catalog import schema
from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import InvalidArgument
from countenance.types import MAX_RETENTION_DAYS, retention_days, source_name
from tests.unit.fakes import block_photo, fake_pipeline

WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def open_engine(data: Path) -> Engine:
    return Engine(Settings(data_dir=data, workers=1), pipeline=fake_pipeline())


@pytest.mark.parametrize(
    "bad",
    ["", "../sources/victim", "a/b", "..", "x..y", ".hidden", "gal ", " gal", "g\u0430l", "a" * 101,
     "semi;colon", "tab\tname", "new\nline", "caf\u00e9"],
)  # fmt: skip
def test_a_source_name_that_could_steer_a_url_or_pass_for_another_is_refused(
    tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InvalidArgument, match="source name"):
        source_name(bad)
    with open_engine(tmp_path / "data") as db, pytest.raises(InvalidArgument):
        db.add_source(bad, basis="consent")


def test_source_names_differing_only_in_case_are_one_name(tmp_path: Path) -> None:
    for good in ("gal", "press-2024", "A.b_c", "9", "x" * 100):
        assert source_name(good) == good
    with open_engine(tmp_path / "data") as db:
        db.add_source("gal", basis="consent")
        with pytest.raises(InvalidArgument, match="'gal' already exists"):
            db.add_source("GAL", basis="consent")
        assert [s.name for s in db.sources()] == ["gal"]


def test_retention_is_bounded_and_an_old_huge_one_does_not_break_ingest(tmp_path: Path) -> None:
    for bad in (0, -1, MAX_RETENTION_DAYS + 1, 5_000_000, 10**20, True, 1.5, "30"):
        with pytest.raises(InvalidArgument, match="retention_days"):
            retention_days(bad)
    assert retention_days(MAX_RETENTION_DAYS) == MAX_RETENTION_DAYS
    with open_engine(tmp_path / "data") as db:
        with pytest.raises(InvalidArgument, match="retention_days"):
            db.add_source("s", basis="consent", retention_days=5_000_000)
        db.add_source("old", basis="consent", retention_days=30)
        with db.catalog.transaction() as conn:  # as a store from before the bound holds it
            t = schema.sources
            conn.execute(t.update().where(t.c.name == "old").values(retention_days=5_000_000))
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "a.png").write_bytes(block_photo((200, 30, 30)))
        summary = db.ingest(tmp_path / "p", source="old")  # no OverflowError
        assert summary.photos == 1 and not summary.errors


def test_text_is_bounded_and_must_be_valid_unicode(tmp_path: Path) -> None:
    with open_engine(tmp_path / "data") as db:
        with pytest.raises(InvalidArgument, match="at most"):
            db.add_source("big", basis="consent", consent_ref="x" * 19_000_000)
        with pytest.raises(InvalidArgument, match="surrogate"):
            db.add_source("odd", basis="consent", consent_ref="\ud800")
        assert db.sources() == []
        db.add_source("s", basis="consent", consent_ref="ref-" * 100)
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "a.png").write_bytes(block_photo((200, 30, 30)))
        db.ingest(tmp_path / "p", source="s")
        with pytest.raises(InvalidArgument, match="purpose must have at most"):
            db.search(block_photo((200, 30, 30)), **{**WHO, "purpose": "p" * 1_000_000})
        with db.catalog.transaction() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(schema.audit_events)).scalar()
        assert n == 3  # the source, the ingest's commit and its run: the search was refused
