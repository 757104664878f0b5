"""The paramiko engine's session: one authenticated transport carrying one remote forward.

Threads: paramiko's transport thread (it runs the forward handler) and, once started, one
keepalive watchdog thread named ``safetunnel-keepalive-<host>``; ``close()`` joins it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import paramiko

from safetunnel.addresses import format_hostport
from safetunnel.errors import ConfigError, ForwardRefused, ForwardWidened, SSHError
from safetunnel.ssh._transport import RequestAborted, RequestTimeout, TunedTransport
from safetunnel.ssh._watchdog import KeepaliveWatchdog
from safetunnel.ssh.channelstream import ChannelStream
from safetunnel.ssh.engine import Forward, HostKeyState, StreamHandler
from safetunnel.ssh.hostkeys import fingerprint
from safetunnel.ssh.narrowing import PROBE_BIND, narrowed, needs_probe
from safetunnel.ssh.target import SSHTarget

log = logging.getLogger("safetunnel.ssh")

# OpenSSH sends this SSH_MSG_DEBUG text just before the reply when GatewayPorts=yes replaced the
# requested listen address with the wildcard (channels.c, channel_fwd_bind_addr).
GATEWAYPORTS_OVERRIDE = "overridden by server GatewayPorts"


def _late_channel(chan: Any, origin: tuple[str, int], server: tuple[str, int]) -> None:
    """The forward handler once a forward is cancelled or refused. paramiko checks the handler
    for None and then calls it again later on its transport thread, so clearing it from another
    thread crashes that thread when a channel arrives in between. A late channel is left open
    for ``transport.close()`` to close: closing it here could block the transport thread."""


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
        transport.stop_polling()  # logged in: nothing more times out through the socket
        # paramiko matches every global reply through one shared completion_event, so two
        # requests in flight (keepalive + cancel) would steal each other's replies.
        self._request_lock = threading.Lock()
        self._forward: tuple[str, int] | None = None  # what the server listens on now
        self._listener: Forward | None = None
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
        self, bind: str, port: int, on_stream: StreamHandler, *, allow_wildcard: bool = False
    ) -> Forward:
        """Ask the server to listen on ``bind:port`` (0 = server's choice).

        ``on_stream(stream)`` runs on paramiko's transport thread for each incoming connection:
        it must only hand the stream to another thread, never block. ForwardRefused (exit 6)
        when refused, when sshd's GatewayPorts widened the bind and ``allow_wildcard`` is
        False, or when a bind beyond loopback would be narrowed to loopback. paramiko keeps
        one forward handler per transport, so a session forwards once.
        """
        if not bind:
            raise ConfigError(
                'Refusing to request bind address "": servers read it as every interface.',
                hint='Use "127.0.0.1", or "0.0.0.0" with --public.',
            )
        if self._listener is not None:
            raise SSHError("This session already carries a forward; open one session per tunnel.")

        def handler(chan: paramiko.Channel, origin: tuple[str, int], _: tuple[str, int]) -> None:
            on_stream(ChannelStream(chan, origin))

        if needs_probe(bind) and self._narrows(handler):
            raise narrowed(self.target.display)
        seen = len(self._transport.debug_messages)
        actual = self._request_forward(bind, port, handler)
        widened = self._overrides(seen)
        if widened and not allow_wildcard:
            self._cancel_forward()
            raise ForwardWidened(
                f"{self.target.display} bound port {actual} on ALL interfaces instead of {bind}"
                f" (server said: {widened[0]}). The forward was cancelled.",
                hint="Pass --public if you really mean to expose it, or ask the admin for"
                " `GatewayPorts clientspecified`.",
            )
        self._listener = Forward(bind, actual, self._cancel_forward)
        return self._listener

    def _overrides(self, seen: int) -> list[str]:
        return [m for m in self._transport.debug_messages[seen:] if GATEWAYPORTS_OVERRIDE in m]

    def _narrows(self, handler: Callable[[paramiko.Channel, Any, Any], None]) -> bool:
        """True when the server bound a forward on an address it cannot have without saying it
        widened it: it puts remote forwards on its loopback (see safetunnel.ssh.narrowing)."""
        seen = len(self._transport.debug_messages)
        try:
            self._request_forward(PROBE_BIND, 0, handler)
        except ForwardRefused:
            return False  # it honours listen addresses; the real request decides
        self._cancel_forward()
        return not self._overrides(seen)

    def _request_forward(
        self, bind: str, port: int, handler: Callable[[paramiko.Channel, Any, Any], None]
    ) -> int:
        """Send ``tcpip-forward``; the port the server listens on, or ForwardRefused."""
        self._transport.set_forward_handler(handler)  # before the reply: no early channel lost
        try:
            reply = self.global_request("tcpip-forward", (bind, port))
        except SSHError:
            self._transport.set_forward_handler(_late_channel)
            raise
        if reply is None:
            self._transport.set_forward_handler(_late_channel)
            raise ForwardRefused(
                f"{self.target.display} refused to listen on {format_hostport(bind, port)}.",
                hint="The port may be taken or not permitted (AllowTcpForwarding, permitlisten);"
                " try --remote-port 0.",
            )
        actual = reply.get_int() if port == 0 else port
        self._forward = (bind, actual)
        return actual

    def is_active(self) -> bool:
        """False once the transport died (peer closed, network error) or was closed, or the
        keepalive watchdog declared the peer lost."""
        return not self._lost and bool(self._transport.is_active())

    def _cancel_forward(self) -> None:
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
        except (SSHError, paramiko.SSHException, EOFError, OSError) as exc:
            # paramiko's own errors too: the connection died under the request (a stall that
            # the kernel ended), and close() must still go on to close the transport.
            log.warning("could not cancel the forward: %s", str(exc) or type(exc).__name__)

    def start_watchdog(self, interval: float, on_lost: Callable[[], None]) -> None:
        """Ping every ``interval`` s; call ``on_lost()`` once (on the watchdog thread) when no
        reply came within about 3 intervals or the transport died."""
        if self._watchdog is not None:
            raise SSHError("The keepalive watchdog is already running.")

        def lost() -> None:
            self._lost = True
            on_lost()

        self._transport.bound_unacknowledged(3 * interval)  # the watchdog's own limit
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
        self._cancel_forward()
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
