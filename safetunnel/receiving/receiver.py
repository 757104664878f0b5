"""A local listener whose connections reach a share through one SSH session.

Each connection accepted on 127.0.0.1 gets its own ``direct-tcpip`` channel to the share's bind
and port on the SSH host (what ``ssh -L`` does), and the token's preamble goes first (see
:mod:`safetunnel.receiving.relay`). One SSH session carries every channel; when it has died, the
next connection opens a new one, pinned to the same host key. A host key that no longer matches,
a refused login or an SSH host that cannot be reached again ends the receiver with that error.

Threads: the acceptor (``safetunnel-connect-accept``), one short-lived opener per new connection
and two per relayed connection. :meth:`Receiver.close` is the single teardown path: listener
first (no new connections), then every relay and opener, then the session.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from datetime import datetime

import paramiko

from safetunnel.addresses import LOOPBACK_BIND, PUBLIC_BIND, format_hostport
from safetunnel.errors import (
    AuthFailed,
    ConnectionLost,
    HostKeyError,
    SafetunnelError,
)
from safetunnel.receiving.relay import JOIN_TIMEOUT, Relay
from safetunnel.ssh.session import SSHSession
from safetunnel.tickets import Ticket
from safetunnel.timefmt import utc_now

CHANNEL_TIMEOUT = 10.0
# A share bound on every interface of the SSH host is also reachable on its loopback, which is
# where a channel from the host itself should go.
_WILDCARDS = {PUBLIC_BIND: LOOPBACK_BIND, "::": "::1"}

SessionOpener = Callable[[], SSHSession]


class Receiver:
    """Serves one ticket on a local port until its expiry, :meth:`stop` or a fatal SSH error."""

    def __init__(
        self,
        ticket: Ticket,
        open_session: SessionOpener,
        local_port: int = 0,
        *,
        notify: Callable[[str], None] = lambda _text: None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._ticket = ticket
        self._open = open_session
        self._local_port = local_port
        self._notify = notify
        self._clock = clock
        bind = ticket.remote_bind
        self._destination = (_WILDCARDS.get(bind, bind), ticket.remote_port)
        self._session: SSHSession | None = None
        self._session_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._relays: set[Relay] = set()
        self._openers: set[threading.Thread] = set()
        self._numbers = itertools.count(1)
        self._stopped = threading.Event()
        self._closed = False
        self.error: SafetunnelError | None = None  # what ended it, when it was a failure
        self.total = 0

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._relays)

    @property
    def remaining(self) -> float:
        return max(0.0, (self._ticket.expires_at - self._clock()).total_seconds())

    def start(self) -> tuple[str, int]:
        """Log in to the SSH host (raising 4/5/1 before anything listens), then listen.

        Returns the local address. An expired ticket is refused before any network."""
        self._ticket.check_fresh(self._clock())
        self._session = self._open()
        try:
            listener = socket.create_server((LOOPBACK_BIND, self._local_port))
        except OSError as err:
            self._session.close()
            raise SafetunnelError(
                f"cannot listen on {LOOPBACK_BIND}:{self._local_port}: {err.strerror}",
                hint="Choose another --local-port, or leave it out for a free one.",
            ) from None
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, name="safetunnel-connect-accept")
        self._acceptor.start()
        host, port = listener.getsockname()[:2]
        return str(host), int(port)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True once stopped. The ticket's expiry stops it here."""
        if self._stopped.wait(min(timeout, self.remaining)):
            return True
        if self.remaining <= 0:
            self.stop()
        return self._stopped.is_set()

    def stop(self, error: SafetunnelError | None = None) -> None:
        """Ask it to end; safe from any thread and signal handlers. The first error wins."""
        if error is not None and self.error is None:
            self.error = error
        self._stopped.set()

    def close(self) -> None:
        """Stop listening, close every connection and the SSH session. Idempotent."""
        self.stop()
        with self._lock:
            first, self._closed = not self._closed, True
            relays, openers = list(self._relays), list(self._openers)
        if not first:
            return
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
        for relay in relays:
            relay.close()
        with self._session_lock:  # an opener waiting on the SSH host gives up with the session
            session, self._session = self._session, None
        if session is not None:
            session.close()
        for thread in openers:
            thread.join(CHANNEL_TIMEOUT + JOIN_TIMEOUT)

    # -- per connection -------------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopped.is_set():
            try:
                client, origin = listener.accept()
            except OSError:
                return  # close() shut the listener
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number = next(self._numbers)
            opener = threading.Thread(
                target=self._serve, args=(client, origin[:2], number), name=f"connect-{number}"
            )
            with self._lock:
                if self._closed:
                    client.close()
                    return
                self._openers.add(opener)
                self.total += 1
            opener.start()

    def _serve(self, client: socket.socket, origin: tuple[str, int], number: int) -> None:
        try:
            channel = self._channel(origin)
        except SafetunnelError as err:
            client.close()
            if not self._stopped.is_set():  # while stopping, failing to open is expected
                self.stop(err)
            return
        finally:
            with self._lock:
                self._openers.discard(threading.current_thread())
        if channel is None:
            client.close()
            return
        relay = Relay(client, channel, f"connect-{number}", self._forget)
        with self._lock:
            admitted = not self._closed
            if admitted:
                self._relays.add(relay)
        if not admitted:
            relay.close()
            return
        try:
            relay.start(f"SAFETUNNEL {self._ticket.token}\n".encode())
        except (OSError, EOFError):
            relay.close()
            self._forget(relay)

    def _forget(self, relay: Relay) -> None:
        with self._lock:
            self._relays.discard(relay)

    def _channel(self, origin: tuple[str, int]) -> paramiko.Channel | None:
        """A channel to the share; None when the SSH host could not reach it (said once per
        connection). Fatal failures raise: a changed host key, a refused login, a lost host."""
        for attempt in (1, 2):
            session = self._live_session(fresh=attempt == 2)
            try:
                return session.transport.open_channel(
                    "direct-tcpip", self._destination, origin, timeout=CHANNEL_TIMEOUT
                )
            except paramiko.ChannelException as err:
                where = format_hostport(*self._destination)
                self._notify(
                    f"The SSH host could not reach the share at {where} ({err.text}); "
                    "it may have ended."
                )
                return None
            except (paramiko.SSHException, EOFError, OSError):
                continue  # the session died under us: one more try on a new one
        raise ConnectionLost(
            f"the SSH connection to {self._ticket.ssh_host} was lost and could not be reopened"
        )

    def _live_session(self, fresh: bool) -> SSHSession:
        with self._session_lock:
            if self._closed:
                raise ConnectionLost("connect is stopping")
            session = self._session
            if session is not None and session.is_active() and not fresh:
                return session
            if session is not None:
                session.close()
            self._session = None
            try:
                self._session = self._open()
            except (HostKeyError, AuthFailed):
                raise
            except SafetunnelError as err:
                raise ConnectionLost(
                    f"the SSH connection to {self._ticket.ssh_host} was lost and could not be "
                    f"reopened: {err.message}",
                    hint="Check the network and the SSH host, then connect again.",
                ) from None
            return self._session
