"""SqlCatalog on SQLite only: what the contract suite (tests/contract/test_catalog_contract.py,
run on SQLite and PostgreSQL) cannot say about one backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from countenance.catalog import schema
from countenance.catalog.sql import SqlCatalog
from countenance.errors import BackendError


def test_bad_url_is_backend_error() -> None:
    with pytest.raises(BackendError):
        SqlCatalog.open("not a url")


def test_sqlite_pragmas_are_in_force(tmp_path: Path) -> None:
    catalog = SqlCatalog.sqlite(tmp_path / "new" / "catalog.db")  # the folder is created
    try:
        assert catalog.schema_version() == schema.SCHEMA_VERSION
        with catalog._db.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        catalog.close()
