"""The ``countenance`` command: a thin click shell over :class:`~countenance.engine.Engine`.

Results go to stdout (``--json`` for machines); progress and logs go to stderr. Exit codes:
0 ok, 1 a handled error (the message says what), 2 a usage error.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from countenance.catalog.schema import LAWFUL_BASES
from countenance.cli import governance, models, people, server
from countenance.cli.common import (
    Context,
    pass_ctx,
    print_json,
    progress_bar,
    staged_progress,
    stderr,
    stdout,
)
from countenance.config import Settings, file_mask
from countenance.errors import CountenanceError, InvalidArgument
from countenance.types import MAX_RETENTION_DAYS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="COUNTENANCE_DATA",
    default="countenance-data",
    show_default=True,
    help="Data directory (catalog and index). Also COUNTENANCE_DATA.",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
@click.version_option(package_name="countenance")
@click.pass_context
def cli(ctx: click.Context, data: Path, verbose: int) -> None:
    """countenance: find where a person appears across photo sources you may lawfully use."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(message)s")
    settings = Settings.from_env(data_dir=data)
    os.umask(file_mask(settings))  # what this process writes is its owner's (faces)
    context = Context(settings)
    ctx.obj = context
    ctx.call_on_close(context.close)


# sources -----------------------------------------------------------------------------------


@cli.group()
def sources() -> None:
    """Declare and list the sources photos come from."""


