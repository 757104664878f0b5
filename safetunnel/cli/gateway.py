"""``safetunnel gateway``: run the built-in SSH gateway standalone (team host or tests)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click
import paramiko

from safetunnel import paths
from safetunnel.addresses import format_hostport
from safetunnel.errors import UsageError
from safetunnel.hosts.config import load_config
from safetunnel.ssh.gateway import Gateway, load_authorized_keys
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.keys import load_or_create_host_key

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


def own_public_keys() -> list[paramiko.PKey]:
    """On loopback without --authorized-keys: the keys of the user who runs the gateway.

    Only ~/.ssh/id_*.pub: a loopback gateway then serves exactly the person who started it.
    ~/.ssh/authorized_keys is not used, because the gateway cannot honour its per-key options
    (``restrict``, ``from=``, ``no-port-forwarding``): a key sshd limits must not gain forwarding
    here.
    """
    ssh_dir = Path.home() / ".ssh"
    files = sorted(ssh_dir.glob("id_*.pub"))
    keys: list[paramiko.PKey] = []
    for path in files:
        if path.is_file():
            keys.extend(load_authorized_keys(path))
    return keys


def _authorized(host: str, authorized_keys: str | None) -> list[paramiko.PKey]:
    if authorized_keys:
        return load_authorized_keys(Path(authorized_keys))
    if host not in LOOPBACK:
        raise UsageError(
            f"listening on {host} needs --authorized-keys",
            hint="Without an authorized_keys file only a loopback listener is allowed.",
        )
    keys = own_public_keys()
    if not keys:
        raise UsageError(
            "no public key found in ~/.ssh to authorize",
            hint="Pass --authorized-keys FILE, or create a key with ssh-keygen.",
        )
    return keys


@click.command("gateway")
@click.option(
    "--listen", default="127.0.0.1:2222", show_default=True, help="HOST:PORT to listen on."
)
@click.option(
    "--authorized-keys",
    type=click.Path(exists=True, dir_okay=False),
    help="OpenSSH authorized_keys file (default on loopback: your own ~/.ssh keys).",
)
def gateway_command(listen: str, authorized_keys: str | None) -> None:
    """Run the built-in SSH gateway: it accepts only remote forwards, bound to loopback.

    Sessions older than max_ttl (config.toml, default 24h) are closed by the gateway itself.
    authorized_keys lines with options (from=, restrict, ...) are refused: they cannot be
    honoured here. At most 32 logins in progress (the oldest is cut first), 64 sessions, and
    512 forwarded connections per session (1024 in all) are held at once.
    """
    host, port = _parse_listen(listen)
    keys = _authorized(host, authorized_keys)
    config = load_config()
    host_key = load_or_create_host_key(paths.config_dir() / "gateway_host_ed25519")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    with Gateway(
        listen=(host, port),
        host_key=host_key,
        authorized_keys=keys,
        max_session_seconds=config.max_ttl_seconds(),
    ) as gateway:
        gateway.start()
        bound_host, bound_port = gateway.address
        click.echo(
            f"safetunnel gateway listening on {format_hostport(bound_host, bound_port)}\n"
            f"  host key {host_key.get_name()} {fingerprint(host_key)}\n"
            f"  {len(keys)} authorized key(s); forwards bind on loopback only; "
            "Ctrl-C stops.",
            err=True,
        )
        stop.wait()
    click.echo("gateway stopped.", err=True)
