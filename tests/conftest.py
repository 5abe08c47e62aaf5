"""Shared fixtures: where the real faces are, the real models (loaded once), an engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("COUNTENANCE_FACES", REPO.parent / "shared" / "faces"))


def need_faces(*parts: str) -> Path:
    """A folder of ../shared/faces; missing data fails under CI and skips elsewhere."""
    path = FACES.joinpath(*parts)
    if not path.exists():
        message = f"real face data missing: {path}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return need_faces()


@pytest.fixture(scope="session")
def pipeline():  # type: ignore[no-untyped-def]
    """The real default pipeline (dlib HOG + CNN fallback + ResNet), loaded once."""
    from countenance.config import Settings
    from countenance.vision.pipeline import FacePipeline

    return FacePipeline.from_settings(Settings())


@pytest.fixture()
def engine(tmp_path: Path, pipeline) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from countenance.config import Settings
    from countenance.engine import Engine

    with Engine(Settings(data_dir=tmp_path / "data", workers=1), pipeline=pipeline) as db:
        yield db


def rgb_of(path: Path) -> np.ndarray:
    from countenance import imaging

    return imaging.decode(path.read_bytes()).rgb
