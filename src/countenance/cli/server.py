"""``countenance serve`` (the HTTP server) and ``countenance keys`` (its API keys).

Example::

    countenance keys create --name alice --role investigator   # prints the key once
    countenance serve --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import click

from countenance.catalog.keys import ROLES, KeyStore
from countenance.cli.common import Context, pass_ctx, print_json, stderr, stdout


def _store(ctx: Context) -> KeyStore:
    return ctx.engine.catalog.key_store(ctx.engine.audit)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--first-admin",
    metavar="NAME",
    help="If no admin key exists, create one named NAME and print it with the URL.",
)
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
@click.option(
    "--trusted-proxy",
    metavar="ADDRESS",
    help="Behind a TLS proxy at ADDRESS (comma-separated, or *): believe its X-Forwarded-Proto"
    " and X-Forwarded-For, and always mark session cookies Secure.",
)
@pass_ctx
def serve(
    ctx: Context,
    host: str,
    port: int,
    first_admin: str | None,
    log_level: str,
    trusted_proxy: str | None,
) -> None:
    """Serve the REST API (/v1), the browser UI, /healthz and /metrics on HOST:PORT."""
    import dataclasses

    import uvicorn

    from countenance.server import create_app

    if first_admin:
        store = _store(ctx)
        if store.active_admins() == 0:
            key, _info = store.create(first_admin, "admin", actor=first_admin)
            # stdout, not a log: the one time the key is shown
            click.echo(f"first admin key ({first_admin}): {key}")
    click.echo(f"countenance serving on http://{host}:{port}/ (API docs at /docs)")
    settings = dataclasses.replace(
        ctx.settings, trusted_proxy=trusted_proxy or ctx.settings.trusted_proxy
    )
    app = create_app(settings, engine=ctx.engine)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        # None: uvicorn's default, forwarded headers believed from 127.0.0.1 only
        forwarded_allow_ips=settings.trusted_proxy,
    )


@click.group()
def keys() -> None:
    """Create, list and revoke the server's API keys (only their hashes are stored)."""


@keys.command("create")
@click.option("--name", required=True, help="Who holds the key; the actor in the audit log.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", help="Who creates it (audited).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def keys_create(ctx: Context, name: str, role: str, actor: str | None, as_json: bool) -> None:
    """Create a key and print it: it is shown this once, only its hash is kept."""
    from countenance.engine import os_user

    key, info = _store(ctx).create(name, role, actor=actor or os_user())
    if as_json:
        print_json({"key": key, **info.to_json()})
        return
    click.echo(key)
    stderr.print(f"key for {info.name} ({info.role}) created; it is not shown again")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def keys_list(ctx: Context, as_json: bool) -> None:
    """Every key: name, role, when created, last used and revoked."""
    infos = _store(ctx).list()
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    for i in infos:
        state = f"revoked {i.revoked_at}" if i.revoked_at else "active"
        stdout.print(
            f"{i.name}\t{i.role}\tcreated {i.created_at}\tlast used {i.last_used_at or '-'}"
            f"\t{state}",
            markup=False,
            highlight=False,
        )


@keys.command("revoke")
@click.argument("name")
@click.option("--actor", envvar="COUNTENANCE_ACTOR", help="Who revokes it (audited).")
@pass_ctx
def keys_revoke(ctx: Context, name: str, actor: str | None) -> None:
    """Revoke key NAME: every request with it is refused from now on."""
    from countenance.engine import os_user

    _store(ctx).revoke(name, actor=actor or os_user())
    stdout.print(f"key {name} revoked", markup=False, highlight=False)


COMMANDS = [serve, keys]
