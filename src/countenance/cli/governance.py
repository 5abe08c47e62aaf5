"""Governance commands: policy, erase, export, retention, audit."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from countenance.cli.common import Context, pass_ctx, print_json, stderr, stdout


@click.group()
def policy() -> None:
    """Exclude jurisdictions: purge their faces, refuse their photos and their searchers."""


@policy.command("exclude")
@click.argument("code")
@click.option("--reason", help="Why (an order, a finding, a law); audited.")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", required=True, help="Who (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def policy_exclude(ctx: Context, code: str, reason: str | None, actor: str, as_json: bool) -> None:
    """Exclude CODE (a country such as CA, or a subdivision such as US-IL)."""
    removed = ctx.engine.exclude(code, reason=reason, actor=actor)
    if as_json:
        print_json(removed)
    else:
        stdout.print(
            f"{removed['code']} excluded: {removed['photos']} photos and {removed['faces']}"
            " faces purged from the catalog and the index; its photos and searchers are refused"
        )


@policy.command("allow")
@click.argument("code")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", required=True, help="Who (audited).")
@pass_ctx
def policy_allow(ctx: Context, code: str, actor: str) -> None:
    """Lift the exclusion of CODE (what was purged stays purged)."""
    lifted = ctx.engine.allow(code, actor=actor)
    stdout.print(f"{code.upper()} allowed" if lifted else f"{code.upper()} was not excluded")


@policy.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def policy_show(ctx: Context, as_json: bool) -> None:
    """The excluded jurisdictions."""
    rows = ctx.engine.exclusions()
    if as_json:
        print_json({"exclusions": rows})
        return
    if not rows:
        stdout.print("no jurisdiction is excluded")
    for r in rows:
        stdout.print(
            f"{r['code']}: excluded {r['created_at']} by {r['actor']} ({r['reason'] or '-'})"
        )


@click.command()
@click.option(
    "--photo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A photo of the person to erase (a selfie).",
)
@click.option("--face", "face_id", type=int, help="One stored face id.")
@click.option("--photo-id", type=int, help="One stored photo id: all its faces.")
@click.option("--source", "source_name", help="Every face of a source.")
@click.option(
    "--person",
    "person_id",
    type=click.IntRange(min=1),
    help="One person of `people list`: all its faces, its name and what was decided of it.",
)
@click.option("--reason", required=True, help="The request or ground (audited).")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", required=True, help="Who (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
@pass_ctx
def erase(
    ctx: Context,
    photo: Path | None,
    face_id: int | None,
    photo_id: int | None,
    source_name: str | None,
    person_id: int | None,
    reason: str,
    actor: str,
    as_json: bool,
) -> None:
    """Erase a person's faces (by a photo of them, a face id or a person id) or a photo's
    or a source's.

    Erasing a person keeps only a suppression template, used for nothing but refusing their
    faces at ingest and hiding them from search.
    """
    receipt = ctx.engine.erase(
        photo=photo,
        face_id=face_id,
        photo_id=photo_id,
        source=source_name,
        person=person_id,
        reason=reason,
        actor=actor,
    )
    if as_json:
        print_json(receipt.to_json())
        return
    stdout.print(
        f"erased {receipt.erased_faces} faces and {receipt.erased_photos} photos; "
        f"suppression {receipt.suppression_id or '-'}; receipt {receipt.receipt_sha256}"
    )


@click.command()
@click.option(
    "--photo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A photo of the person asking what is held about them.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="New folder."
)
@click.option("--actor", envvar="COUNTENANCE_ACTOR", required=True, help="Who (audited).")
@click.option("--purpose", required=True, help="Why, e.g. 'GDPR Art. 15 request' (audited).")
@click.option("--case", help="The request it serves, e.g. its reference (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def export(
    ctx: Context,
    photo: Path,
    out: Path,
    actor: str,
    purpose: str,
    case: str | None,
    as_json: bool,
) -> None:
    """Subject access: write what is held about the person in --photo (JSON and HTML). It
    is a search by photo: it needs a purpose (and a case unless require_case is off), counts
    against the rate limit and is audited as a search."""
    written = ctx.engine.export(photo, out, actor=actor, purpose=purpose, case=case)
    if as_json:
        print_json(written)
    else:
        stdout.print(
            f"{written['faces']} faces held; report in {written['html']} and {written['json']}"
        )


@click.group()
def retention() -> None:
    """Delete faces past their source's retention (also done whenever the store opens)."""


@retention.command("run")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", help="Who runs it (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def retention_run(ctx: Context, actor: str | None, as_json: bool) -> None:
    """Delete every photo and face past its retention now."""
    removed = ctx.engine.retention_run(actor=actor)
    if as_json:
        print_json(removed)
    else:
        stdout.print(
            f"{removed['photos']} photos and {removed['faces']} faces past retention deleted"
        )


@click.group()
def audit() -> None:
    """Read, export and verify the hash-chained audit log."""


@audit.command("list")
@click.option("--action", help="Only this action (search, ingest, source, ...).")
@click.option("--actor", help="Only this actor.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def audit_list(
    ctx: Context, action: str | None, actor: str | None, limit: int, as_json: bool
) -> None:
    """The latest audited events, oldest first."""
    events = ctx.engine.audit.events(action=action, actor=actor)[-limit:]
    if as_json:
        print_json([e.to_json() for e in events])
        return
    table = Table("seq", "at", "actor", "action", "purpose", "case", "results")
    for e in events:
        table.add_row(
            str(e.seq),
            e.at.isoformat(timespec="seconds"),
            e.actor,
            e.action,
            e.purpose or "-",
            e.case_ref or "-",
            str(len(e.result_face_ids)),
        )
    stdout.print(table)


@audit.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@pass_ctx
def audit_export(ctx: Context, out: Path) -> None:
    """Write every event, with its hashes, as JSON Lines to OUT."""
    with out.open("w", encoding="utf-8") as fh:
        n = ctx.engine.audit.export(fh)
    stdout.print(f"{n} events written to {out}")


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def audit_verify(ctx: Context, as_json: bool) -> None:
    """Check the hash chain; exits 1 and names the first bad event if any was tampered with."""
    report = ctx.engine.audit.verify()
    if as_json:
        print_json(report.to_json())
    elif report.ok:
        stdout.print(f"audit log intact: {report.events} events")
    else:
        stderr.print(f"audit log tampered: {report.reason}", markup=False, highlight=False)
    if not report.ok:
        sys.exit(1)


COMMANDS = [policy, erase, export, retention, audit]
