"""The per-connection side of the built-in gateway: auth checks and forward listeners.

Only ``tcpip-forward`` is served. Sessions, exec, shells and ``direct-tcpip`` are refused at
channel open, so a gateway login cannot run anything or reach other hosts.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
from collections.abc import Mapping, Sequence

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
)

from safetunnel.ssh._relay import Threads, relay
from safetunnel.ssh._transport import tune_accepted
from safetunnel.ssh.gwlimits import Slots, take_all

MAX_FORWARDS_PER_SESSION = 4

log = logging.getLogger("safetunnel.ssh.gateway")
_LOOPBACK = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1"}
_WILDCARD = {"", "0.0.0.0", "*"}  # noqa: S104 (only honoured with allow_public)
CHANNEL_OPEN_TIMEOUT = 10.0


class Listener:
    """One forwarded port: accepts TCP connections and relays each over a forwarded-tcpip
    channel to the SSH client."""

    def __init__(
        self,
        transport: paramiko.Transport,
        address: tuple[str, str, int],
        threads: Threads,
        slots: tuple[Slots, ...],
    ) -> None:
        host, requested, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(128)
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        self.address = (host, self.port)
        self._transport, self._requested, self._threads = transport, requested, threads
        self._slots = slots
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        threads.spawn(f"safetunnel-gw-listen-{self.port}", self._accept_loop)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, origin = self._sock.accept()
            except OSError:
                return  # closed by close()
            if not take_all(self._slots):
                # Full: closing at once costs no thread; the share's own gate, not this cap,
                # decides which remote clients it keeps.
                log.info("too many forwarded connections: %s:%d closed", *origin[:2])
                conn.close()
                continue
            tune_accepted(conn)
            with self._lock:
                self._conns.add(conn)
            self._threads.spawn(f"safetunnel-gw-conn-{self.port}", self._serve, conn, origin)

    def _serve(self, conn: socket.socket, origin: tuple[str, int]) -> None:
        try:
            chan = self._transport.open_channel(
                "forwarded-tcpip",
                (self._requested, self.port),
                (origin[0], origin[1]),
                timeout=CHANNEL_OPEN_TIMEOUT,
            )
            relay(chan, conn, self._threads, f"safetunnel-gw-conn-{self.port}")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.info("forwarded connection from %s:%d not opened: %s", *origin[:2], exc)
        finally:
            conn.close()
            with self._lock:
                self._conns.discard(conn)
            for slot in self._slots:
                slot.give()

    def stop_listening(self) -> None:
        """Accept no new connections; the relayed ones carry on (as OpenSSH's cancel does)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def close(self) -> None:
        """Stop listening and cut every relayed connection (shutdown wakes blocked threads)."""
        self.stop_listening()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class GatewayServer(paramiko.ServerInterface):
    """paramiko's callbacks for one client connection (they run on its transport thread)."""

    def __init__(
        self,
        transport: paramiko.Transport,
        authorized_keys: Sequence[paramiko.PKey],
        passwords: Mapping[str, str],
        allow_public: bool,
        slots: tuple[Slots, ...],
    ) -> None:
        self._transport = transport
        self._slots = slots
        self._keys = [key.asbytes() for key in authorized_keys]
        self._passwords = passwords
        self._allow_public = allow_public
        self.threads = Threads()
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._cancelled: list[Listener] = []  # not listening; their connections may still run

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self._passwords else "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        # Any user name is fine: the key is the identity on a forwarding-only server. paramiko
        # asks this *before* it checks the signature (and for a mere "would you take this
        # key?"), so a yes here is not a login: only transport.is_authenticated() is.
        if any(hmac.compare_digest(key.asbytes(), known) for known in self._keys):
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        expected = self._passwords.get(username)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        # keepalive@openssh.com and anything unknown: a failure reply, as OpenSSH sends. The
        # client only needs *a* reply to know we are alive.
        return False

    def _bind_host(self, address: str) -> str | None:
        if address in _LOOPBACK:
            return _LOOPBACK[address]
        if not self._allow_public:
            return None
        return "0.0.0.0" if address in _WILDCARD else address  # noqa: S104 (allow_public)

    def check_port_forward_request(self, address: str, port: int) -> int:
        host = self._bind_host(address)
        with self._lock:
            # A share needs one forward per session; a few leave room for reconnect-style
            # clients, while an authenticated key cannot pile up listeners and threads.
            crowded = len(self._listeners) >= MAX_FORWARDS_PER_SESSION
        if crowded or host is None or (0 < port < 1024) or not 0 <= port < 65536:
            log.info("refused tcpip-forward for %r port %d", address, port)
            return False  # paramiko reads a false value as a refusal
        try:
            listener = Listener(self._transport, (host, address, port), self.threads, self._slots)
        except OSError as exc:
            log.info("cannot listen on %s:%d: %s", host, port, exc)
            return False
        with self._lock:
            self._listeners[(address, listener.port)] = listener
        log.info("forwarding %s:%d", host, listener.port)
        return listener.port

    def cancel_port_forward_request(self, address: str, port: int) -> None:
        with self._lock:
            listener = self._listeners.pop((address, port), None)
        if listener is not None:
            # Only stop listening: cutting the relayed connections here would drop what the
            # client just sent on them (a 401 written right before the client cancels).
            listener.stop_listening()
            with self._lock:
                self._cancelled.append(listener)

    def close(self, timeout: float = 5.0, drain: float = 1.0) -> None:
        """Close every listener; give relays ``drain`` s to deliver what their (closed) channels
        still hold, then cut the remaining connections and join the threads."""
        with self._lock:
            listeners = [*self._listeners.values(), *self._cancelled]
            self._listeners, self._cancelled = {}, []
        for listener in listeners:
            listener.stop_listening()
        self.threads.join_all(min(drain, timeout))
        for listener in listeners:
            listener.close()
        self.threads.join_all(timeout)
