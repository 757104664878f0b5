"""The SSH client session: connect, verify the host key, authenticate, forward, watch.

Threads: paramiko's transport thread (it runs the forward handler) and, once started, one
keepalive watchdog thread named ``safetunnel-keepalive-<host>``; ``close()`` joins it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol

import paramiko

from safetunnel.errors import ConfigError, ForwardRefused, HostKeyChanged, HostKeyUnknown, SSHError
from safetunnel.ssh._auth import authenticate
from safetunnel.ssh._transport import (
    ForwardHandler,
    RequestAborted,
    RequestTimeout,
    TunedTransport,
    connect_socket,
)
from safetunnel.ssh._watchdog import KeepaliveWatchdog
from safetunnel.ssh.hostkeys import HostKeyStore, fingerprint
from safetunnel.ssh.target import SSHTarget

log = logging.getLogger("safetunnel.ssh")

# OpenSSH sends this SSH_MSG_DEBUG text just before the reply when GatewayPorts=yes replaced the
# requested listen address with the wildcard (channels.c, channel_fwd_bind_addr).
GATEWAYPORTS_OVERRIDE = "overridden by server GatewayPorts"
HostKeyPrompt = Callable[[SSHTarget, str, str], bool]
HostKeyState = Literal["pinned", "newly-trusted", "builtin"]


class AuthSource(Protocol):
    """Where secrets come from (keyring, prompt). Called at most once per secret per session."""

    def passphrase(self, key_path: str) -> str | None: ...
    def password(self, target: SSHTarget) -> str | None: ...
    def rejected(self, what: str) -> None: ...


def _late_channel(chan: Any, origin: tuple[str, int], server: tuple[str, int]) -> None:
    """The forward handler once a forward is cancelled or refused. paramiko checks the handler
    for None and then calls it again later on its transport thread, so clearing it from another
    thread crashes that thread when a channel arrives in between. A late channel is left open
    for ``transport.close()`` to close: closing it here could block the transport thread."""


def _prefer_key_types(transport: paramiko.Transport, types: tuple[str, ...]) -> None:
    """Ask for the host key types we already pin, first (as OpenSSH does), so a server that
    still has its pinned key is never mistaken for a changed one."""
    wanted: list[str] = []
    for name in types:
        wanted += ["rsa-sha2-512", "rsa-sha2-256"] if name == "ssh-rsa" else [name]
    options = transport.get_security_options()
    current = list(options.key_types)
    first = [name for name in wanted if name in current]
    options.key_types = tuple(first + [name for name in current if name not in first])


def _verify_host_key(
    target: SSHTarget,
    transport: paramiko.Transport,
    hostkeys: HostKeyStore | None,
    on_unknown_key: HostKeyPrompt | None,
    expected_key: paramiko.PKey | None,
) -> HostKeyState:
    key = transport.get_remote_server_key()
    got = fingerprint(key)
    if expected_key is not None:
        if key.asbytes() != expected_key.asbytes():
            raise HostKeyChanged(
                f"The built-in gateway presented {key.get_name()} {got}, "
                f"expected {fingerprint(expected_key)}."
            )
        return "builtin"
    if hostkeys is not None and hostkeys.check(target.hostname, target.port, key) == "known":
        return "pinned"
    host = target.label or target.display
    if on_unknown_key is None:
        raise HostKeyUnknown(
            f"The host key of {target.display} is not known: {key.get_name()} {got}",
            hint=f"Check the fingerprint with the host's administrator, then run "
            f"`safetunnel hosts trust {host} --fingerprint {got}`.",
        )
    if not on_unknown_key(target, key.get_name(), got):
        raise HostKeyUnknown(f"The host key of {target.display} ({got}) was not trusted.")
    if hostkeys is not None:
        hostkeys.pin(target.hostname, target.port, key)
    return "newly-trusted"


def fetch_host_key(
    target: SSHTarget, hostkeys: HostKeyStore | None, timeout: float = 10.0
) -> paramiko.PKey:
    """The server's host key, from a handshake only: nothing is authenticated or sent.

    Used by ``hosts trust``. It goes through the same transport as :func:`open_session` (same
    algorithm policy, timeouts and preferred key types), so the key shown is the key a share
    will be offered later.
    """
    transport = _handshake(target, hostkeys, None, timeout)
    try:
        key: paramiko.PKey = transport.get_remote_server_key()
        return key
    finally:
        transport.close()


def _handshake(
    target: SSHTarget,
    hostkeys: HostKeyStore | None,
    expected_key: paramiko.PKey | None,
    timeout: float,
) -> TunedTransport:
    """TCP connect and SSH key exchange, preferring the host key types already pinned (as
    OpenSSH does), so that a pinned host is not offered a key of another type first."""
    transport = TunedTransport(connect_socket(target.hostname, target.port, timeout), timeout)
    try:
        if expected_key is not None:
            _prefer_key_types(transport, (expected_key.get_name(),))
        elif hostkeys is not None:
            _prefer_key_types(transport, hostkeys.known_types(target.hostname, target.port))
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise SSHError(f"SSH handshake with {target.display} failed: {exc}") from exc
    except BaseException:
        transport.close()
        raise
    return transport


def open_session(
    target: SSHTarget,
    *,
    hostkeys: HostKeyStore | None,
    on_unknown_key: HostKeyPrompt | None,
    auth: AuthSource | None,
    client_key: paramiko.PKey | None = None,
    expected_key: paramiko.PKey | None = None,
    timeout: float = 10.0,
) -> SSHSession:
    """Connect and authenticate. ``expected_key`` trusts exactly that host key (built-in
    gateway) and skips the files; otherwise ``hostkeys`` decides and ``on_unknown_key`` asks.

    Raises HostKeyUnknown/HostKeyChanged (4), AuthFailed (5) or SSHError (1).
    """
    transport = _handshake(target, hostkeys, expected_key, timeout)
    try:
        state = _verify_host_key(target, transport, hostkeys, on_unknown_key, expected_key)
        authenticate(transport, target, auth, client_key)
    except BaseException:
        transport.close()
        raise
    return SSHSession(transport, target, state, timeout)


class SSHSession:
    """One authenticated connection carrying at most one remote forward. A context manager."""

    def __init__(
        self,
        transport: TunedTransport,
        target: SSHTarget,
        host_key_state: HostKeyState,
        timeout: float = 10.0,
    ) -> None:
        key = transport.get_remote_server_key()
        self.transport: paramiko.Transport = transport
        self._transport = transport
        self.target = target
        self.host_key_state: HostKeyState = host_key_state
        self.fingerprint = fingerprint(key)
        self.key_type = key.get_name()
        self.strict_kex = bool(getattr(transport, "agreed_on_strict_kex", False))
        self._timeout = timeout
        # paramiko matches every global reply through one shared completion_event, so two
        # requests in flight (keepalive + cancel) would steal each other's replies.
        self._request_lock = threading.Lock()
        self._forward: tuple[str, int] | None = None
        self._watchdog: KeepaliveWatchdog | None = None
        self._lost = False  # the watchdog gave up on the peer: never wait on it again
        self._closed = False
        self._close_lock = threading.Lock()
        if not self.strict_kex:
            log.warning(
                "%s did not agree to strict key exchange (the Terrapin fix); "
                "update its OpenSSH if you can",
                target.display,
            )

    def global_request(
        self, kind: str, data: tuple[Any, ...] | None = None, timeout: float | None = None
    ) -> paramiko.Message | None:
        """A serialized global request with a timeout: SSHError when no reply comes in time."""
        limit = self._timeout if timeout is None else timeout
        if not self._request_lock.acquire(timeout=limit):
            raise SSHError(f"Timed out waiting to send {kind!r} to {self.target.display}")
        try:
            return self._transport.timed_request(kind, data, limit)
        except (RequestTimeout, RequestAborted) as exc:
            raise SSHError(f"No reply from {self.target.display} to {kind!r}") from exc
        finally:
            self._request_lock.release()

    def forward(
        self, bind: str, port: int, handler: ForwardHandler, allow_wildcard: bool = False
    ) -> int:
        """Ask the server to listen on ``bind:port`` (0 = server's choice); returns the port.

        ``handler(channel, origin, server_address)`` runs on paramiko's transport thread: it
        must only hand the channel to another thread, never block. ForwardRefused (exit 6) when
        refused, or when sshd's GatewayPorts widened the bind and ``allow_wildcard`` is False.
        """
        if not bind:
            raise ConfigError(
                'Refusing to request bind address "": servers read it as every interface.',
                hint='Use "127.0.0.1", or "0.0.0.0" with --public.',
            )
        if self._forward is not None:
            raise SSHError("This session already carries a forward; open one session per tunnel.")
        seen = len(self._transport.debug_messages)
        self._transport.set_forward_handler(handler)  # before the reply: no early channel lost
        try:
            reply = self.global_request("tcpip-forward", (bind, port))
        except SSHError:
            self._transport.set_forward_handler(_late_channel)
            raise
        if reply is None:
            self._transport.set_forward_handler(_late_channel)
            raise ForwardRefused(
                f"{self.target.display} refused to listen on {bind}:{port}.",
                hint="The port may be taken or not permitted (AllowTcpForwarding, permitlisten);"
                " try --remote-port 0.",
            )
        actual = reply.get_int() if port == 0 else port
        self._forward = (bind, actual)
        widened = [m for m in self._transport.debug_messages[seen:] if GATEWAYPORTS_OVERRIDE in m]
        if widened and not allow_wildcard:
            self.cancel_forward()
            raise ForwardRefused(
                f"{self.target.display} bound port {actual} on ALL interfaces instead of {bind}"
                f" (server said: {widened[0]}). The forward was cancelled.",
                hint="Pass --public if you really mean to expose it, or ask the admin for"
                " `GatewayPorts clientspecified`.",
            )
        return actual

    def is_active(self) -> bool:
        """False once the transport died (peer closed, network error) or was closed, or the
        keepalive watchdog declared the peer lost."""
        return not self._lost and bool(self._transport.is_active())

    def cancel_forward(self) -> None:
        """Stop the server listening (no new connections); open channels stay. Idempotent."""
        forward, self._forward = self._forward, None
        if forward is None or not self.is_active():
            return  # a lost peer would only make teardown wait out the request timeout
        self._transport.set_forward_handler(_late_channel)
        try:
            reply = self.global_request("cancel-tcpip-forward", forward, min(self._timeout, 3.0))
            if reply is None:
                log.warning(
                    "%s refused to cancel the forward on port %d", self.target.display, forward[1]
                )
        except SSHError as exc:
            log.warning("could not cancel the forward: %s", exc)

    def start_watchdog(self, interval: float, on_lost: Callable[[], None]) -> None:
        """Ping every ``interval`` s; call ``on_lost()`` once (on the watchdog thread) when no
        reply came within about 3 intervals or the transport died."""
        if self._watchdog is not None:
            raise SSHError("The keepalive watchdog is already running.")

        def lost() -> None:
            self._lost = True
            on_lost()

        self._watchdog = KeepaliveWatchdog(
            self._ping,
            self._transport.is_active,
            interval,
            lost,
            f"safetunnel-keepalive-{self.target.hostname}",
        )
        self._watchdog.start()

    def _ping(self, budget: float, stop: threading.Event) -> None:
        if not self._request_lock.acquire(timeout=budget):
            raise RequestTimeout("keepalive@openssh.com")
        try:
            # Any reply proves the peer alive; OpenSSH answers this one with a failure.
            self._transport.timed_request("keepalive@openssh.com", None, budget, stop)
        finally:
            self._request_lock.release()

    def close(self) -> None:
        """Stop the watchdog, cancel the forward, close the transport. Safe to call twice,
        also from ``on_lost`` on the watchdog thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._watchdog is not None:
            self._watchdog.stop()
        self.cancel_forward()
        self._transport.close()
        # paramiko's close() returns once the socket is closed, not when its thread has ended.
        if self._transport is not threading.current_thread():
            self._transport.join(self._timeout)

    def __enter__(self) -> SSHSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
