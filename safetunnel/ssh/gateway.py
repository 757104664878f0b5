"""The built-in SSH gateway: a forwarding-only SSH server on paramiko, so a share works on a
machine with no SSH host configured (in-process, loopback only) and a team can run it standalone.

Threads, all named and joined by :meth:`Gateway.close`: ``safetunnel-gw-accept`` (new TCP
clients), one ``safetunnel-gw-client-<n>`` per SSH connection (runs its lifetime and the
``max_session_seconds`` limit), and per forward a listener plus two relay threads per connection.
How many of each can exist at once is capped by :class:`GatewayLimits`.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import paramiko

from safetunnel.errors import ConfigError, SSHError
from safetunnel.ssh._gwserver import GatewayServer
from safetunnel.ssh._relay import Threads
from safetunnel.ssh._transport import TunedTransport, tune_accepted
from safetunnel.ssh.gwlimits import GatewayLimits, PendingLogins, Slots
from safetunnel.ssh.keys import generate_ed25519

__all__ = ["Gateway", "GatewayLimits", "load_authorized_keys", "start_builtin"]

log = logging.getLogger("safetunnel.ssh.gateway")
_KEY_FIELD = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[\w.@-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)")


class Gateway:
    """A forwarding-only SSH server. ``listen`` port 0 picks a free port (see ``address``).

    Binds forwards only on loopback unless ``allow_public``; any user name is accepted, the
    key or password is the identity. A context manager; ``close()`` is idempotent.
    """

    def __init__(
        self,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        host_key: paramiko.PKey | None = None,
        authorized_keys: Sequence[paramiko.PKey] | None = None,
        passwords: Mapping[str, str] | None = None,
        max_session_seconds: float | None = None,
        *,
        allow_public: bool = False,
        timeout: float = 10.0,
        limits: GatewayLimits | None = None,
    ) -> None:
        self._listen = listen
        self._host_key = host_key if host_key is not None else generate_ed25519()
        self._authorized = list(authorized_keys or ())
        self._passwords = dict(passwords or {})
        self._max_session = max_session_seconds
        self._allow_public, self._timeout = allow_public, timeout
        self._sock: socket.socket | None = None
        self._threads = Threads()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._transports: set[paramiko.Transport] = set()
        self._counter = itertools.count(1)
        self._limits = limits or GatewayLimits()
        self._pending = PendingLogins(self._limits.pending_logins, grace=timeout)
        self._sessions = Slots(self._limits.sessions)
        self._connections = Slots(self._limits.connections)

    @property
    def host_key(self) -> paramiko.PKey:
        return self._host_key

    @property
    def address(self) -> tuple[str, int]:
        """The real listening address (after ``start()``)."""
        if self._sock is None:
            raise SSHError("The gateway is not started.")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> Gateway:
        """Listen and start accepting; SSHError when the address cannot be bound."""
        family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self._listen)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise SSHError(f"The gateway cannot listen on {self._listen}: {exc}") from exc
        self._sock = sock
        self._threads.spawn("safetunnel-gw-accept", self._accept_loop, sock)
        log.info("gateway listening on %s:%d", *self.address)
        return self

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                conn, _origin = sock.accept()
            except OSError:
                return  # close() shut the socket down
            tune_accepted(conn)
            gone = threading.Event()
            self._pending.admit(conn, gone)  # when full: cuts the oldest login, waits for it
            self._threads.spawn(
                f"safetunnel-gw-client-{next(self._counter)}", self._serve_client, conn, gone
            )

    def _serve_client(self, conn: socket.socket, gone: threading.Event) -> None:
        started = time.monotonic()
        transport = TunedTransport(conn, self._timeout)
        transport.add_server_key(self._host_key)
        server = GatewayServer(
            transport, self._authorized, self._passwords, self._allow_public, self._relay_slots()
        )
        try:
            with self._lock:
                if self._closing.is_set():
                    return
                self._transports.add(transport)
            transport.start_server(server=server)
            if self._logged_in(conn, transport, started):
                try:
                    transport.join(self._remaining(started))
                finally:
                    self._sessions.give()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.info("gateway client failed: %s", exc)
        finally:
            self._end_client(conn, server, transport)
            gone.set()

    def _end_client(
        self, conn: socket.socket, server: GatewayServer, transport: paramiko.Transport
    ) -> None:
        self._pending.leave(conn)
        server.close()
        transport.close()
        if transport.is_alive():  # close() does not always wait for paramiko's thread
            transport.join(self._timeout)
        with self._lock:
            self._transports.discard(transport)

    def _relay_slots(self) -> tuple[Slots, Slots]:
        return Slots(self._limits.connections_per_session), self._connections

    def _logged_in(
        self, conn: socket.socket, transport: paramiko.Transport, started: float
    ) -> bool:
        """True once paramiko has authenticated the client (after checking the signature: the
        server callbacks also run for a mere "would you take this key?") and a session slot is
        free; False at the login limit (counted from the TCP accept), on disconnect or close()."""
        deadline = started + self._timeout
        while not transport.is_authenticated():
            if not transport.is_active() or time.monotonic() > deadline:
                return False
            if self._closing.wait(0.05):
                return False
        if not self._pending.leave(conn) or self._closing.is_set():
            return False  # cut to make room for a newer login, or the gateway is closing
        if not self._sessions.take():
            log.warning("gateway full (%d sessions): login refused", self._limits.sessions)
            return False
        return True

    def _remaining(self, started: float) -> float | None:
        if self._max_session is None:
            return None
        return max(started + self._max_session - time.monotonic(), 0.0)

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, end every session and forward, join all threads. Idempotent."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
            transports = list(self._transports)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        for transport in transports:
            transport.close()
        self._threads.join_all(timeout)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_builtin(
    max_session_seconds: float | None = None, limits: GatewayLimits | None = None
) -> tuple[Gateway, paramiko.PKey]:
    """An in-process gateway on 127.0.0.1:<free port> with ephemeral Ed25519 host and client
    keys; connect with ``client_key=`` the returned key and ``expected_key=gateway.host_key``.
    ``limits`` lets a share raise ``connections_per_session`` to its own connection limit."""
    client_key = generate_ed25519()
    gateway = Gateway(
        ("127.0.0.1", 0),
        generate_ed25519(),
        [client_key],
        max_session_seconds=max_session_seconds,
        limits=limits,
    )
    return gateway.start(), client_key


def load_authorized_keys(path: Path | str) -> list[paramiko.PKey]:
    """Keys from an OpenSSH authorized_keys file.

    A line with options before its key (``restrict``, ``from=...``, ``permitlisten=...``) is
    refused with ConfigError: the gateway cannot honour them, and ignoring them would give a key
    that sshd limits the gateway's full (forwarding-only) rights. Lines that hold no readable
    key are skipped with a log line, like sshd does.
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read authorized keys {file}: {exc.strerror or exc}") from exc
    keys: list[paramiko.PKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, options = _parse_key_line(stripped)
        if options:
            raise ConfigError(
                f"{file} line {number}: the gateway cannot honour key options "
                f"({', '.join(options)})",
                hint="Remove the options from that line to give the key plain forwarding to "
                "loopback, or leave the key out; sshd honours them if you need them.",
            )
        if key is None:
            log.warning("%s line %d: no usable key, skipped", file, number)
        else:
            keys.append(key)
    return keys


def _parse_key_line(line: str) -> tuple[paramiko.PKey | None, list[str]]:
    """The line's key and the names of the options before it (``from=``, ``restrict``)."""
    for match in _KEY_FIELD.finditer(line):
        try:
            blob = base64.b64decode(match.group(2), validate=True)
            key = paramiko.PKey.from_type_string(match.group(1), blob)
        except Exception as exc:  # corrupt base64, unknown key type (UnknownKeyType), ...
            log.debug("not a key: %s %s", match.group(1), type(exc).__name__)
            continue
        return key, _option_names(line[: match.start()].strip())
    return None, []


def _option_names(options: str) -> list[str]:
    # Commas inside double quotes belong to a value (command="a, b").
    names: list[str] = []
    for part in re.findall(r'(?:[^,"]|"[^"]*"?)+', options):
        name, equals, _value = part.strip().partition("=")
        names.append(name + equals)
    return names
