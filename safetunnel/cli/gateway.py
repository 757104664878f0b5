"""``safetunnel gateway``: run the built-in SSH gateway standalone (team host or tests)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from safetunnel.config import load_config
from safetunnel.errors import ConfigError
from safetunnel.ssh.gateway import Gateway, load_authorized_keys

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("gateway")
@click.option("--listen", default="127.0.0.1:2222", show_default=True,
              help="HOST:PORT to listen on.")
@click.option("--authorized-keys", type=click.Path(exists=True, dir_okay=False),
              help="OpenSSH authorized_keys file (required unless listening on loopback).")
def gateway_command(listen: str, authorized_keys: str | None) -> None:
    """Run the built-in SSH gateway: it accepts only remote forwards, bound to loopback."""
    host, port = _parse_listen(listen)
    if authorized_keys is None and host not in LOOPBACK:
        raise ConfigError(f"listening on {host} needs --authorized-keys",
                          hint="Without keys, only a loopback listener is allowed.")
    keys = load_authorized_keys(Path(authorized_keys)) if authorized_keys else None
    config = load_config()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    with Gateway(listen=(host, port), authorized_keys=keys,
                 max_session_seconds=config.max_ttl) as gateway:
        bound_host, bound_port = gateway.address
        click.echo(f"safetunnel gateway listening on {bound_host}:{bound_port} "
                   f"(host key {gateway.fingerprint}); Ctrl-C stops.", err=True)
        while not stop.wait(1.0):
            pass
    click.echo("gateway stopped.", err=True)