@sources.command("add")
@click.argument("name")
@click.option(
    "--basis",
    required=True,
    type=click.Choice(LAWFUL_BASES),
    help="The lawful basis for processing this source's faces (GDPR Art. 6).",
)
@click.option("--jurisdiction", help="ISO 3166 code of where the photos are, e.g. CA or US-IL.")
@click.option(
    "--retention-days",
    type=click.IntRange(min=1, max=MAX_RETENTION_DAYS),
    help="Keep faces this many days (at most 36,500).",
)
@click.option("--consent-ref", help="Where the consent is recorded (a reference, not the text).")
@click.option("--licence", help="Licence under which the photos may be used.")
@click.option(
    "--minors",
    is_flag=True,
    help="The source may contain minors: its photos are recorded, their faces never stored.",
)
@click.option(
    "--adults-only",
    is_flag=True,
    help="You declare the source holds no minors: its faces are not age-estimated.",
)
@click.option(
    "--exist-ok", is_flag=True, help="Succeed if a source of this name exists with this basis."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def sources_add(
    ctx: Context,
    name: str,
    basis: str,
    jurisdiction: str | None,
    retention_days: int | None,
    consent_ref: str | None,
    licence: str | None,
    minors: bool,
    adults_only: bool,
    exist_ok: bool,
    as_json: bool,
) -> None:
    """Declare source NAME with its lawful basis."""
    if exist_ok:
        existing = {i.name: i for i in ctx.engine.sources()}.get(name)
        if existing is not None:
            if existing.lawful_basis != basis:
                raise InvalidArgument(
                    f"source {name!r} exists with basis {existing.lawful_basis}, not {basis}"
                )
            stdout.print(f"source [bold]{name}[/] exists (basis: {existing.lawful_basis})")
            return
    info = ctx.engine.add_source(
        name,
        basis=basis,
        jurisdiction=jurisdiction,
        retention_days=retention_days,
        consent_ref=consent_ref,
        licence=licence,
        minors=minors,
        adults_only=adults_only,
    )
    if as_json:
        print_json(_source_json(info))
    else:
        stdout.print(f"source [bold]{info.name}[/] added (basis: {info.lawful_basis})")


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def sources_list(ctx: Context, as_json: bool) -> None:
    """List declared sources with their photo and face counts."""
    infos = ctx.engine.sources()
    if as_json:
        print_json([_source_json(i) for i in infos])
        return
    table = Table("name", "basis", "jurisdiction", "retention", "photos", "faces")
    for i in infos:
        retention = f"{i.retention_days} d" if i.retention_days else "-"
        table.add_row(
            i.name, i.lawful_basis, i.jurisdiction or "-", retention, str(i.photos), str(i.faces)
        )
    stdout.print(table)


@sources.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def sources_show(ctx: Context, name: str, as_json: bool) -> None:
    """Everything declared about source NAME, and what it holds."""
    info = ctx.engine.catalog.get_source(name)
    if as_json:
        print_json(_source_json(info))
        return
    for key, value in _source_json(info).items():
        stdout.print(f"{key:>14}: {'-' if value is None else value}", highlight=False)


@sources.command("retire")
@click.argument("name")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", help="Who retires it (audited).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def sources_retire(ctx: Context, name: str, actor: str | None, yes: bool, as_json: bool) -> None:
    """Delete every photo and face of source NAME and refuse further ingest into it."""
    ctx.engine.catalog.get_source(name)  # a clear error before any question
    if not yes:
        click.confirm(f"delete every photo and face of source {name!r}?", abort=True, err=True)
    removed = ctx.engine.retire_source(name, actor=actor)
    if as_json:
        print_json({"source": name, **removed})
    else:
        stdout.print(
            f"source {name} retired: {removed['photos']} photos and {removed['faces']} faces"
            " deleted from the catalog and the index"
        )


def _source_json(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "kind": info.kind,
        "lawful_basis": info.lawful_basis,
        "jurisdiction": info.jurisdiction,
        "consent_ref": info.consent_ref,
        "licence": info.licence,
        "retention_days": info.retention_days,
        "created_at": info.created_at,
        "retired_at": info.retired_at,
        "minors": info.minors,
        "adults_only": info.adults_only,
        "photos": info.photos,
        "faces": info.faces,
    }


# ingest ------------------------------------------------------------------------------------


@cli.command()
@click.argument("target", metavar="PATH_OR_URL")
@click.option("--source", "source_name", required=True, help="A declared source (sources add).")
@click.option(
    "--workers", type=click.IntRange(min=0), default=None, help="Processes; 0 = one per core."
)
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Analyse the photos on this Ray cluster: ray://HOST:PORT, HOST:PORT or auto (default:"
    " the cluster setting; none: local processes). Workers are Ray actors there.",
)
@click.option(
    "--site",
    is_flag=True,
    help="PATH_OR_URL is the start page of a site you own or may index: crawl it.",
)
@click.option(
    "--allow-domain",
    "allow_domains",
    multiple=True,
    help="With --site: a domain the crawl may visit (and its subdomains); repeatable.",
)
@click.option(
    "--max-pages", type=click.IntRange(min=1), default=None, help="With --site: pages at most."
)
@click.option(
    "--max-depth", type=click.IntRange(min=0), default=None, help="With --site: link depth."
)
@click.option(
    "--allow-private-addresses",
    is_flag=True,
    help="Fetch from loopback and private addresses too (link-local and multicast never).",
)
@click.option("--user-agent", help="User-Agent for fetches, naming your contact.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def ingest(
    ctx: Context,
    target: str,
    source_name: str,
    workers: int | None,
    cluster: str | None,
    site: bool,
    allow_domains: tuple[str, ...],
    max_pages: int | None,
    max_depth: int | None,
    allow_private_addresses: bool,
    user_agent: str | None,
    as_json: bool,
) -> None:
    """Index every face in PATH_OR_URL: a folder or photo (recursive), a manifest (.csv or
    .jsonl: one photo per row, by url or path, with its provenance), an archive (.zip, .tar,
    .tar.gz), or with --site a site to crawl. Resumable; a re-run fetches only what changed.
    """
    from countenance.sources.opener import open_path
    from countenance.sources.site import SiteSource

    engine = ctx.engine
    is_url = target.lower().startswith(("http://", "https://"))
    if site and not is_url:
        raise click.BadParameter("with --site, give the http(s) URL of the start page")
    if not site and (allow_domains or max_pages is not None or max_depth is not None):
        raise click.UsageError("--allow-domain, --max-pages and --max-depth go with --site")
    if is_url and not site:
        raise click.BadParameter(
            "a URL is crawled only with --site and --allow-domain; list single photos in a"
            " manifest (.csv or .jsonl)"
        )
    if not is_url and not Path(target).exists():
        raise click.BadParameter(f"{target}: no such file or folder")
    overrides: dict[str, Any] = {"allow_private": allow_private_addresses}
    if user_agent:
        overrides["user_agent"] = user_agent
    crawl: SiteSource | None = None
    with engine.fetcher(**overrides) as fetcher:
        if site:
            crawl = SiteSource(
                target,
                fetcher=fetcher,
                allow_domains=allow_domains,
                max_pages=max_pages or ctx.settings.crawl_max_pages,
                max_depth=ctx.settings.crawl_max_depth if max_depth is None else max_depth,
                read_ahead=ctx.settings.fetch_read_ahead,
            )
            src: Any = crawl
        else:
            src = open_path(target, ctx.settings, fetcher=fetcher)
        try:
            with progress_bar("ingest") as update:
                summary = engine.ingest(
                    src, source=source_name, workers=workers, progress=update, cluster=cluster
                )
        finally:
            close = getattr(src, "close", None)
            if callable(close):
                close()
    if crawl is not None:
        stderr.print(f"crawled {len(crawl.pages)} pages", highlight=False)
        for error in crawl.errors[:20]:
            stderr.print(f"  page skipped: {error}", markup=False, highlight=False)
    if as_json:
        print_json(summary.to_json())
        return
    stdout.print(
        f"{summary.photos} photos and {summary.faces} faces indexed into "
        f"[bold]{summary.source}[/] in {summary.seconds:.1f} s "
        f"({summary.unchanged} already stored, {summary.duplicates} duplicates,"
        f" {summary.near_duplicates} near-duplicates linked)"
    )
    for reason, n in sorted(summary.skipped_faces.items()):
        stdout.print(f"  faces skipped, {reason}: {n}")
    for reason, n in sorted(summary.bad_files.items()):
        stdout.print(f"  files skipped, {reason}: {n}")
    for error in summary.errors[:20]:
        stderr.print(f"  {error['message']}", markup=False, highlight=False)
    if len(summary.errors) > 20:
        stderr.print(f"  ... and {len(summary.errors) - 20} more (use --json for all)")


