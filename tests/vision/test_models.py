"""The model registry and directory: pinned files, installs that are whole or absent, and an
engine that knows no model backend."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from countenance.config import Settings
from countenance.errors import InvalidArgument
from countenance.vision.models import (
    ModelMissing,
    ModelStore,
    default_model_dir,
    load_pipeline,
    sha256_of,
    space_of,
)
from countenance.vision.registry import PACKAGES, PIPELINES
from tests.conftest import run_cli

FACEPLUGIN = PACKAGES["faceplugin"]


def installed_store() -> ModelStore:
    """The model directory the suite runs with; without the default models it fails under CI
    (make test installs them first) and skips elsewhere."""
    root = Path(os.environ.get("COUNTENANCE_MODEL_DIR") or default_model_dir())
    store = ModelStore(root)
    if not store.installed("faceplugin"):
        message = f"default models missing in {root}: run countenance models install"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return store


def repack(store: ModelStore, out: Path, *, tamper: str | None = None) -> Path:
    """An npm-style tarball (``package/...``) of the installed files, one of them changed if
    ``tamper`` names it, plus a member that tries to climb out of the model directory."""
    with tarfile.open(out, "w:gz") as archive:
        for f in FACEPLUGIN.files:
            data = store.path("faceplugin", f.path).read_bytes()
            if f.path == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            info = tarfile.TarInfo(f"package/{f.path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("package/../../escaped.txt")
        evil.size = 4
        archive.addfile(evil, io.BytesIO(b"evil"))
    return out


def test_every_pipeline_space_carries_bands_and_every_file_a_sha256() -> None:
    settings = Settings()
    for name, spec in PIPELINES.items():
        space = space_of(name, settings)
        assert space.bands is not None, name
        assert space.bands.weak < space.bands.possible < space.bands.erase < space.bands.strong
        assert all(p in PACKAGES for p in spec.packages)
    for package in PACKAGES.values():
        assert all(len(f.sha256) == 64 for f in package.files)
    with pytest.raises(InvalidArgument, match="unknown model"):
        load_pipeline("nope", settings)


def test_the_engine_imports_no_model_backend() -> None:
    code = (
        "import sys, countenance, countenance.engine, countenance.cli;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dlib', 'onnxruntime')"
        " or m.startswith(('countenance.vision.dlib_models', 'countenance.vision.onnx'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_from_a_tarball_checks_every_file_and_trusts_no_path(tmp_path: Path) -> None:
    source = installed_store()
    tarball = repack(source, tmp_path / "fp.tgz")
    store = ModelStore(tmp_path / "models")
    folder = store.install("faceplugin", tarball=tarball)
    assert folder == store.root / FACEPLUGIN.folder
    for f in FACEPLUGIN.files:
        assert sha256_of(store.path("faceplugin", f.path)) == f.sha256
    assert not list(tmp_path.rglob("escaped.txt"))
    assert sorted(p.name for p in store.root.iterdir()) == [FACEPLUGIN.folder]


def test_a_tampered_file_is_refused_and_the_installed_models_stay(tmp_path: Path) -> None:
    source = installed_store()
    store = ModelStore(tmp_path / "models")
    store.install("faceplugin", tarball=repack(source, tmp_path / "good.tgz"))
    bad = repack(source, tmp_path / "bad.tgz", tamper="model/fr_feature.onnx")
    with pytest.raises(ModelMissing, match=r"fr_feature\.onnx does not match"):
        store.install("faceplugin", tarball=bad)
    assert sorted(p.name for p in store.root.iterdir()) == [FACEPLUGIN.folder]
    for f in FACEPLUGIN.files:  # the good install is whole
        assert sha256_of(store.path("faceplugin", f.path)) == f.sha256


def test_a_file_changed_on_disk_is_refused_at_load(tmp_path: Path) -> None:
    source = installed_store()
    store = ModelStore(tmp_path / "models")
    store.install("faceplugin", tarball=repack(source, tmp_path / "fp.tgz"))
    path = store.root / FACEPLUGIN.folder / "model" / "fr_age.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelMissing, match="does not match the sha256"):
        store.path("faceplugin", "model/fr_age.onnx")


def test_without_npm_the_error_says_how_to_bring_the_tarball(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelMissing, match="--from"):
        store.install("faceplugin", npm=str(tmp_path / "no-npm-here"))
    assert not (store.root / FACEPLUGIN.folder).exists()
    with pytest.raises(ModelMissing, match="countenance models install faceplugin"):
        store.path("faceplugin", "model/fr_feature.onnx")


def test_models_list_json_names_every_file_and_what_is_installed(tmp_path: Path) -> None:
    env = {"COUNTENANCE_MODEL_DIR": str(tmp_path / "empty")}
    listing = json.loads(run_cli(tmp_path / "data", "models", "list", "--json", env=env).stdout)
    by_name = {p["name"]: p for p in listing["pipelines"]}
    assert set(by_name) == set(PIPELINES) and by_name["faceplugin"]["default"]
    assert by_name["faceplugin"]["installed"] is False  # an empty model directory
    assert by_name["dlib"]["installed"] is True  # pip installed its package
    packages = {p["name"]: p for p in listing["packages"]}
    assert packages["faceplugin"]["licence"].startswith("MIT")
    assert {f["sha256"] for f in packages["faceplugin"]["files"]} == {
        f.sha256 for f in FACEPLUGIN.files
    }


def test_models_install_without_npm_fails_with_one_clear_message(tmp_path: Path) -> None:
    env = {"COUNTENANCE_MODEL_DIR": str(tmp_path / "m"), "PATH": str(tmp_path)}
    done = run_cli(tmp_path / "data", "models", "install", ok=False, env=env)
    assert done.returncode == 1
    assert "npm is not on the PATH" in done.stderr and "Traceback" not in done.stderr
