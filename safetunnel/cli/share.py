"""``safetunnel share``: thin command; the flow lives in safetunnel.sharing.flow, rendering here."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import click

from safetunnel.cli.collector import settle_collector
from safetunnel.cli.completion import complete_hosts
from safetunnel.cli.console import ConsoleUI, json_line
from safetunnel.cli.handoff import HandedChildUI, RememberingUI
from safetunnel.cli.params import DurationParam, LocalAddressParam
from safetunnel.cli.signals import StopSignalScope
from safetunnel.errors import ConnectionLost, SafetunnelError
from safetunnel.secrets import handoff
from safetunnel.sharing import background, options
from safetunnel.sharing.flow import confirm_share, open_share
from safetunnel.sharing.reasons import StopReason
from safetunnel.sharing.request import ShareRequest
from safetunnel.sharing.started import started_block
from safetunnel.sharing.tunnel import Tunnel
from safetunnel.timefmt import parse_iso_z


@click.command("share")
@click.argument("port", type=LocalAddressParam())
@click.option(
    "--host",
    shell_complete=complete_hosts,
    help="[user@]host[:port], a saved profile, or an ~/.ssh/config alias. "
    "Default: the default host, else the built-in loopback gateway.",
)
@click.option(
    "--ttl",
    type=DurationParam(),
    help=f"Time limit, e.g. 90s, 30m, 2h (default: default_ttl in config.toml, "
    f"else {options.DEFAULT_TTL_TEXT}).",
)
@click.option("--idle", type=DurationParam(), help="Also stop after this long without traffic.")
@click.option(
    "--remote-port",
    type=click.IntRange(options.REMOTE_PORT.low, options.REMOTE_PORT.high),
    default=options.DEFAULT_REMOTE_PORT,
    show_default=True,
    help="Port on the SSH host; 0 lets the server pick.",
)
@click.option(
    "--public",
    is_flag=True,
    help="Bind on all interfaces of the SSH host (risky); serves TLS unless --no-tls.",
)
@click.option(
    "--tls",
    "tls_on",
    is_flag=True,
    help="Serve TLS with a certificate made for this share (default with --public); "
    "recipients check it by its pin.",
)
@click.option(
    "--no-tls",
    "tls_off",
    is_flag=True,
    help="A --public share without TLS: the token travels in clear text; always needs the "
    "typed confirmation or --confirm-port.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Serve this PEM certificate (chain) instead of a made one; needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), metavar="FILE", help="Its PEM private key."
)
@click.option(
    "--protocol",
    type=click.Choice(options.PROTOCOLS),
    default=options.DEFAULT_PROTOCOL,
    show_default=True,
    help="Which gate protocol remote clients must speak.",
)
@click.option("--yes", "-y", is_flag=True, help="Skip the y/N question (never host-key trust).")
@click.option(
    "--confirm-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Acknowledge a risky share without a prompt: the shared port, as you would type it. "
    "With --yes, starts a risky share without a terminal.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
@click.option(
    "--identity", type=click.Path(exists=True, dir_okay=False), help="SSH private key file."
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="known_hosts file to read instead of ~/.ssh/known_hosts (never written).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="Write the token to this new file (0600) instead of showing it; the file is removed "
    "when the share ends.",
)
@click.option(
    "--keep-token-file",
    is_flag=True,
    help="Leave the --token-file in place when the share ends.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(options.MAX_CONNECTIONS.low, options.MAX_CONNECTIONS.high),
    default=options.DEFAULT_MAX_CONNECTIONS,
    show_default=True,
)
@click.option(
    "--max-failures",
    type=click.IntRange(options.MAX_FAILURES.low),
    default=None,
    help="Stop the tunnel after this many refused attempts in total.",
)
@click.option(
    "--keepalive",
    type=click.FloatRange(options.KEEPALIVE.low, options.KEEPALIVE.high),
    default=options.DEFAULT_KEEPALIVE,
    show_default=True,
    help="Seconds between SSH keepalives; loss is declared after ~3 missed.",
)
@click.option(
    "--engine",
    type=click.Choice(options.ENGINES),
    default=None,
    help="SSH engine: OpenSSH's ssh client, paramiko, or auto (default: engine in "
    "config.toml, else auto). The built-in gateway always uses paramiko.",
)
@click.option(
    "--reconnect/--no-reconnect",
    default=True,
    show_default=True,
    help="After losing the SSH connection, reconnect within the TTL (same port, same token); "
    "--no-reconnect ends the share instead (exit 8).",
)
@click.option(
    "--background",
    is_flag=True,
    help="Ask here, then keep the tunnel running detached; see `safetunnel list`.",
)
@click.option("--background-child", type=int, hidden=True)
def share_command(
    as_json: bool, background: bool, background_child: int | None, **fields: Any
) -> None:
    """Share the service on 127.0.0.1:PORT through an SSH host, after confirmation.

    Every remote connection must present the generated access token. The tunnel stops by itself
    when the TTL ends, on `safetunnel kill`, or on a signal. A lost SSH connection is
    re-established within the TTL (unless --no-reconnect); open connections are lost with it.

    \b
    Examples:
      safetunnel share 8000 --host bastion --ttl 1h
      safetunnel share 5432 --host bastion --yes --confirm-port 5432 --json

    \b
    Exit codes:
      0  ended as asked (TTL, --idle, kill, SIGTERM, SIGHUP)
      1  other error
      2  usage error (bad option, unknown host, TTL over max_ttl)
      3  not confirmed (declined, or no terminal to ask on)
      4  host key unknown without a terminal, or changed
      5  SSH authentication failed
      6  remote forward refused, widened, or narrowed to loopback (--public)
      7  nothing listening on the local port
      8  SSH connection lost and not re-established
      130  Ctrl-C, after a full teardown
    """
    if fields["keep_token_file"] and not fields["token_file"]:
        raise click.UsageError("--keep-token-file needs --token-file")
    tls = tls_choice(fields.pop("tls_on"), fields.pop("tls_off"), fields)
    request = ShareRequest(local=fields.pop("port"), tls=tls, **fields)
    if background:
        asking = RememberingUI(as_json=as_json)
        with StopSignals(asking):  # Ctrl-C at a prompt here: 130, like the foreground share
            sys.exit(run_background(request, asking))
    ui: ConsoleUI = ConsoleUI(as_json=as_json)
    if background_child is not None:
        ui = HandedChildUI(background_child, handoff.read_stdin())
        request.log_path = _log_path_of_stdout()
    sys.exit(serve(request, ui))


def tls_choice(tls_on: bool, tls_off: bool, fields: dict[str, Any]) -> bool | None:
    """--tls / --no-tls as the request's ``tls`` (None: the default); contradictions are usage
    errors here, before anything else runs."""
    if tls_on and tls_off:
        raise click.UsageError("--tls and --no-tls contradict each other; pass one")
    if (fields["tls_cert"] is None) != (fields["tls_key"] is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_off and fields["tls_cert"] is not None:
        raise click.UsageError("--no-tls and --tls-cert contradict each other")
    return True if tls_on else False if tls_off else None


def run_background(request: ShareRequest, ui: RememberingUI) -> int:
    """Confirm here, then start the detached share and report what it reported."""
    summary = confirm_share(request, ui)
    log_path = background.new_log_path()
    args = background.child_args(sys.argv[1:])
    event = background.spawn(args, log_path, ui.typed_secrets())
    if ui.as_json:
        click.echo(json_line(event))
    else:
        expires = parse_iso_z(event["expires_at"])
        tls = summary.tls
        if tls is not None and tls.made:  # the detached share made its own certificate
            tls = dataclasses.replace(tls, pin=event.get("tls_pin"))
        block = started_block(
            dataclasses.replace(summary, expires_at=expires, tls=tls),
            event["remote_port"],
            event.get("token"),
            tunnel_id=event["id"],
            ticket=event.get("ticket"),
        )
        # Ctrl-C here would not stop a detached tunnel; the kill line below says what does.
        ui.say("\n".join(line for line in block.splitlines() if not line.startswith("Ctrl-C")))
    ui.say(
        f"Running in the background (pid {event['pid']}); log: {log_path}\n"
        f"Stop it with: safetunnel kill {event['id']}"
    )
    return 0


def _log_path_of_stdout() -> str | None:
    """The detached child's stdout is its log file; the record points there."""
    try:
        return os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
    except OSError:
        return None


