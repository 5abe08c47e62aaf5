"""``countenance people``, ``watch`` and ``alerts``: the persons ingest grouped faces into,
what people decide about them, and watchlists with their alerts. Thin shells over
``Engine.people``, ``Engine.watch``, ``Engine.watches``, ``Engine.unwatch`` and
``Engine.alerts``.

Example::

    countenance people list
    countenance people name 7 "Ada Example" --actor archivist
    countenance people not 7 --faces 40,41 --actor archivist
    countenance watch add --person 7 --purpose "missing person" --case 17 \\
        --expires 2027-01-31 --actor ana
    countenance alerts list --json
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from countenance.cli.common import Context, pass_ctx, print_json, progress_bar, stdout
from countenance.types import PersonLead

_PERSON = click.IntRange(min=1)
_actor = click.option(
    "--actor",
    envvar="COUNTENANCE_ACTOR",
    required=True,
    help="Who decides (audited). Also COUNTENANCE_ACTOR.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class FaceIds(click.ParamType):
    """A comma-separated list of face ids (positive integers), e.g. ``12,13``."""

    name = "IDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not any(parts):
            self.fail("give at least one face id, e.g. 12,13", param, ctx)
        ids: list[int] = []
        for part in parts:
            if not part.isdigit() or int(part) < 1:
                self.fail(
                    f"{part!r} is not a face id (face ids are positive integers: 12,13)",
                    param,
                    ctx,
                )
            ids.append(int(part))
        return tuple(dict.fromkeys(ids))


class Expiry(click.ParamType):
    """A date (``YYYY-MM-DD``: the end of that day, UTC) or an ISO 8601 date and time."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.date):
            return value
        text = str(value).strip()
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time", param, ctx)


_faces = click.option(
    "--faces",
    "face_ids",
    type=FaceIds(),
    required=True,
    help="Face ids, comma-separated (see `people show`), e.g. 12,13.",
)


def _when(value: str | None) -> str:
    """An ISO 8601 time as the table shows it: date and minute, UTC."""
    return value[:16].replace("T", " ") if value else "-"


def person_lines(leads: Sequence[PersonLead]) -> list[str]:
    """One line per person one probe face's leads belong to, best first (for ``search``):
    lines, not a table, so that nothing is cut on a narrow terminal."""
    lines = []
    for lead in leads:
        label = f"{lead.name} (person {lead.person})" if lead.name else f"person {lead.person}"
        lines.append(
            f"  {label}: {len(lead.matched)} matched faces, best {lead.similarity:.3f};"
            f" {lead.faces} faces in {lead.photos} photos from {', '.join(lead.sources) or '-'};"
            f" first seen {_when(lead.first_seen)}, last seen {_when(lead.last_seen)}"
        )
    return lines


# people --------------------------------------------------------------------------------------


@click.group()
def people() -> None:
    """The persons ingest groups faces into: list, show, name, merge, split, hide, "not this
    person", and re-cluster. What people decide binds later clustering."""


