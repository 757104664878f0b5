"""``safetunnel ticket ID --for NAME`` and ``safetunnel revoke ID NAME``: per-recipient tokens.

The running share mints the token and keeps only its digest; the ticket comes back once over the
owner-only control socket and is printed here, on stdout only, for the sharer to pass on.
"""

from __future__ import annotations

from typing import Any

import click

from safetunnel.cli.completion import complete_tunnel_ids
from safetunnel.registry import control, manage
from safetunnel.registry.records import Registry


def _ask(tunnel_id: str, op: str, name: str) -> dict[str, Any]:
    registry = Registry()
    record = manage.live_record(registry, tunnel_id)
    return control.request(registry.socket_path(record.id), op, name=name)


@click.command("ticket")
@click.argument("tunnel_id", metavar="ID", shell_complete=complete_tunnel_ids)
@click.option("--for", "name", required=True, help="The recipient's name ([A-Za-z0-9._-]).")
def ticket_cmd(tunnel_id: str, name: str) -> None:
    """Mint a token for one recipient of a running share and print its ticket."""
    reply = _ask(tunnel_id, "ticket", name)
    secret = reply.get("ticket") or reply.get("token")
    if not isinstance(secret, str):
        raise control.ControlError("the tunnel sent no ticket")
    what = "Ticket" if reply.get("ticket") else "Token (this share has no ticket)"
    click.echo(f"{what} for {name} (a secret: send it privately; revoke with", err=True)
    click.echo(f"`safetunnel revoke {tunnel_id} {name}`):", err=True)
    click.echo(secret)


@click.command("revoke")
@click.argument("tunnel_id", metavar="ID", shell_complete=complete_tunnel_ids)
@click.argument("name", metavar="NAME")
def revoke_cmd(tunnel_id: str, name: str) -> None:
    """Withdraw a recipient's token at once and close its open connections."""
    reply = _ask(tunnel_id, "revoke", name)
    closed = reply.get("closed", 0)
    click.echo(f"{tunnel_id}: revoked {name}; closed {closed} open connection(s).")
