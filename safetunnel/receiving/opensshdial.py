"""Reaching the share through OpenSSH's own client: the recipient's ``ssh HOST``, pinned.

One control master logs in the way ``ssh HOST`` does (ProxyJump, ProxyCommand, certificates,
agents, the whole ssh_config), with safetunnel's safety options. Its host key is decided by the
ticket alone: no known_hosts file is read for the host, and a ``KnownHostsCommand``
(:mod:`safetunnel.receiving.pincheck`) vouches only for the key whose SHA-256 the ticket names;
a ProxyJump hop keeps the user's known_hosts. After the login the key the master accepted is
checked once more. Then the master listens on a unix socket in the private socket directory and
forwards each connection to the share (``-O forward -L``): no process per connection, and the
master dies with this process, even on ``kill -9``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from safetunnel.addresses import format_hostport
from safetunnel.errors import ConnectionLost, HostKeyChanged, HostKeyError, SafetunnelError
from safetunnel.receiving.dialer import SocketChannel
from safetunnel.receiving.relay import Channel
from safetunnel.ssh.openssh.config import quote
from safetunnel.ssh.openssh.connect import master_argv, socket_dir, start_master
from safetunnel.ssh.openssh.engine import remove_temporary
from safetunnel.ssh.openssh.forward import socket_name
from safetunnel.ssh.openssh.master import Master
from safetunnel.ssh.target import SSHTarget

KEEPALIVE = 15.0
_SERVER_KEY = re.compile(r"Server host key: (\S+) (SHA256:\S+)")


def pin_options(fingerprint: str) -> list[str]:
    """Options ahead of the engine's (ssh keeps the first value): the host's key is the pinned
    one or none. Given with ``-o``, they reach only the host, never a ProxyJump hop."""
    command = f"{quote(sys.executable)} -m safetunnel.receiving.pincheck {fingerprint} %H %t %K"
    pairs = [
        ("UserKnownHostsFile", "none"),
        ("GlobalKnownHostsFile", "none"),
        ("KnownHostsCommand", command),
        ("StrictHostKeyChecking", "yes"),
        ("HostKeyAlias", "safetunnel-ticket"),  # no name a user's file could speak for
    ]
    return [arg for key, value in pairs for arg in ("-o", f"{key}={value}")]


class OpenSSHDialer:
    """A pinned control master and a local forward to the share on a private unix socket."""

    def __init__(
        self,
        target: SSHTarget,
        fingerprint: str,
        destination: tuple[str, int],
        *,
        interactive: bool = False,
    ) -> None:
        self._target = target
        self._fingerprint = fingerprint
        self._destination = destination
        self._interactive = interactive
        self._sockets: Path | None = None
        self._master: Master | None = None
        self._path: Path | None = None

    def start(self) -> None:
        """Log in and open the forward, before anything listens (exit 4, 5 or 1 here)."""
        sockets = self._sockets = socket_dir()
        control = socket_name(sockets, "m")
        argv = master_argv(self._target, control, [], KEEPALIVE)
        at = argv.index("-N") + 1
        argv[at:at] = pin_options(self._fingerprint)
        said: list[str] = []
        try:
            self._master = start_master(
                self._target, argv, control, sockets, interactive=self._interactive, last_words=said
            )
        except HostKeyError:
            remove_temporary(sockets)
            raise self._refusal(said) from None
        except BaseException:
            remove_temporary(sockets)
            raise
        self._check_accepted(self._master)
        self._forward(self._master, sockets)

    def _forward(self, master: Master, sockets: Path) -> None:
        path = socket_name(sockets, "g")
        spec = f"{path}:{format_hostport(*self._destination)}"
        answer = master.control("forward", "-L", spec)
        if answer.returncode != 0:
            self.close()
            raise SafetunnelError(
                f"ssh could not forward to the share (ssh said: {answer.stderr.strip()})"
            )
        self._path = path

    def _check_accepted(self, master: Master) -> None:
        shown = _accepted(master.log.tail(400))
        if shown is None or shown[1] != self._fingerprint:
            self.close()
            raise self._refusal(master.log.tail(400))

    def _refusal(self, lines: list[str]) -> HostKeyChanged:
        shown = _accepted(lines)
        what = f"the host key {shown[0]} {shown[1]}" if shown else "a host key"
        return HostKeyChanged(
            f"{self._target.display} showed {what}, but the ticket names {self._fingerprint}. "
            "Someone may be intercepting the connection.",
            hint="Nothing was sent. Check the host with the sharer, or ask for a new ticket.",
        )

    def watch(self, lost: Callable[[SafetunnelError], None]) -> None:
        """OpenSSH sends the keepalives and exits when about three go unanswered: its exit
        before close() is the loss (exit 8)."""
        master = self._master
        if master is None:
            return
        display = self._target.display
        master.on_exit(lambda: lost(ConnectionLost(f"the SSH connection to {display} was lost")))

    def dial(self, origin: tuple[str, int]) -> Channel | None:
        del origin  # the master's forward names no origin of its own
        master, path = self._master, self._path
        if master is None or path is None or not master.alive():
            raise ConnectionLost(f"the SSH connection to {self._target.display} was lost")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            raise ConnectionLost(f"the SSH connection to {self._target.display} was lost") from None
        return SocketChannel(sock)

    def close(self) -> None:
        """Stop the master (its forward goes with it) and remove the sockets. Idempotent."""
        master, self._master = self._master, None
        if master is not None:
            master.close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
        if self._sockets is not None:
            remove_temporary(self._sockets)


def _accepted(lines: list[str]) -> tuple[str, str] | None:
    """The last key the master logged: the host's, which it meets after any hop's."""
    for line in reversed(lines):
        match = _SERVER_KEY.search(line)
        if match:
            return match.group(1), match.group(2)
    return None
