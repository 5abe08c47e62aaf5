"""``countenance models``: list, install and choose face models.

Example::

    countenance models install              # the default models (npm pack, sha256-checked)
    countenance models install faceplugin --from faceplugin-face-recognition-js-0.0.1.tgz
    countenance models list --json
    countenance models use dlib             # a new store's model
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from countenance.cli.common import Context, pass_ctx, print_json, progress_bar, stderr, stdout
from countenance.errors import CountenanceError, InvalidArgument

if TYPE_CHECKING:
    from countenance.vision.models import ModelStore


@click.group()
def models() -> None:
    """List, install and choose the face models (detectors, landmarks, embedders, age)."""


def _listing(ctx: Context) -> dict[str, Any]:
    from countenance.vision.models import ModelStore
    from countenance.vision.registry import DEFAULT, PACKAGES, PIPELINES, space_of

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
    return {"model_dir": str(store.root), "pipelines": pipelines, "packages": packages}


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_models(ctx: Context, as_json: bool) -> None:
    """The registered pipelines and the packages their files come from: licence, training
    data, sha256 of every file, whether installed, accuracy measured here."""
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
    stdout.print(f"model directory: {listing['model_dir']} (COUNTENANCE_MODEL_DIR)")


@models.command("install")
@click.argument("name", required=False)
@click.option(
    "--from",
    "tarball",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Install from this npm pack tarball instead of running npm (offline machines).",
)
@click.option("--npm", default="npm", show_default=True, help="The npm client to run.")
@pass_ctx
def install(ctx: Context, name: str | None, tarball: Path | None, npm: str) -> None:
    """Install the packages of pipeline NAME (default: the default pipeline's), every file
    checked against its pinned sha256. NAME may also be a package name."""
    from countenance.vision.models import ModelStore
    from countenance.vision.registry import DEFAULT, PACKAGES, PIPELINES

    store = ModelStore.from_settings(ctx.settings)
    target = name or DEFAULT
    if target in PIPELINES:
        names = list(PIPELINES[target].packages)
    elif target in PACKAGES:
        names = [target]
    else:
        known = ", ".join(sorted({*PIPELINES, *PACKAGES}))
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def use(ctx: Context, name: str, actor: str | None, allow_missing: bool, as_json: bool) -> None:
    """Make NAME the store's face model. Every stored face is re-embedded into NAME's space
    while searches keep answering in the old one; the switch happens when the new space is
    complete (audited). Killed, it resumes where it stopped when run again."""
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