class StopSignals(StopSignalScope):
    """SIGINT, SIGTERM and SIGHUP for the whole life of a share, from before the SSH connection.

    Until the tunnel exists a signal cancels the setup (the share flow closes whatever it had
    opened); from then on it only asks the tunnel to stop, so teardown stays in one place.
    Installing this only after start would leave a window in which SIGTERM kills the process
    with its record and socket left behind.
    """

    def __init__(self, ui: ConsoleUI) -> None:
        super().__init__()
        self._ui = ui

    def stop(self) -> None:
        tunnel = self._ui.tunnel
        if tunnel is None:
            raise click.exceptions.Exit(130 if self.interrupted else 0)
        tunnel.request_stop(StopReason.SIGNAL)


def serve(request: ShareRequest, ui: ConsoleUI) -> int:
    """Open the share and serve it until it ends; returns the exit code."""
    with StopSignals(ui) as signals:
        tunnel = open_share(request, ui)
        settle_collector()
        try:
            while not tunnel.wait(1.0):
                ui.status_line(tunnel)
        finally:
            tunnel.close()  # whatever broke the wait, the single teardown still runs
            ui.clear_status()
    if signals.interrupted:
        return 130
    return _exit_code(tunnel)


def _exit_code(tunnel: Tunnel) -> int:
    """0 for an end on schedule or on request; the failures raise with their own exit code."""
    if tunnel.stop_error is not None:
        raise tunnel.stop_error  # a reconnect gave up: its own message and exit code
    reason = tunnel.stop_reason or StopReason.ERROR
    if reason == StopReason.SSH_LOST:
        raise ConnectionLost(
            f"the SSH connection to {tunnel.config.ssh_host} was lost; the tunnel is closed",
            hint="Check the network and the SSH host, then share again.",
        )
    if reason == StopReason.MAX_FAILURES:
        raise SafetunnelError(
            f"the tunnel stopped after {tunnel.config.max_failures} refused attempts "
            "(--max-failures); someone may be guessing the token",
            hint="Check `safetunnel log` for the origins; a new share gets a new token.",
        )
    if reason.exit_code:
        raise SafetunnelError(f"the tunnel stopped: {reason.value}")
    return 0