@people.command("list")
@click.option("--all", "include_hidden", is_flag=True, help="Include hidden persons.")
@click.option(
    "--named/--unnamed",
    default=None,
    help="Only named persons, or only unnamed ones (default: both).",
)
@click.option(
    "--min-faces",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Only persons with at least this many faces.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="At most this many persons.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Skip this many persons first (the next page).",
)
@_json
@pass_ctx
def people_list(
    ctx: Context,
    include_hidden: bool,
    named: bool | None,
    min_faces: int,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """Persons, most faces first, with how many faces and photos each has, from which
    sources, and when they were first and last ingested."""
    found = ctx.engine.people.list(
        min_faces=min_faces, hidden=include_hidden, named=named, limit=limit, offset=offset
    )
    counts = ctx.engine.people.counts()
    if as_json:
        print_json({"persons": found, **counts})
        return
    table = Table("id", "name", "faces", "photos", "sources", "first seen", "last seen")
    for p in found:
        name = p["name"] or "-"
        table.add_row(
            str(p["id"]),
            f"{name} (hidden)" if p["hidden"] else name,
            str(p["faces"]),
            str(p["photos"]),
            ", ".join(p["sources"]) or "-",
            _when(p["first_seen"]),
            _when(p["last_seen"]),
        )
    if found:
        stdout.print(table)
    else:
        stdout.print("no person matches")
    stdout.print(
        f"{counts['assigned']:,} faces assigned to persons, {counts['unassigned']:,} unassigned",
        highlight=False,
    )


@people.command("show")
@click.argument("person", type=_PERSON)
@_json
@pass_ctx
def people_show(ctx: Context, person: int, as_json: bool) -> None:
    """Person PERSON and every face of it: face id, photo, source, box, and whether a
    person placed it there (pinned: clustering leaves it)."""
    record = ctx.engine.people.show(person)
    if as_json:
        print_json(record)
        return
    summary = {
        "person": record["id"],
        "name": record["name"] or "-",
        "hidden": "yes" if record["hidden"] else "no",
        "faces": record["faces"],
        "photos": record["photos"],
        "sources": ", ".join(record["sources"]) or "-",
        "first seen": _when(record["first_seen"]),
        "last seen": _when(record["last_seen"]),
    }
    for key, value in summary.items():
        stdout.print(f"{key:>10}: {value}", markup=False, highlight=False)
    table = Table("face", "photo", "source", "box", "quality", "pinned")
    table.columns[1].overflow = "fold"
    for f in record["face_list"]:
        table.add_row(
            str(f["face_id"]),
            f["uri"],
            f["source"],
            str(f["box"]),
            f"{f['quality']:.2f}",
            "yes" if f["pinned"] else "no",
        )
    stdout.print(table)


@people.command("name")
@click.argument("person", type=_PERSON)
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Remove the person's name instead.")
@_actor
@pass_ctx
def people_name(ctx: Context, person: int, name: str | None, clear: bool, actor: str) -> None:
    """Give person PERSON the name NAME (or remove it with --clear). A named person's faces
    stay with it when clustering runs again. The audit log records the person's id, never
    the name."""
    if clear == (name is not None):
        raise click.UsageError("give a NAME, or --clear to remove the name")
    ctx.engine.people.name(person, None if clear else name, actor=actor)
    if clear:
        stdout.print(f"person {person}: name removed")
    else:
        stdout.print(f"person {person} named {name!r}", markup=False, highlight=False)


@people.command("merge")
@click.argument("into", type=_PERSON)
@click.argument("others", nargs=-1, required=True, type=_PERSON)
@_actor
@_json
@pass_ctx
def people_merge(
    ctx: Context, into: int, others: tuple[int, ...], actor: str, as_json: bool
) -> None:
    """Merge persons OTHERS into person INTO: their faces move, and they are gone (INTO
    keeps its name; if it has none, it takes the first of theirs)."""
    moved = ctx.engine.people.merge(into, others, actor=actor)
    merged = sorted(set(others) - {into})
    if as_json:
        print_json({"person": into, "merged": merged, "faces": moved})
        return
    stdout.print(
        f"merged {', '.join(map(str, merged))} into person {into}: {moved} faces moved",
        highlight=False,
    )


@people.command("split")
@click.argument("person", type=_PERSON)
@_faces
@_actor
@_json
@pass_ctx
def people_split(
    ctx: Context, person: int, face_ids: tuple[int, ...], actor: str, as_json: bool
) -> None:
    """Move these faces of person PERSON into a new person, and keep the two apart for
    good. Prints the new person's id."""
    new = ctx.engine.people.split(person, face_ids, actor=actor)
    if as_json:
        print_json({"person": person, "new_person": new, "faces": sorted(face_ids)})
        return
    stdout.print(str(new), highlight=False)


def _hide(ctx: Context, person: int, hidden: bool, actor: str) -> None:
    ctx.engine.people.hide(person, hidden, actor=actor)
    shown = "hidden from" if hidden else "shown again in"
    stdout.print(f"person {person} {shown} the people list", highlight=False)


@people.command("hide")
@click.argument("person", type=_PERSON)
@click.option("--undo", is_flag=True, help="Show the person again (as `people unhide`).")
@_actor
@pass_ctx
def people_hide(ctx: Context, person: int, undo: bool, actor: str) -> None:
    """Hide person PERSON from `people list` (a stranger in the background); its faces stay
    searchable. `people list --all` still shows it."""
    _hide(ctx, person, not undo, actor)


@people.command("unhide")
@click.argument("person", type=_PERSON)
@_actor
@pass_ctx
def people_unhide(ctx: Context, person: int, actor: str) -> None:
    """Show hidden person PERSON in `people list` again."""
    _hide(ctx, person, False, actor)


@people.command("not")
@click.argument("person", type=_PERSON)
@_faces
@_actor
@_json
@pass_ctx
def people_not(
    ctx: Context, person: int, face_ids: tuple[int, ...], actor: str, as_json: bool
) -> None:
    """These faces are not person PERSON: they leave it (unassigned), and clustering never
    puts them back in it."""
    n = ctx.engine.people.reject(person, face_ids, actor=actor)
    if as_json:
        print_json({"person": person, "faces": sorted(face_ids), "removed": n})
        return
    stdout.print(
        f"{n} faces taken out of person {person}; clustering will not put them back",
        highlight=False,
    )


@people.command("recluster")
@_actor
@_json
@pass_ctx
def people_recluster(ctx: Context, actor: str, as_json: bool) -> None:
    """Place every face again by the clustering rule (after a threshold or model change).
    Names, merges, splits and "not this person" stay as people decided them."""
    with progress_bar("recluster") as update:
        counts = ctx.engine.people.recluster(actor=actor, progress=update)
    if as_json:
        print_json(counts)
        return
    stdout.print(
        f"{counts['assigned']:,} faces placed in persons, {counts['persons']:,} persons formed"
        f" ({counts['released']:,} faces released from clusters to be placed again)",
        highlight=False,
    )


@people.command("xmp-export")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the sidecars: one PHOTO-FILE-NAME.xmp per photo with a named face.",
)
@_json
@pass_ctx
def people_xmp_export(ctx: Context, out_dir: Path, as_json: bool) -> None:
    """Write the names of persons as XMP sidecars (mwg-rs face regions), which digiKam,
    Lightroom, Immich and PhotoPrism read; each holds the photo's SHA-256 as DocumentID."""
    counts = ctx.engine.people.export_xmp(out_dir)
    if as_json:
        print_json(counts)
        return
    stdout.print(
        f"{counts['faces']:,} named faces in {counts['photos']:,} sidecars written to {out_dir}",
        highlight=False,
    )


