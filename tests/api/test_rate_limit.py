"""The search rate limit reserves its slot before a search runs, so concurrent searches by one
key cannot all pass it; a subject access export by photo is a search and counts too."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from countenance.config import Settings
from countenance.engine import Engine
from countenance.errors import RateLimited
from tests.api.conftest import auth
from tests.conftest import need_faces
from tests.unit.fakes import block_photo, fake_pipeline

RED = (200, 30, 30)
WHO = {"actor": "alice", "purpose": "find a missing person", "case": "case-17"}


def test_40_concurrent_searches_under_a_limit_of_30_let_exactly_30_through(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", workers=1, search_rate_per_minute=30)
    with Engine(settings, pipeline=fake_pipeline()) as db:
        db.add_source("s", basis="consent")
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "red.png").write_bytes(block_photo(RED))
        db.ingest(tmp_path / "p", source="s")

        def one(_: int) -> str:
            try:
                db.search(block_photo(RED, 100), **WHO)
            except RateLimited:
                return "limited"
            return "ok"

        with ThreadPoolExecutor(max_workers=40) as pool:
            outcomes = list(pool.map(one, range(40)))
        assert outcomes.count("ok") == 30 and outcomes.count("limited") == 10
        assert len(db.audit.events(action="search")) == 30
        # another key has its own minute
        db.search(block_photo(RED, 100), **{**WHO, "actor": "bob"})


def test_40_concurrent_api_searches_by_one_key_exactly_30_succeed(make_client: Any) -> None:
    client, keys = make_client(search_rate_per_minute=30)
    photo = (need_faces("small_examples") / "joe_biden" / "biden.jpg").read_bytes()
    ingested = client.post(
        "/v1/sources",
        headers=auth(keys["admin"]),
        json={"name": "s", "lawful_basis": "consent"},
    )
    assert ingested.status_code == 201, ingested.text

    def one(_: int) -> int:
        answer = client.post(
            "/v1/search",
            headers=auth(keys["investigator"]),
            data={"purpose": "find the subject", "case": "CASE-1"},
            files={"photo": ("probe.jpg", io.BytesIO(photo), "image/jpeg")},
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        codes = list(pool.map(one, range(40)))
    # the gallery is empty: a search that runs answers 200 with no matches; past the limit 429
    assert codes.count(429) == 10 and codes.count(200) == 30, codes
    # subject access by photo is a search: it takes a slot of its key's minute too
    for expected in [200] * 30 + [429]:
        export = client.post(
            "/v1/exports",
            headers=auth(keys["auditor"]),
            data={"purpose": "GDPR Art. 15 request", "case": "SAR-1"},
            files={"photo": ("probe.jpg", io.BytesIO(photo), "image/jpeg")},
        )
        assert export.status_code == expected, export.text
