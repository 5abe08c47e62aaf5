"""``countenance models``: list, install, calibrate and choose face models.

Example::

    countenance models install              # the default models (npm pack, sha256-checked)
    countenance models install faceplugin --from faceplugin-face-recognition-js-0.0.1.tgz
    countenance models list --json
    countenance models use dlib             # a new store's model
    countenance models install sface --from face_recognition_sface_2021dec.onnx --sha256 HEX
    countenance models calibrate sface --photos labelled/   # its bands, from impostor pairs
    countenance models use sface
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from countenance.cli.common import Context, pass_ctx, print_json, progress_bar, stderr, stdout
from countenance.errors import CountenanceError, InvalidArgument

if TYPE_CHECKING:
    from countenance.config import Settings
    from countenance.vision.models import ModelStore


_accept_licence = click.option(
    "--accept-licence",
    metavar="TERMS",
    help="Accept a brought model's licence explicitly; buffalo_l needs non-commercial"
    " (InsightFace's pretrained models are for non-commercial research only).",
)


@click.group()
def models() -> None:
    """List, install, calibrate and choose the face models (detectors, landmarks, embedders,
    age)."""


def _listing(ctx: Context) -> dict[str, Any]:
    from countenance.vision.models import ModelStore, space_of
    from countenance.vision.registry import DEFAULT, PACKAGES, PIPELINES

    store = ModelStore.from_settings(ctx.settings)
    packages = []
    for package in PACKAGES.values():
        packages.append(
            {
                "name": package.name,
                "client": package.client,
                "package": package.package,
                "version": package.version,
                "licence": package.licence,
                "training_data": package.training_data,
                "installed": store.installed(package.name),
                "folder": str(store.location(package, package.files[0]).parent),
                "files": [
                    {"path": f.path, "task": f.task, "sha256": f.sha256} for f in package.files
                ],
            }
        )
    pipelines = []
    for spec in PIPELINES.values():
        space = space_of(spec.name, ctx.settings)
        pipelines.append(
            {
                "name": spec.name,
                "default": spec.name == DEFAULT,
                "summary": spec.summary,
                "space": space.key,
                "dim": space.dim,
                "packages": list(spec.packages),
                "installed": all(store.installed(p) for p in spec.packages),
                "accuracy": spec.accuracy,
            }
        )
    return {
        "model_dir": str(store.root),
        "pipelines": pipelines,
        "packages": packages,
        "brought": _brought_listing(store, ctx.settings),
    }


def _brought_listing(store: ModelStore, settings: Settings) -> list[dict[str, Any]]:
    from countenance.vision.models import space_of
    from countenance.vision.registry import BROUGHT, BROUGHT_PIPELINES

    out = []
    for model in BROUGHT.values():
        lock = store.lock(model.name)
        installed = lock is not None and (store.root / model.folder / model.file).is_file()
        spec = BROUGHT_PIPELINES[model.name]
        out.append(
            {
                "name": model.name,
                "title": model.title,
                "summary": spec.summary,
                "file": model.file,
                "obtained": model.obtained,
                "licence": model.licence,
                "accept_licence": model.accept,
                "terms": model.terms,
                "training_data": model.training_data,
                "pinned_sha256": model.sha256,
                "pinned_size": model.size,
                "input_shape": list(model.input_shape),
                "output_shape": list(model.output_shape),
                "preprocessing": model.preprocessing.to_json(),
                "evidence": model.evidence,
                "packages": list(spec.packages),
                "space": space_of(model.name, settings).key,
                "folder": str(store.root / model.folder),
                "installed": installed,
                "sha256": lock.sha256 if lock else None,
                "accepted_licence": lock.accepted_licence if lock else None,
                "calibrated": lock is not None and lock.bands is not None,
                "bands": asdict(lock.bands) if lock and lock.bands else None,
                "calibration": lock.calibration if lock else None,
            }
        )
    return out


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_models(ctx: Context, as_json: bool) -> None:
    """The registered pipelines and the packages their files come from: licence, training
    data, sha256 of every file, whether installed, accuracy measured here; and the models an
    operator may bring (their exact preprocessing, licence, pin, whether calibrated)."""
    listing = _listing(ctx)
    if as_json:
        print_json(listing)
        return
    table = Table("pipeline", "installed", "space", "made of", "accuracy (measured here)")
    for p in listing["pipelines"]:
        name = p["name"] + (" (default)" if p["default"] else "")
        installed = "yes" if p["installed"] else "no"
        table.add_row(name, installed, p["space"], p["summary"], p["accuracy"])
    stdout.print(table)
    table = Table("package", "installed", "licence", "training data")
    for p in listing["packages"]:
        installed = "yes" if p["installed"] else "no"
        what = f"{p['package']} {p['version']} ({p['client']})"
        table.add_row(what, installed, p["licence"], p["training_data"])
    stdout.print(table)
    table = Table(
        "brought model (--from FILE --sha256 HEX)", "installed", "calibrated", "licence", "input"
    )
    for b in listing["brought"]:
        installed = "yes" if b["installed"] else "no"
        calibrated = "yes" if b["calibrated"] else "no"
        what = f"{b['name']}: {b['title']} ({b['file']})"
        table.add_row(what, installed, calibrated, b["licence"], b["preprocessing"]["text"])
    stdout.print(table)
    stdout.print(f"model directory: {listing['model_dir']} (COUNTENANCE_MODEL_DIR)")


@models.command("install")
@click.argument("name", required=False)
@click.option(
    "--from",
    "tarball",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Install from this file: an npm pack tarball instead of running npm (offline"
    " machines), or a brought model's ONNX file (with --sha256).",
)
@click.option(
    "--sha256",
    metavar="HEX",
    help="A brought model's sha256, as you obtained it with the file; checked before install.",
)
@_accept_licence
@click.option("--npm", default="npm", show_default=True, help="The npm client to run.")
@pass_ctx
def install(
    ctx: Context,
    name: str | None,
    tarball: Path | None,
    sha256: str | None,
    accept_licence: str | None,
    npm: str,
) -> None:
    """Install the packages of pipeline NAME (default: the default pipeline's), every file
    checked against its pinned sha256. NAME may also be a package name, or a brought model
    (auraface, sface, buffalo_l: see `models list`), installed from the file you bring with
    --from FILE --sha256 HEX; nothing is downloaded for those."""
    from countenance.vision.models import ModelStore
    from countenance.vision.registry import BROUGHT, DEFAULT, PACKAGES, PIPELINES

    store = ModelStore.from_settings(ctx.settings)
    target = name or DEFAULT
    if target in BROUGHT:
        model = BROUGHT[target]
        if tarball is None or sha256 is None:
            raise click.UsageError(
                f"{target} is brought by the operator: bring {model.file} from"
                f" {model.obtained} and pass --from FILE --sha256 HEX"
            )
        path = store.install_brought(target, tarball, sha256=sha256, accept_licence=accept_licence)
        stderr.print(
            f"{model.title}: installed as {path}, sha256 checked and pinned; next, measure its"
            f" bands: countenance models calibrate {target} --photos DIR",
            markup=False,
            highlight=False,
        )
        return
    if sha256 is not None:
        raise click.UsageError("--sha256 is for brought models; packages are pinned here")
    if target in PIPELINES:
        names = list(PIPELINES[target].packages)
    elif target in PACKAGES:
        names = [target]
    else:
        known = ", ".join(sorted({*PIPELINES, *PACKAGES, *BROUGHT}))
        raise InvalidArgument(f"unknown model {target!r}: use one of {known}")
    npm_packages = [n for n in names if PACKAGES[n].client == "npm"]
    if tarball is not None and len(npm_packages) != 1:
        raise InvalidArgument("--from installs one npm package: name it")
    for package in names:
        spec = PACKAGES[package].spec
        if tarball is None and PACKAGES[package].client == "npm" and _verified(store, package):
            stderr.print(f"{spec}: already installed, sha256 checked")
            continue
        folder = store.install(package, tarball=tarball, npm=npm)
        stderr.print(f"{spec}: installed in {folder}, sha256 checked")


@models.command("calibrate")
@click.argument("name")
@click.option(
    "--photos",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A labelled folder: manifest.csv with columns path,identity (paths relative to it).",
)
@_accept_licence
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def calibrate(
    ctx: Context, name: str, photos: Path, accept_licence: str | None, as_json: bool
) -> None:
    """Measure brought model NAME's similarity bands and store them beside its file: each
    photo's principal face is embedded, and each band's edge is the similarity that pairs of
    photos of different people exceed at its false-match rate (weak 1e-2, possible 1e-3,
    erase 1e-4, strong 1e-5), over all such pairs. Needs 100,000 impostor pairs or more."""
    from countenance.vision.calibration import calibrate_brought
    from countenance.vision.models import brought_model, require_licence

    require_licence(brought_model(name), accept_licence)
    with progress_bar(f"embedding with {name}") as bar:
        result = calibrate_brought(name, photos, ctx.settings, progress=bar)
    report = {"model": name, "bands": asdict(result.bands), **result.to_json()}
    if as_json:
        print_json(report)
        return
    table = Table("band", "false-match rate", "min similarity", "true-match rate")
    for band, edge in result.edges.items():
        tmr = "-" if edge.tmr is None else f"{edge.tmr:.4f}"
        table.add_row(band, f"{edge.fmr:g}", f"{edge.min_similarity:.4f}", tmr)
    stdout.print(table)
    stdout.print(
        f"{name}: {result.photos} photos of {result.identities} people ({result.skipped}"
        f" skipped), {result.impostor_pairs:,} impostor pairs; bands stored"
    )


def _verified(store: ModelStore, name: str) -> bool:
    from countenance.errors import BackendUnavailable
    from countenance.vision.registry import PACKAGES

    try:
        for f in PACKAGES[name].files:
            store.path(name, f.path)
    except BackendUnavailable:
        return False
    return True


@models.command("use")
@click.argument("name")
@click.option("--actor", help="Who switches (audited); default: the operating-system user.")
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Finish even if some photos can no longer be read: their faces are left out.",
)
@_accept_licence
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def use(
    ctx: Context,
    name: str,
    actor: str | None,
    allow_missing: bool,
    accept_licence: str | None,
    as_json: bool,
) -> None:
    """Make NAME the store's face model. Every stored face is re-embedded into NAME's space
    while searches keep answering in the old one; the switch happens when the new space is
    complete (audited). Killed, it resumes where it stopped when run again. A brought model
    must be installed and calibrated first."""
    from countenance.vision.models import ModelStore, require_licence
    from countenance.vision.registry import BROUGHT

    if name in BROUGHT:  # refused before the store marks a space it cannot fill
        require_licence(BROUGHT[name], accept_licence)
        ModelStore.from_settings(ctx.settings).calibrated(name)
    with progress_bar(f"re-embedding into {name}") as bar:
        report = ctx.engine.use_model(name, actor=actor, allow_missing=allow_missing, progress=bar)
    if as_json:
        print_json(report.to_json())
    elif report.complete:
        stdout.print(
            f"model {name} ({report.space}): {report.faces} faces in {report.photos} photos"
            f" re-embedded, {report.suppressed} refused as suppressed"
        )
    for missing in report.missing[:20]:
        stderr.print(f"unreadable: {missing['message']}", markup=False, highlight=False)
    if not report.complete:
        raise CountenanceError(
            f"{len(report.missing)} photos could not be read: the store still answers in its"
            " old model. Bring them back and run this again, or pass --allow-missing"
        )


COMMANDS = [models]
