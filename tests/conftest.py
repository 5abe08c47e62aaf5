"""Shared fixtures: where the real faces are, the real models (loaded once), an engine, and
catalog databases on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("COUNTENANCE_FACES", REPO.parent / "shared" / "faces"))

# The suites written against dlib's figures (bands, erasure edges, face counts) keep running on
# it, in this process and in the CLI subprocesses; tests of the default ONNX pipeline name it.
os.environ.setdefault("COUNTENANCE_MODEL", "dlib")


# A scratch PostgreSQL database (scripts/pg-test-server prints one); each test that uses it
# gets a schema of its own there, dropped afterwards.
POSTGRES_URL_VAR = "COUNTENANCE_TEST_POSTGRES_URL"


def need_faces(*parts: str) -> Path:
    """A folder of ../shared/faces; missing data fails under CI and skips elsewhere."""
    path = FACES.joinpath(*parts)
    if not path.exists():
        message = f"real face data missing: {path}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def need_model(file: str) -> Path:
    """An installed file of the default models' package (``model/fr_feature.onnx``), checked
    against its sha256; missing, it fails under CI (make test installs it) and skips elsewhere."""
    from countenance.vision.models import ModelMissing, ModelStore, default_model_dir

    root = Path(os.environ.get("COUNTENANCE_MODEL_DIR") or default_model_dir())
    try:
        return ModelStore(root).path("faceplugin", file)
    except ModelMissing as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return need_faces()


@pytest.fixture(scope="session")
def pipeline():  # type: ignore[no-untyped-def]
    """The real dlib pipeline (HOG + CNN fallback + ResNet), loaded once."""
    from countenance.config import Settings
    from countenance.vision.pipeline import FacePipeline

    return FacePipeline.from_settings(Settings(model="dlib"))


@pytest.fixture()
def engine(tmp_path: Path, pipeline) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from countenance.config import Settings
    from countenance.engine import Engine

    with Engine(Settings(data_dir=tmp_path / "data", workers=1), pipeline=pipeline) as db:
        yield db


def rgb_of(path: Path) -> np.ndarray:
    from countenance import imaging

    return imaging.decode(path.read_bytes()).rgb


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """An engine on the scratch PostgreSQL database; missing, it fails under CI and skips
    elsewhere (start one with scripts/pg-test-server)."""
    url = os.environ.get(POSTGRES_URL_VAR)
    if not url:
        message = f"no PostgreSQL to test against: set {POSTGRES_URL_VAR} (scripts/pg-test-server)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:  # a URL was given: a dead server is a failure
        pytest.fail(f"{POSTGRES_URL_VAR} does not answer: {exc}")
    yield engine
    engine.dispose()


@contextlib.contextmanager
def _postgres_schema(admin: sa.Engine) -> Iterator[str]:
    """The URL of a new, empty schema in the scratch database, dropped on exit."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    # every connection of the URL sees only that schema; and the session's zone is not UTC,
    # as on many servers, so what the catalog stores and hands back must not depend on it
    options = f"-csearch_path={name} -cTimeZone=America/St_Johns"
    if "options" in admin.url.query:
        options = f"{admin.url.query['options']} {options}"
    url = admin.url.update_query_dict({"options": options})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))  # a leaked lock fails
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))


@pytest.fixture()
def postgres_url(postgres_admin: sa.Engine) -> Iterator[str]:
    """The URL of an empty PostgreSQL catalog database (a schema of its own)."""
    with _postgres_schema(postgres_admin) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty catalog database, once for each SQL backend: the contract suites
    of the catalog and of the audit log run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


def run_cli(
    data: Path, *args: str, ok: bool = True, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess (exit codes and streams as users see);
    with ``ok``, a non-zero exit fails the test with its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "countenance", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc
