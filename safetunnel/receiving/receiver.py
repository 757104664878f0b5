"""A local listener whose connections each reach a share through a dialer.

Each connection accepted on 127.0.0.1 gets its own byte stream to the share from the dialer (an
SSH channel, an ``ssh -W`` process, a pinned TLS connection), and the token's preamble goes first
(see :mod:`safetunnel.receiving.relay`). A dialer that raises ends the receiver with that error.

Threads: the acceptor (``safetunnel-connect-accept``), one short-lived opener per new connection
and two per relayed connection. :meth:`Receiver.close` is the single teardown path: listener
first (no new connections), then every relay and opener, then the dialer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

from safetunnel.addresses import LOOPBACK_BIND
from safetunnel.errors import SafetunnelError
from safetunnel.receiving.dialer import Dialer
from safetunnel.receiving.relay import JOIN_TIMEOUT, Relay
from safetunnel.tickets import Ticket
from safetunnel.timefmt import utc_now

# How long close() waits for an opener blocked in its dialer (which close() has already closed).
OPENER_TIMEOUT = 15.0
# How soon a failed accept (no descriptor left) is tried again.
ACCEPT_RETRY = 0.1


class Receiver:
    """Serves one ticket on a local port until its expiry, :meth:`stop` or a fatal SSH error."""

    def __init__(
        self,
        ticket: Ticket,
        dialer: Dialer,
        local_port: int = 0,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._ticket = ticket
        self._dialer = dialer
        self._local_port = local_port
        self._clock = clock
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
        """Start the dialer (raising 4/5/1 before anything listens), then listen.

        Returns the local address. An expired ticket is refused before any network."""
        self._ticket.check_fresh(self._clock())
        self._dialer.start()
        self._dialer.watch(self.stop)
        try:
            listener = socket.create_server((LOOPBACK_BIND, self._local_port))
        except OSError as err:
            self._dialer.close()
            # create_server's own strerror adds a Python tuple; the user wants the reason only.
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise SafetunnelError(
                f"cannot listen on {LOOPBACK_BIND}:{self._local_port}: {reason}",
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
        """Stop listening, close every connection and the dialer. Idempotent."""
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
        self._dialer.close()  # an opener waiting on the share gives up with its dialer
        for thread in openers:
            thread.join(OPENER_TIMEOUT)

    # -- per connection -------------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopped.is_set():
            try:
                client, origin = listener.accept()
            except OSError:
                if self._stopped.is_set():
                    return  # close() shut the listener
                # Out of descriptors (any local user can open connections here): the clients
                # that came meanwhile wait in the backlog until closed ones free some.
                self._stopped.wait(ACCEPT_RETRY)
                continue
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
            channel = self._dialer.dial(origin)
        except SafetunnelError as err:
            client.close()
            if not self._stopped.is_set():  # while stopping, failing to open is expected
                self.stop(err)
            return
        except OSError:  # this connection only (no descriptor left for its way to the share)
            client.close()
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
