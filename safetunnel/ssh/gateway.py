"""The built-in SSH gateway: a forwarding-only SSH server on paramiko, so a share works on a
machine with no SSH host configured (in-process, loopback only) and a team can run it standalone.

Threads, all named and joined by :meth:`Gateway.close`: ``safetunnel-gw-accept`` (new TCP
clients), one ``safetunnel-gw-client-<n>`` per SSH connection (runs its lifetime and the
``max_session_seconds`` limit), and per forward a listener plus two relay threads per connection.
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
from safetunnel.ssh.keys import generate_ed25519

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
            self._threads.spawn(
                f"safetunnel-gw-client-{next(self._counter)}", self._serve_client, conn
            )

    def _serve_client(self, conn: socket.socket) -> None:
        started = time.monotonic()
        transport = TunedTransport(conn, self._timeout)
        transport.add_server_key(self._host_key)
        server = GatewayServer(transport, self._authorized, self._passwords, self._allow_public)
        with self._lock:
            if self._closing.is_set():
                transport.close()
                return
            self._transports.add(transport)
        try:
            transport.start_server(server=server)
            if self._await_auth(server, transport):
                transport.join(self._remaining(started))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.info("gateway client failed: %s", exc)
        finally:
            server.close()
            transport.close()
            with self._lock:
                self._transports.discard(transport)

    def _await_auth(self, server: GatewayServer, transport: paramiko.Transport) -> bool:
        """Login grace: True once authenticated; False on timeout, disconnect or close()."""
        deadline = time.monotonic() + self._timeout
        while not server.authenticated.wait(0.05):
            if not transport.is_active() or time.monotonic() > deadline:
                return False
        return not self._closing.is_set()

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


def start_builtin(max_session_seconds: float | None = None) -> tuple[Gateway, paramiko.PKey]:
    """An in-process gateway on 127.0.0.1:<free port> with ephemeral Ed25519 host and client
    keys; connect with ``client_key=`` the returned key and ``expected_key=gateway.host_key``."""
    client_key = generate_ed25519()
    gateway = Gateway(
        ("127.0.0.1", 0), generate_ed25519(), [client_key], max_session_seconds=max_session_seconds
    )
    return gateway.start(), client_key


def load_authorized_keys(path: Path | str) -> list[paramiko.PKey]:
    """Keys from an OpenSSH authorized_keys file.

    Options before the key (``restrict``, ``permitlisten=...``, ``from=...``) are IGNORED for
    now: every listed key gets the gateway's full (forwarding-only) rights. Lines that hold no
    readable key are skipped with a log line, like sshd does.
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
        key = _parse_key_line(stripped)
        if key is None:
            log.warning("%s line %d: no usable key, skipped", file, number)
        else:
            keys.append(key)
    return keys


def _parse_key_line(line: str) -> paramiko.PKey | None:
    for match in _KEY_FIELD.finditer(line):
        try:
            blob = base64.b64decode(match.group(2), validate=True)
            return paramiko.PKey.from_type_string(match.group(1), blob)
        except Exception as exc:  # corrupt base64, unknown key type (UnknownKeyType), ...
            log.debug("not a key: %s %s", match.group(1), type(exc).__name__)
    return None