@people.command("xmp-import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_actor
@_json
@pass_ctx
def people_xmp_import(ctx: Context, directory: Path, actor: str, as_json: bool) -> None:
    """Give the names in the XMP sidecars under DIRECTORY (mwg-rs face regions, as other
    photo software writes them) to the stored faces they describe: matched by DocumentID
    or file name, and by box overlap."""
    report = ctx.engine.people.import_xmp(directory, actor=actor)
    if as_json:
        print_json(report)
        return
    stdout.print(
        f"{report['matched_faces']:,} faces named from {report['sidecars']:,} sidecars"
        f" ({report['conflicts']:,} faces already named otherwise, left alone;"
        f" {len(report['errors']):,} sidecars not used)",
        highlight=False,
    )
    for error in report["errors"][:20]:
        stdout.print(f"  {error['sidecar']}: {error['message']}", highlight=False, markup=False)


# watch ---------------------------------------------------------------------------------------


@click.group("watch")
def watch_group() -> None:
    """Watchlists: be alerted when a person's face is ingested again (until an expiry)."""


def _watch_row(w: dict[str, Any]) -> list[str]:
    return [
        str(w["id"]),
        w["actor"] or "-",
        w["purpose"] or "-",
        w["case"] or "-",
        "-" if w["person"] is None else str(w["person"]),
        f"{w['min_similarity']:.3f}",
        _when(w["created_at"]),
        _when(w["expires_at"]),
        str(w["alerts"]),
    ]


_WATCH_COLUMNS = (
    "id",
    "actor",
    "purpose",
    "case",
    "person",
    "edge",
    "created",
    "expires",
    "alerts",
)


@watch_group.command("add")
@click.option(
    "--photo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A photo of the person to watch for (its principal face).",
)
@click.option("--person", "person", type=_PERSON, help="A person of `people list` to watch for.")
@click.option("--purpose", required=True, help="Why: the lawful purpose of the watch (audited).")
@click.option("--case", "case_ref", help="The case reference the watch serves (audited).")
@click.option(
    "--expires",
    type=Expiry(),
    required=True,
    help="When the watch ends: YYYY-MM-DD (the end of that day, UTC) or an ISO 8601 time.",
)
@click.option(
    "--location",
    envvar="COUNTENANCE_LOCATION",
    help="ISO 3166 code of where the watcher is; watches from excluded places are refused.",
)
@click.option(
    "--actor",
    envvar="COUNTENANCE_ACTOR",
    required=True,
    help="Who watches (audited; alerts are attributed to them). Also COUNTENANCE_ACTOR.",
)
@_json
@pass_ctx
def watch_add(
    ctx: Context,
    photo: Path | None,
    person: int | None,
    purpose: str,
    case_ref: str | None,
    expires: dt.date | dt.datetime,
    location: str | None,
    actor: str,
    as_json: bool,
) -> None:
    """Start a watch on the person in --photo or on --person: each face ingested from now
    on that matches it (at the model's 1 in 10,000 false-match edge) raises one alert. Like
    a search it needs a purpose (and a case unless require_case is off) and is audited."""
    if (photo is None) == (person is None):
        raise click.UsageError("give exactly one of --photo and --person")
    watch = ctx.engine.watch(
        photo=photo,
        person=person,
        actor=actor,
        purpose=purpose,
        case=case_ref,
        expires=expires,
        location=location,
    )
    if as_json:
        print_json(watch)
        return
    stdout.print(
        f"watch {watch['id']} added: alerts on new faces at similarity"
        f" {watch['min_similarity']:.3f} or more until {_when(watch['expires_at'])} UTC",
        highlight=False,
    )


@watch_group.command("list")
@click.option("--actor", help="Only this actor's watches.")
@_json
@pass_ctx
def watch_list(ctx: Context, actor: str | None, as_json: bool) -> None:
    """The live watches with their alert counts (never their templates)."""
    found = ctx.engine.watches(actor=actor)
    if as_json:
        print_json(found)
        return
    if not found:
        stdout.print("no watch")
        return
    table = Table(*_WATCH_COLUMNS)
    for w in found:
        table.add_row(*_watch_row(w))
    stdout.print(table)


@watch_group.command("remove")
@click.argument("watch", type=click.IntRange(min=1))
@click.option("--actor", envvar="COUNTENANCE_ACTOR", required=True, help="Who ends it (audited).")
@pass_ctx
def watch_remove(ctx: Context, watch: int, actor: str) -> None:
    """End watch WATCH now: its template and its alerts are deleted."""
    ctx.engine.unwatch(watch, actor=actor)
    stdout.print(f"watch {watch} removed with its alerts", highlight=False)


# alerts --------------------------------------------------------------------------------------


@click.group("alerts")
def alerts_group() -> None:
    """Alerts raised by watches when a matching face was ingested."""


@alerts_group.command("list")
@click.option("--watch", "watch_id", type=click.IntRange(min=1), help="Only this watch's alerts.")
@click.option("--actor", help="Only alerts of this actor's watches.")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Only alerts with an id above this (the last one seen: the next page).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="At most this many alerts.",
)
@_json
@pass_ctx
def alerts_list(
    ctx: Context,
    watch_id: int | None,
    actor: str | None,
    after: int,
    limit: int,
    as_json: bool,
) -> None:
    """Alerts, oldest first: the watch and case, the matching face, its photo and source."""
    found = ctx.engine.alerts(watch=watch_id, actor=actor, after=after, limit=limit)
    if as_json:
        print_json(found)
        return
    if not found:
        stdout.print("no alert")
        return
    table = Table("id", "watch", "case", "face", "photo", "source", "similarity", "at", "sent")
    table.columns[4].overflow = "fold"
    for a in found:
        sent = "yes" if a["delivered_at"] else ("failed" if a["delivery_error"] else "-")
        table.add_row(
            str(a["id"]),
            str(a["watch"]),
            a["case"] or "-",
            "-" if a["face_id"] is None else str(a["face_id"]),
            a["photo"] or "(no longer stored)",
            a["source"] or "-",
            f"{a['similarity']:.3f}",
            _when(a["at"]),
            sent,
        )
    stdout.print(table)
    if len(found) == limit:
        stdout.print(f"more may follow: --after {found[-1]['id']}", highlight=False)


COMMANDS = [people, watch_group, alerts_group]
