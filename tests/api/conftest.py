"""Fixtures of the API tests: the real app (FastAPI TestClient) over an engine in a temporary
folder, with one key per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture()
def make_client(tmp_path: Path, pipeline: Any) -> Iterator[Any]:
    """Build a client over a fresh store; ``make_client(**settings)`` -> (client, keys)."""
    from fastapi.testclient import TestClient

    from countenance.config import Settings
    from countenance.engine import Engine
    from countenance.server import create_app

    opened: list[tuple[Any, Any]] = []

    def make(**overrides: Any) -> tuple[Any, dict[str, str]]:
        settings = Settings(data_dir=tmp_path / f"data{len(opened)}", workers=1, **overrides)
        engine = Engine(settings, pipeline=pipeline)
        store = engine.catalog.key_store(engine.audit)
        keys = {
            role: store.create(f"{role}-1", role, actor="test")[0]
            for role in ("admin", "ingest", "investigator", "auditor")
        }
        client = TestClient(create_app(settings, engine=engine, load_models=False))
        client.__enter__()
        opened.append((client, engine))
        return client, keys

    yield make
    for client, engine in opened:
        client.__exit__(None, None, None)
        engine.close()


@pytest.fixture()
def api(make_client: Any) -> tuple[Any, dict[str, str]]:
    return make_client()  # type: ignore[no-any-return]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
