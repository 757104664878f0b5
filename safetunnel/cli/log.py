"""``safetunnel log [ID] [--follow] [--json]``: show the audit log."""

from __future__ import annotations

import json

import click

from safetunnel.cli import render
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.records import check_tunnel_id


@click.command("log")
@click.argument("tunnel_id", metavar="[ID]", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def log_cmd(tunnel_id: str | None, follow: bool, as_json: bool) -> None:
    """Show audit entries (all tunnels, or one), oldest first."""
    if tunnel_id is not None:
        check_tunnel_id(tunnel_id)
    audit = AuditLog()
    entries = audit.follow(tunnel_id) if follow else audit.read(tunnel_id)
    shown = 0
    try:
        for entry in entries:
            if as_json:
                click.echo(json.dumps(entry))
            else:
                if shown == 0:
                    click.echo(render.log_header())
                click.echo(render.log_line(entry))
            shown += 1
    except KeyboardInterrupt:
        return  # --follow ends with Ctrl-C; that is the normal way out, not an error
    if shown == 0 and not as_json:
        click.echo("No audit entries" + (f" for {tunnel_id}." if tunnel_id else "."))
