"""Reaching the share through OpenSSH's own client: the recipient's ``ssh HOST``, pinned.

One control master logs in the way ``ssh HOST`` does (ProxyJump, ProxyCommand, certificates,
agents, the whole ssh_config), with safetunnel's safety options. Its host key is decided by the
ticket alone: no known_hosts file is read for the host, and a ``KnownHostsCommand``
(:mod:`safetunnel.receiving.pincheck`) vouches only for the key whose SHA-256 the ticket names;
a ProxyJump hop keeps the user's known_hosts. After the login the key the master accepted is
checked once more. Then the master listens on a unix socket in the private socket directory and
forwards each connection to the share (``-O forward -L``): no process per connection, and the
master dies with this process, even on ``kill -9``. A master that died (a lost network: its
keepalives went unanswered) is replaced at the next connection, as the paramiko engine reopens
its session; connect ends (exit 8) only when that fails.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from safetunnel.addresses import format_hostport
from safetunnel.errors import (
    AuthFailed,
    ConnectionLost,
    HostKeyChanged,
    HostKeyError,
    SafetunnelError,
)
from safetunnel.receiving.dialer import SocketChannel, unreachable
from safetunnel.receiving.relay import Channel
from safetunnel.secrets.names import SecretName
from safetunnel.ssh.openssh.config import quote
from safetunnel.ssh.openssh.connect import master_argv, socket_dir, start_master
from safetunnel.ssh.openssh.engine import remove_temporary
from safetunnel.ssh.openssh.forward import socket_name
from safetunnel.ssh.openssh.master import Master
from safetunnel.ssh.openssh.masterlog import SERVER_KEY
from safetunnel.ssh.target import SSHTarget

KEEPALIVE = 15.0
# How the master logs a channel the server could not open ("channel 2: open failed: connect
# failed: Connection refused").
_OPEN_FAILED = "open failed:"


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
    """A pinned control master and a local forward to the share on a private unix socket; when
    the master has died (its keepalives went unanswered), the next dial starts a new one."""

    def __init__(
        self,
        target: SSHTarget,
        fingerprint: str,
        destination: tuple[str, int],
        *,
        interactive: bool = False,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self._target = target
        self._notify = notify
        self._fingerprint = fingerprint
        self._destination = destination
        self._interactive = interactive
        self._sockets: Path | None = None
        self._master: Master | None = None
        self._path: Path | None = None
        self._lock = threading.Lock()  # one (re)start at a time; dials wait for it
        self._closed = False
        self._fatal: SafetunnelError | None = None  # why no master could be had again
        self._starting: Master | None = None  # a master still logging in (on the keeper)
        # What was typed at the first login: a new master never asks, but may need it.
        self._remembered: dict[SecretName, str] = {}
        # Every master starts on this one thread, which lives as long as the dialer: ssh dies
        # with the thread that started it (PDEATHSIG), and a dial runs on a short-lived one.
        self._keeper = ThreadPoolExecutor(1, thread_name_prefix="safetunnel-connect-ssh")

    def start(self) -> None:
        """Log in and open the forward, before anything listens (exit 4, 5 or 1 here)."""
        try:
            with self._lock:
                self._sockets = socket_dir()
                self._keeper.submit(self._open, self._interactive).result()
        except BaseException:
            self.close()  # nothing may stay behind a refused start: sockets, thread
            raise

    def watch(self, lost: Callable[[SafetunnelError], None]) -> None:
        """Nothing to watch: the next dial finds a dead master and starts another."""

    def dial(self, origin: tuple[str, int]) -> Channel | None:
        """A connection through the master's forward; a dead master is replaced first. Fatal
        failures raise: a changed host key, a refused login, a host that cannot be reached."""
        del origin  # the master's forward names no origin of its own
        failed: Path | None = None
        for _ in range(2):
            path = self._live_forward(failed)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
            except OSError:
                sock.close()
                failed = path  # that master died under us: one more try with a new one
                continue
            return SocketChannel(sock)
        raise ConnectionLost(self._lost())

    def close(self) -> None:
        """Stop the master (its forward goes with it) and remove the sockets. Idempotent. A
        master still logging in is stopped first: during an outage its login would hold the
        lock, and Ctrl-C with it, for up to the login timeout."""
        self._closed = True
        starting = self._starting
        if starting is not None:
            starting.close()
        with self._lock:
            self._drop_master()
            if self._sockets is not None:
                remove_temporary(self._sockets)
        self._keeper.shutdown()

    def _live_forward(self, failed: Path | None) -> Path:
        """The forward's socket. A new master first when the current one is dead, or is the one
        whose socket just failed (``failed``), but not when another dial replaced it meanwhile:
        each failing client would otherwise end the connections of the master before it."""
        with self._lock:
            if self._fatal is not None:
                raise self._fatal  # one failed login is enough: the dials queued behind it end
            if self._closed:
                raise ConnectionLost("connect is stopping")
            master, path = self._master, self._path
            if master is not None and path is not None and master.alive() and path != failed:
                return path
            self._drop_master()
            try:  # never asks: nobody may be at the terminal by now
                self._keeper.submit(self._open, False).result()
            except SafetunnelError as err:
                self._fatal = err
                if not isinstance(err, HostKeyError | AuthFailed):
                    self._fatal = ConnectionLost(
                        self._lost(f": {err.message}"),
                        hint="Check the network and the SSH host, then connect again.",
                    )
                raise self._fatal from None
            assert self._path is not None
            return self._path

    def _lost(self, detail: str = "") -> str:
        display = self._target.display
        return f"the SSH connection to {display} was lost and could not be reopened{detail}"

    def _open(self, interactive: bool) -> None:
        """On the keeper thread: a new master, its host key checked, and its forward."""
        sockets = self._sockets
        assert sockets is not None
        control = socket_name(sockets, "m")
        argv = master_argv(self._target, control, [], KEEPALIVE)
        at = argv.index("-N") + 1
        argv[at:at] = pin_options(self._fingerprint)
        said: list[str] = []
        try:
            master = start_master(
                self._target,
                argv,
                control,
                sockets,
                interactive=interactive,
                last_words=said,
                remembered=self._remembered,
                on_started=self._logging_in,
            )
        except HostKeyError:
            raise self._refusal(said) from None
        finally:
            self._starting = None
        try:
            self._check_accepted(master)
            path = self._forward(master, sockets)
            if self._closed:  # close() came while it logged in: it waits for this to return
                raise ConnectionLost("connect is stopping")
        except BaseException:
            master.close()
            raise
        if self._notify is not None:
            # The master accepts each local connection at once and opens its channel after:
            # that the host could not reach the share shows only in its log.
            master.log.on_line(_OPEN_FAILED, self._open_failed)
        self._master, self._path = master, path

    def _logging_in(self, master: Master) -> None:
        """On the keeper thread, before the login: close() may stop this master from now on."""
        self._starting = master
        if self._closed:  # close() looked before this master was there to stop
            master.close()

    def _open_failed(self, line: str) -> None:
        """A channel to the share was refused (the share ended, or its port is gone). Said on
        the keeper thread: the master's log reader must never wait for a slow stderr."""
        notify = self._notify
        assert notify is not None
        text = unreachable(self._destination, line.rpartition(_OPEN_FAILED)[2].strip())
        with contextlib.suppress(RuntimeError):  # closed meanwhile: nobody to tell
            self._keeper.submit(notify, text)

    def _forward(self, master: Master, sockets: Path) -> Path:
        path = socket_name(sockets, "g")
        spec = f"{path}:{format_hostport(*self._destination)}"
        answer = master.control("forward", "-L", spec)
        if answer.returncode != 0:
            raise SafetunnelError(
                f"ssh could not forward to the share (ssh said: {answer.stderr.strip()})"
            )
        return path

    def _check_accepted(self, master: Master) -> None:
        shown = _accepted(master.log.host_keys())
        if shown is None or shown[1] != self._fingerprint:
            raise self._refusal(master.log.host_keys())

    def _refusal(self, lines: list[str]) -> HostKeyChanged:
        shown = _accepted(lines)
        what = f"the host key {shown[0]} {shown[1]}" if shown else "a host key"
        return HostKeyChanged(
            f"{self._target.display} showed {what}, but the ticket names {self._fingerprint}. "
            "Someone may be intercepting the connection.",
            hint="Nothing was sent. Check the host with the sharer, or ask for a new ticket.",
        )

    def _drop_master(self) -> None:
        """Stop the current master and remove its forward's socket; called with the lock."""
        master, self._master = self._master, None
        path, self._path = self._path, None
        if master is not None:
            master.close()
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _accepted(lines: list[str]) -> tuple[str, str] | None:
    """The last key the master logged: the host's, which it meets after any hop's."""
    for line in reversed(lines):
        match = SERVER_KEY.search(line)
        if match:
            return match.group(1), match.group(2)
    return None
