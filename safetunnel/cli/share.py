"""``safetunnel share``: thin command; the flow lives in safetunnel.sharing, rendering here."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import cast

import click

from safetunnel.cli.console import ConsoleUI
from safetunnel.cli.params import DurationParam
from safetunnel.errors import ConnectionLost, SafetunnelError
from safetunnel.gate.policy import GateProtocol
from safetunnel.sharing import ShareRequest, open_share
from safetunnel.tunnel import Tunnel


@click.command("share")
@click.argument("port")
@click.option("--host", help="[user@]host[:port], a saved profile, or an ~/.ssh/config alias. "
              "Default: the default host, else the built-in loopback gateway.")
@click.option("--ttl", type=DurationParam(), help="Time limit, e.g. 90s, 30m, 2h (default 30m).")
@click.option("--idle", type=DurationParam(), help="Also stop after this long without traffic.")
@click.option("--remote-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on the SSH host; 0 lets the server pick.")
@click.option("--public", is_flag=True, help="Bind on all interfaces of the SSH host (risky).")
@click.option("--protocol", type=click.Choice(["auto", "http", "tcp"]), default="auto",
              show_default=True, help="Which gate protocol remote clients must speak.")
@click.option("--yes", "-y", is_flag=True, help="Skip the y/N question (never host-key trust).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
@click.option("--identity", type=click.Path(dir_okay=False), help="SSH private key file.")
@click.option("--known-hosts", type=click.Path(dir_okay=False),
              help="known_hosts file to read instead of ~/.ssh/known_hosts (never written).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="Write the token to this new file (0600) instead of showing it.")
@click.option("--max-connections", type=click.IntRange(1, 4096), default=256, show_default=True)
@click.option("--max-failures", type=click.IntRange(1), default=None,
              help="Stop the tunnel after this many refused attempts in total.")
@click.option("--keepalive", type=click.FloatRange(0.2, 600), default=10.0, show_default=True,
              help="Seconds between SSH keepalives; loss is declared after ~3 missed.")
def share_command(port: str, host: str | None, ttl: int | None, idle: int | None,
                  remote_port: int, public: bool, protocol: str, yes: bool, as_json: bool,
                  identity: str | None, known_hosts: str | None, token_file: str | None,
                  max_connections: int, max_failures: int | None, keepalive: float) -> None:
    """Share the service on 127.0.0.1:PORT through an SSH host, after confirmation.

    Every remote connection must present the generated access token. The tunnel stops by itself
    when the TTL ends, on `safetunnel kill`, on a signal, or when the SSH connection is lost.
    """
    request = ShareRequest(
        local=port, host=host, ttl=ttl, idle=idle, remote_port=remote_port, public=public,
        protocol=cast(GateProtocol, protocol), yes=yes, identity=identity, known_hosts=known_hosts,
        token_file=token_file, max_connections=max_connections, max_failures=max_failures,
        keepalive=keepalive)
    ui = ConsoleUI(as_json=as_json)
    signals = StopSignals(ui)  # before anything opens: `started` may be followed by SIGTERM at once
    try:
        tunnel = open_share(request, ui)
        code = run_foreground(tunnel, ui, signals)
    finally:
        signals.restore()
    sys.exit(code)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP for the whole share command.

    Until the tunnel is attached to the UI a signal aborts the flow (KeyboardInterrupt for
    SIGINT, exit 0 otherwise), and the flow's cleanup closes whatever is open. From then on it
    only asks for a stop, which run_foreground carries out: the `started` event goes out before
    run_foreground runs, and a SIGTERM in that gap used to kill the process with its record,
    control socket and forward still in place.
    """

    def __init__(self, ui: ConsoleUI) -> None:
        self._ui = ui
        self._tunnel: Tunnel | None = None
        self._pending = False
        self.interrupted = threading.Event()
        self._previous = {sig: signal.signal(sig, self._on_signal)
                          for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self.interrupted.set()
        if self._tunnel is not None:
            self._tunnel.request_stop("signal")
        elif self._ui.attached:
            self._pending = True  # the tunnel is starting; run_foreground stops it
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            raise SystemExit(0)

    def serve(self, tunnel: Tunnel) -> None:
        self._tunnel = tunnel
        if self._pending:
            tunnel.request_stop("signal")

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_foreground(tunnel: Tunnel, ui: ConsoleUI, signals: StopSignals | None = None) -> int:
    """Serve until the tunnel ends; signals only request a stop, teardown stays in one place."""
    own = signals is None
    active = signals if signals is not None else StopSignals(ui)
    active.serve(tunnel)
    try:
        while not tunnel.wait(1.0):
            ui.status_line(tunnel)
        tunnel.close()
    finally:
        if own:
            active.restore()
        ui.clear_status()
    if active.interrupted.is_set():
        return 130
    if tunnel.stop_reason == "ssh-lost":
        raise ConnectionLost(
            f"the SSH connection to {tunnel.config.ssh_host} was lost; the tunnel is closed",
            hint="Check the network and the SSH host, then share again.")
    if tunnel.exit_code:
        raise SafetunnelError(f"the tunnel stopped: {tunnel.stop_reason}")
    return 0