# search and verify ---------------------------------------------------------------------------


@cli.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option(
    "--min-similarity",
    type=click.FloatRange(-1.0, 1.0),
    default=None,
    help="Raise the floor (cosine); matches below the weak band are never shown.",
)
@click.option(
    "--actor", envvar="COUNTENANCE_ACTOR", help="Who searches (audited). Also COUNTENANCE_ACTOR."
)
@click.option("--purpose", help="Why: the lawful purpose of this search (audited).")
@click.option("--case", "case_ref", help="The case reference the search serves (audited).")
@click.option(
    "--location",
    envvar="COUNTENANCE_LOCATION",
    help="ISO 3166 code of where the searcher is; searches from excluded places are refused.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def search(
    ctx: Context,
    photo: Path,
    top: int,
    min_similarity: float | None,
    actor: str | None,
    purpose: str | None,
    case_ref: str | None,
    location: str | None,
    as_json: bool,
) -> None:
    """Find where the people in PHOTO appear: leads ranked by similarity, with bands.

    Every search names an actor, a purpose and a case, and is recorded in the audit log.
    """
    result = ctx.engine.search(
        photo,
        actor=actor or "",
        purpose=purpose or "",
        case=case_ref,
        location=location,
        top=top,
        min_similarity=min_similarity,
    )
    if as_json:
        print_json(result.to_json())
        return
    stderr.print(
        f"searched {result.gallery_faces:,} faces; leads need similarity"
        f" {result.min_similarity:.3f} or more (strangers expected: gallery x false-match rate)"
    )
    for n, face in enumerate(result.faces, 1):
        stdout.print(f"[bold]face {n}[/] at {face.box.as_list()}: {len(face.matches)} leads")
        for line in people.person_lines(face.persons):
            stdout.print(line, markup=False, highlight=False)
        if not face.matches:
            continue
        table = Table(
            "similarity", "band", "strangers expected", "person", "photo", "source", "box"
        )
        table.columns[4].overflow = "fold"
        for m in face.matches:
            table.add_row(
                f"{m.similarity:.3f}",
                m.band.value if m.band else "-",
                f"{m.expected_false_leads:.2g}" if m.expected_false_leads is not None else "-",
                "-" if m.person is None else str(m.person),
                m.photo,
                m.source,
                str(m.box.as_list()),
            )
        stdout.print(table)


@cli.command()
@click.argument("a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def verify(ctx: Context, a: Path, b: Path, as_json: bool) -> None:
    """Whether the largest faces in photos A and B are the same person."""
    v = ctx.engine.verify(a, b)
    if as_json:
        print_json(v.to_json())
        return
    verdict = "same person" if v.same else "different people"
    band = v.band.value if v.band else "below the weak band"
    stdout.print(f"{verdict}: similarity {v.similarity:.3f} ({band})")


# status and maintenance ----------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Counts of sources, photos, faces and indexed faces; index kind and embedding space."""
    st = ctx.engine.status()
    if as_json:
        print_json(st.to_json())
        return
    for key, value in st.to_json().items():
        if key == "space":
            value = f"{value['model']} v{value['version']} ({value['dim']}-d {value['metric']})"
        stdout.print(f"{key:>8}: {value}")


@cli.command()
@pass_ctx
def reindex(ctx: Context) -> None:
    """Rebuild the vector index from the embeddings stored in the catalog."""
    n = ctx.engine.reindex()
    stdout.print(f"index rebuilt: {n} faces ({ctx.engine.index.kind})")


@cli.group("eval")
def eval_group() -> None:
    """Measure accuracy on your own labelled photos (temporary store, real pipeline)."""


_MODEL_OPTION = click.option(
    "--model",
    "model_names",
    multiple=True,
    metavar="NAME",
    help="Face model to evaluate; repeat to compare models on the same photos, each in its "
    "own temporary store. Default: the model setting.",
)


def _each_model(ctx: Context, model_names: tuple[str, ...], evaluate: Any) -> list[dict[str, Any]]:
    """``evaluate(settings, progress)`` once per model, with a progress bar per stage."""
    from countenance.vision.registry import pipeline_spec

    for name in model_names:
        pipeline_spec(name)  # an unknown name fails now, not after the models before it
    settings = [ctx.settings.replace(model=m) for m in model_names] or [ctx.settings]
    reports = []
    with staged_progress() as stage:
        for s in settings:
            named = stage if len(settings) == 1 else (lambda n, m=s.model: stage(f"{m}: {n}"))
            reports.append(evaluate(s, named))
    return reports


@eval_group.command("pairs")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_MODEL_OPTION
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the DET curves (FNMR against FMR) of every model to this PNG file.",
)
@click.option("--workers", type=click.IntRange(min=0), default=0, help="0 = one per core.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: a report, a list of them for 2+ models."
)
@pass_ctx
def eval_pairs_cmd(
    ctx: Context,
    directory: Path,
    model_names: tuple[str, ...],
    plot: Path | None,
    workers: int,
    as_json: bool,
) -> None:
    """Verification accuracy on DIRECTORY in LFW layout with pairs.txt (k-fold protocol), and
    TAR at FAR 1e-3, 1e-4, 1e-5 over every pair of its photos (all of manifest.csv if any)."""
    from countenance.evaluation import eval_pairs

    if plot:
        from countenance import plots

        plots.require()
    reports = _each_model(
        ctx,
        model_names,
        lambda settings, progress: eval_pairs(
            directory, settings, workers=workers, progress=progress
        ),
    )
    if plot:
        first = reports[0]
        plots.det_plot(
            [plots.Curve(r["model"], r["det"]["fmr"], r["det"]["fnmr"]) for r in reports],
            plot,
            title=f"DET on {directory.resolve().name}: {first['n_genuine_pairs']:,} genuine and "
            f"{first['n_impostor_pairs']:,} impostor pairs ({first['n_images']:,} photos)",
        )
        stderr.print(f"DET curves written to {plot}")
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
        return
    for r in reports:
        tars = ", ".join(f"{far} {r[f'tar_at_far_{far}']}" for far in ("1e-3", "1e-4", "1e-5"))
        stdout.print(
            f"{r['model']}: accuracy {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f} over "
            f"{r['n_pairs']} pairs; TAR at FAR {tars} over {r['n_genuine_pairs']:,} genuine "
            f"and {r['n_impostor_pairs']:,} impostor pairs; {r['n_no_face']} pairs with a "
            "photo where no face was found"
        )


@eval_group.command("identify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_MODEL_OPTION
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw FNIR (rank 1) against FPIR of every model to this PNG file.",
)
@click.option("--workers", type=click.IntRange(min=0), default=0, help="0 = one per core.")
@click.option("--seed", type=int, default=0, show_default=True, help="Held-out identities.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: a report, a list of them for 2+ models."
)
@pass_ctx
def eval_identify_cmd(
    ctx: Context,
    directory: Path,
    model_names: tuple[str, ...],
    plot: Path | None,
    workers: int,
    seed: int,
    as_json: bool,
) -> None:
    """Identification (1:N) on DIRECTORY with manifest.csv (path,identity)."""
    from countenance.evaluation import eval_identify

    if plot:
        from countenance import plots

        plots.require()
    reports = _each_model(
        ctx,
        model_names,
        lambda settings, progress: eval_identify(
            directory, settings, workers=workers, seed=seed, progress=progress
        ),
    )
    if plot:
        first = reports[0]
        plots.fpir_fnir_plot(
            [
                plots.Curve(r["model"], r["fpir_fnir"]["fpir"], r["fpir_fnir"]["fnir"])
                for r in reports
            ],
            plot,
            title=f"Identification on {directory.resolve().name}: {first['n_mated']:,} mated "
            f"and {first['n_nonmated']:,} non-mated searches, "
            f"{first['n_gallery_photos']:,} enrolled photos",
        )
        stderr.print(f"FNIR/FPIR curves written to {plot}")
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
        return
    for r in reports:
        stdout.print(
            f"{r['model']}: rank-1 {r['rank1']:.4f}, rank-10 {r['rank10']:.4f}, "
            f"FNIR@FPIR=0.01 {r['fnir_at_fpir_0.01']:.4f} "
            f"({r['n_mated']} mated, {r['n_nonmated']} non-mated searches, "
            f"{r['n_no_face']} without a face)"
        )


@eval_group.command("cluster")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_MODEL_OPTION
@click.option("--workers", type=click.IntRange(min=0), default=0, help="0 = one per core.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON: a report, a list of them for 2+ models."
)
@pass_ctx
def eval_cluster_cmd(
    ctx: Context, directory: Path, model_names: tuple[str, ...], workers: int, as_json: bool
) -> None:
    """How ingest groups the photos of DIRECTORY (manifest.csv: path,identity) into persons:
    BCubed precision, recall and F, pairwise F, clusters and unassigned faces."""
    from countenance.evaluation import eval_cluster

    reports = _each_model(
        ctx,
        model_names,
        lambda settings, progress: eval_cluster(
            directory, settings, workers=workers, progress=progress
        ),
    )
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
        return
    for r in reports:
        stdout.print(
            f"{r['model']}: BCubed F {r['bcubed_f']} (precision {r['bcubed_precision']}, "
            f"recall {r['bcubed_recall']}), pairwise F {r['pairwise_f']}; {r['n_clusters']} "
            f"persons for {r['n_identities']} identities, {r['unassigned'] or 0:.1%} of "
            f"{r['n_faces']} faces unassigned"
        )


for _command in [
    *governance.COMMANDS,
    *server.COMMANDS,
    *models.COMMANDS,
    *people.COMMANDS,
]:
    cli.add_command(_command)


def main() -> None:
    """Entry point of the console script: handled errors exit 1 with their message."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        stderr.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CountenanceError as exc:
        stderr.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        stderr.print("interrupted; run the same command again to resume")
        sys.exit(130)
