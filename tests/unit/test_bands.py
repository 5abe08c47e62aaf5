"""Bands that keep their meaning as the gallery grows: false-match rates between the
calibrated edges, strangers expected per search, and a floor that rises with the gallery."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from countenance.config import Settings
from countenance.engine import Engine
from countenance.types import BAND_FMRS, Bands
from countenance.vision.models import space_of
from countenance.vision.registry import PIPELINES
from tests.unit.fakes import block_photo, fake_pipeline

BANDS = Bands(strong=0.9562, possible=0.9321, weak=0.9148, erase=0.9454)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_each_edge_reads_back_its_own_rate(name: str) -> None:
    bands = space_of(name, Settings()).bands
    assert bands is not None
    for edge, rate in BAND_FMRS:
        assert bands.false_match_rate(getattr(bands, edge)) == pytest.approx(rate, rel=1e-9)
        assert bands.similarity_at(rate) == pytest.approx(getattr(bands, edge), abs=1e-12)


def test_the_rate_falls_as_similarity_rises_and_inverts() -> None:
    grid = np.linspace(0.85, 0.99, 57)
    rates = [BANDS.false_match_rate(float(s)) for s in grid]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    for s in grid:
        rate = BANDS.false_match_rate(float(s))
        if 1e-12 < rate < 1.0:  # not capped
            assert BANDS.similarity_at(rate) == pytest.approx(float(s), abs=1e-9)


def test_strangers_expected_grow_with_the_gallery() -> None:
    assert BANDS.expected_false_leads(BANDS.strong, 1_000_000) == pytest.approx(10.0)
    assert BANDS.expected_false_leads(BANDS.possible, 1_000) == pytest.approx(1.0)
    assert BANDS.expected_false_leads(BANDS.weak, 100) == pytest.approx(1.0)


def test_the_floor_rises_with_the_gallery_and_never_falls_under_weak(tmp_path: Path) -> None:
    with Engine(Settings(data_dir=tmp_path / "d", workers=1), pipeline=fake_pipeline()) as db:
        bands = db.bands
        assert db._gallery_floor(0) == bands.weak
        assert db._gallery_floor(500) == bands.weak  # 500 x 1e-2 < 10
        assert db._gallery_floor(10_000) == pytest.approx(bands.possible)  # 10 / 1e4 = 1e-3
        assert db._gallery_floor(1_000_000) == pytest.approx(bands.strong)  # 10 / 1e6 = 1e-5
        floors = [db._gallery_floor(n) for n in (10**3, 10**4, 10**5, 10**6, 10**7)]
        assert floors == sorted(floors)


def test_search_reports_the_gallery_its_floor_and_strangers_expected(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    photos.mkdir()
    (photos / "red.png").write_bytes(block_photo((200, 30, 30)))
    (photos / "red2.png").write_bytes(block_photo((200, 30, 30), size=100))
    with Engine(Settings(data_dir=tmp_path / "d", workers=1), pipeline=fake_pipeline()) as db:
        db.add_source("s", basis="consent")
        db.ingest(photos, source="s")
        result = db.search(block_photo((200, 30, 30), size=110), **WHO)
        doc = result.to_json()
        assert doc["gallery_faces"] == 2 and doc["min_similarity"] == round(db.bands.weak, 4)
        (face,) = result.faces
        assert face.matches
        for m in face.matches:
            want = 2 * db.bands.false_match_rate(m.similarity)
            assert m.expected_false_leads == pytest.approx(want)
            assert "expected_false_leads" in m.to_json()
    with Engine(
        Settings(data_dir=tmp_path / "d", workers=1, max_false_leads=1e-9),
        pipeline=fake_pipeline(),
    ) as db:  # a budget no lead can meet: the floor rises past every stored face
        result = db.search(block_photo((200, 30, 30), size=110), **WHO)
        assert result.min_similarity > db.bands.strong
        assert all(m.similarity >= result.min_similarity for f in result.faces for m in f.matches)
