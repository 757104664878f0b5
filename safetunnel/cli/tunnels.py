"""``safetunnel list | kill | status | extend``: read and signal running tunnels.

Fast path: nothing here may import paramiko or cryptography (``list`` aims at 0.3 s wall).
"""

from __future__ import annotations

import click

from safetunnel import timefmt
from safetunnel.cli import render
from safetunnel.cli.completion import complete_tunnel_ids
from safetunnel.cli.params import DURATION
from safetunnel.durations import format_duration
from safetunnel.errors import SafetunnelError
from safetunnel.registry import manage
from safetunnel.registry.records import Registry


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_cmd(as_json: bool) -> None:
    """List running tunnels (stale entries are cleaned up). CONNS is open/total."""
    records, pruned, corrupt = Registry().load_all()
    if as_json:
        click.echo(render.list_json(records))
    elif records:
        click.echo(render.list_table(records, timefmt.utc_now()))
    elif not corrupt:
        click.echo("No active tunnels.")
    for tunnel_id in corrupt:
        click.echo(
            f"{tunnel_id}: running, but its record is corrupt (unreadable); it is kept and the "
            "tunnel rewrites it within seconds",
            err=True,
        )
    if pruned:
        # On stderr with --json so that stdout stays one parseable document.
        noun = "entry" if pruned == 1 else "entries"
        click.echo(f"Cleaned {pruned} stale {noun}.", err=as_json)


@click.command("kill")
@click.argument("ids", nargs=-1, metavar="ID...", shell_complete=complete_tunnel_ids)
@click.option("--all", "all_", is_flag=True, help="Stop every running tunnel.")
def kill_cmd(ids: tuple[str, ...], all_: bool) -> None:
    """Stop tunnels by id (or all), waiting until each has exited and cleaned up."""
    if bool(ids) == all_:
        raise click.UsageError("give one or more tunnel ids, or --all (not both)")
    registry = Registry()
    if ids:
        targets = list(ids)
    else:
        loaded = registry.load_all()
        targets = [*(r.id for r in loaded.records), *loaded.corrupt]
    if not targets:
        click.echo("No active tunnels.")
        return
    if len(targets) == 1 and not all_:
        _report(targets[0], manage.stop(registry, targets[0]))  # errors go to the boundary as-is
        return
    failed = manage.stop_many(registry, targets, _report, listed=all_)
    if failed:
        raise SafetunnelError(f"{failed} of {len(targets)} tunnels were not stopped (see above)")


def _report(tunnel_id: str, outcome: manage.StopResult | SafetunnelError) -> None:
    if isinstance(outcome, SafetunnelError):
        click.echo(f"{tunnel_id}: not stopped: {outcome.message}", err=True)
    elif outcome.method == "stale":
        click.echo(f"{tunnel_id}: {outcome.detail}")
    else:
        how = "stopped" if outcome.method == "control" else "stopped with SIGTERM"
        click.echo(f"{tunnel_id}: {how}" + (f" ({outcome.detail})" if outcome.detail else ""))


@click.command("status")
@click.argument("tunnel_id", metavar="ID", shell_complete=complete_tunnel_ids)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def status_cmd(tunnel_id: str, as_json: bool) -> None:
    """Show a tunnel's record, live counters and last connections."""
    info = manage.status(Registry(), tunnel_id)
    click.echo(render.to_json(info) if as_json else render.status_text(info, timefmt.utc_now()))


@click.command("extend")
@click.argument("tunnel_id", metavar="ID", shell_complete=complete_tunnel_ids)
@click.option("--by", "seconds", type=DURATION, required=True, help="How much longer, e.g. 30m.")
def extend_cmd(tunnel_id: str, seconds: int) -> None:
    """Move a running tunnel's expiry later (never past max_ttl from its start)."""
    reply = manage.extend(Registry(), tunnel_id, seconds)
    expires = str(reply.get("expires_at", "?"))
    left = render.remaining(expires, timefmt.utc_now())
    click.echo(
        f"{tunnel_id}: extended by {format_duration(seconds)}; "
        f"now expires at {expires} (in {left})."
    )
