"""``safetunnel log [ID] [--follow] [--json]``: show the audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import click

from safetunnel.cli import render
from safetunnel.cli.completion import complete_tunnel_ids
from safetunnel.errors import TunnelNotFound
from safetunnel.registry.audit import AuditLog
from safetunnel.registry.records import Registry, check_tunnel_id


@click.command("log")
@click.argument("tunnel_id", metavar="[ID]", required=False, shell_complete=complete_tunnel_ids)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def log_cmd(tunnel_id: str | None, follow: bool, as_json: bool) -> None:
    """Show audit entries (all tunnels, or one), oldest first.

    --follow with an ID ends after that tunnel's "stopped" entry (it never runs again); with an
    ID that never existed it is an error rather than a wait for ever.
    """
    audit = AuditLog()
    if tunnel_id is None:
        entries = audit.follow() if follow else audit.read()
    else:
        check_tunnel_id(tunnel_id)
        entries = _follow_one(audit, tunnel_id) if follow else audit.read(tunnel_id)
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


def _follow_one(audit: AuditLog, tunnel_id: str) -> Iterator[dict[str, Any]]:
    """One tunnel's entries as they come; refused for an id that never existed."""
    running = Registry().record_path(tunnel_id).exists()
    if not running and not any(True for _ in audit.read(tunnel_id)):
        raise TunnelNotFound(f"no tunnel {tunnel_id}: it is not running and not in the audit log")
    return _until_stopped(audit.follow(tunnel_id))


def _until_stopped(entries: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One tunnel's entries up to its last: its ``stopped``."""
    for entry in entries:
        yield entry
        if entry.get("event") == "stopped":
            return
