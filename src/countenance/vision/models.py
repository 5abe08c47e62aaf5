"""The model directory: installing pinned model packages and handing out checked files.

An npm package is installed with the npm client (``npm pack NAME@VERSION`` in a temporary
folder, so no registry address lives here), or from a tarball brought with ``--from``; only the
registry's listed files are kept, each checked against its sha256 before it is moved into place.
A file is checked again the first time a process loads it, so a file changed on disk is refused
rather than run. pip packages (dlib's weights) are checked where pip put them.

Example::

    store = ModelStore(Path("~/.local/share/countenance/models").expanduser())
    store.install("faceplugin")                  # runs npm pack, checks, writes
    path = store.path("faceplugin", "model/fr_feature.onnx")
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from countenance.errors import BackendUnavailable, InvalidArgument
from countenance.vision.registry import PACKAGES, ModelFile, Package

if TYPE_CHECKING:
    from countenance.config import Settings

_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already hashed here


class ModelMissing(BackendUnavailable):
    """A model file is not installed, or does not match its pinned sha256."""

    code = "model_missing"


def default_model_dir() -> Path:
    """``$XDG_DATA_HOME/countenance/models``, by default ``~/.local/share/countenance/models``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "countenance" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelStore:
    """Model files under ``root`` (``COUNTENANCE_MODEL_DIR``), one folder per package version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        return cls(Path(settings.model_dir) if settings.model_dir else default_model_dir())

    # reading --------------------------------------------------------------------------------

    def location(self, package: Package, file: ModelFile) -> Path:
        """Where ``file`` of ``package`` lives (installed or not)."""
        if package.client == "pip":
            spec = importlib.util.find_spec(package.package)
            if spec is None or spec.origin is None:
                return Path("/nonexistent") / package.package / file.path
            return Path(spec.origin).parent / file.path
        return self.root / package.folder / file.path

    def installed(self, name: str) -> bool:
        """Whether every file of package ``name`` is present (sizes only: cheap)."""
        package = _package(name)
        return all(self.location(package, f).is_file() for f in package.files)

    def path(self, name: str, file_path: str) -> Path:
        """The installed file ``file_path`` of package ``name``, checked against its sha256."""
        package = _package(name)
        file = next((f for f in package.files if f.path == file_path), None)
        if file is None:
            raise InvalidArgument(f"{package.spec} has no registered file {file_path}")
        path = self.location(package, file)
        if not path.is_file():
            raise ModelMissing(_missing_message(package, path))
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _CHECKED:
            if sha256_of(path) != file.sha256:
                raise ModelMissing(
                    f"{path} does not match the sha256 pinned for {package.spec}: reinstall it"
                    f" with `countenance models install {package.name}`"
                )
            _CHECKED.add(key)
        return path

    # installing ----------------------------------------------------------------------------

    def install(self, name: str, *, tarball: Path | None = None, npm: str = "npm") -> Path:
        """Install package ``name`` from ``tarball`` or with the npm client; returns its folder.

        Every registered file is checked against its sha256 before anything is moved into
        place; a mismatch leaves the model directory as it was."""
        package = _package(name)
        if package.client == "pip":
            missing = [f.path for f in package.files if not self.location(package, f).is_file()]
            if missing:
                raise ModelMissing(f"pip install {package.package}=={package.version}")
            for f in package.files:
                self.path(name, f.path)
            return self.location(package, package.files[0]).parent
        target = self.root / package.folder
        with tempfile.TemporaryDirectory(prefix="countenance-models-") as tmp:
            work = Path(tmp)
            if tarball is None:
                tarball = _npm_pack(package, work, npm)
            elif not tarball.is_file():
                raise InvalidArgument(f"{tarball}: no such file")
            staged = work / "staged"
            _extract(package, tarball, staged)
            self.root.mkdir(parents=True, exist_ok=True)
            fresh = Path(tempfile.mkdtemp(prefix=f".{package.folder}.", dir=self.root))
            try:
                for f in package.files:
                    dest = fresh / f.path
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(staged / f.path), dest)
                old = self.root / f".{package.folder}.old"
                if target.exists():
                    shutil.rmtree(old, ignore_errors=True)
                    target.rename(old)
                fresh.rename(target)  # the package appears whole or not at all
                shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(fresh, ignore_errors=True)
        return target


def _package(name: str) -> Package:
    try:
        return PACKAGES[name]
    except KeyError:
        known = ", ".join(sorted(PACKAGES))
        raise InvalidArgument(f"unknown model package {name!r}: use one of {known}") from None


def _missing_message(package: Package, path: Path) -> str:
    if package.client == "pip":
        return f"{path} is missing: pip install {package.package}=={package.version}"
    return (
        f"{path} is missing: run `countenance models install {package.name}` (it runs"
        f" `npm pack {package.spec}`), or bring that tarball and run"
        f" `countenance models install {package.name} --from {package.package}-"
        f"{package.version}.tgz`"
    )


def _npm_pack(package: Package, work: Path, npm: str) -> Path:
    if shutil.which(npm) is None:
        raise ModelMissing(
            f"npm is not on the PATH: on a machine with npm run `npm pack {package.spec}`, copy"
            f" the .tgz here and run `countenance models install {package.name} --from FILE`"
        )
    try:
        done = subprocess.run(
            [npm, "pack", package.spec, "--silent", "--pack-destination", str(work)],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelMissing(f"npm pack {package.spec} timed out (offline?)") from exc
    tarballs = sorted(work.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no tarball"]
        raise ModelMissing(
            f"npm pack {package.spec} failed ({detail[0]}); offline, bring the tarball and run"
            f" `countenance models install {package.name} --from FILE`"
        )
    return tarballs[0]


def _extract(package: Package, tarball: Path, staged: Path) -> None:
    """Only the registered files, read by name (never extractall: no paths from the archive
    are trusted), each checked against its sha256. The tarball's own hash is not required:
    the files are what runs, and a repacked tarball with the same files is as good."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for f in package.files:
                try:
                    member = archive.getmember(f"package/{f.path}")
                except KeyError:
                    raise ModelMissing(f"{tarball} has no package/{f.path}") from None
                source = archive.extractfile(member) if member.isfile() else None
                if source is None:
                    raise ModelMissing(f"{tarball}: package/{f.path} is not a file")
                dest = staged / f.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                with source, dest.open("wb") as out:
                    shutil.copyfileobj(source, out)
                if sha256_of(dest) != f.sha256:
                    raise ModelMissing(f"{tarball}: {f.path} does not match its pinned sha256")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelMissing(f"{tarball} is not a readable npm tarball: {exc}") from exc
