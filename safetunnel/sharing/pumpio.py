"""I/O primitives of the pump: the lazy start hook, ordered outboxes, local connect, raw copy."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from safetunnel.sharing.stats import ConnCounters

# Large reads: DESIGN §4 measured 64-256 KiB with sendall as the sweet spot.
BUFSIZE = 256 * 1024

log = logging.getLogger("safetunnel.sharing.pump")


BAD_GATEWAY = (
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 37\r\n"
    b"Connection: close\r\n\r\nThe shared service is not answering.\n"
)


class ServiceUnavailable(Exception):
    """The local service refused the connection after the gate allowed it."""


class ChannelLike(Protocol):
    """What the pump needs from a paramiko Channel (the gateway's channels fit too)."""

    def recv(self, nbytes: int) -> bytes: ...
    def sendall(self, s: bytes) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


Submit = Callable[[Callable[[], None]], object]
Decision = Callable[[ConnCounters, bool, str], None]
Finished = Callable[[ConnCounters, bool, str], None]


class StartOnInput:
    """Stands in for the ``threading.Event`` that paramiko's channel input buffer sets on data,
    EOF and close (``BufferedPipe.set_event``): each ``set`` starts the remote reader unless one
    is running (see :meth:`Pump.kick`).

    Handing a pump to a pool thread at MSG_CHANNEL_OPEN, only for it to block until the first data
    packet, cost one extra thread wake-up per connection on the transport thread; profiled, the
    lock releases that wake waiting threads were about half of that thread's GIL time. ``set`` runs
    on the transport thread, inside the buffer's lock: it must only submit, never block or close.
    """

    def __init__(self, start: Callable[[], None]) -> None:
        self._start = start

    def set(self) -> None:
        self._start()

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False


class RemoteStarter:
    """At most one thread reads a channel's remote side, and none waits for it in vain.

    A pool thread is taken only once the remote has sent something (data, EOF or close) through
    paramiko's input-buffer event; :meth:`park` gives the thread back until the next input, and
    :meth:`kick` starts a reader regardless (deadlines must still fire for silent clients).
    """

    def __init__(self, chan: Any, submit: Callable[[Callable[[], None]], object]) -> None:
        self._chan = chan
        self._submit = submit
        self._lock = threading.Lock()
        self.active = False  # a thread reads (or is about to read) the remote side
        self._runner: Callable[[], None] | None = None
        self._in_buffer: Any = None
        self._event = StartOnInput(self.kick)

    def start(self, runner: Callable[[], None]) -> None:
        """Submit ``runner`` on the first input; channels without an input buffer start now."""
        self._runner = runner
        in_buffer = getattr(self._chan, "in_buffer", None)
        if in_buffer is None or not hasattr(in_buffer, "set_event"):
            self.kick()
            return
        self._in_buffer = in_buffer
        in_buffer.set_event(self._event)  # sets it at once if input is waiting

    def kick(self) -> None:
        """Run the remote reader now unless one is running; idempotent, any thread, never blocks.

        Called on the transport thread for every input while parked, and by the tunnel for
        overdue pumps."""
        with self._lock:
            if self.active or self._runner is None:
                return
            self.active = True
            runner = self._runner
        try:
            self._submit(runner)
        except Exception:  # the pool is shut down: teardown is closing every channel anyway
            log.debug("could not start a pump's remote reader", exc_info=True)

    def park(self) -> None:
        """Let the next remote input (data, EOF, close) start a reader; none waits meanwhile."""
        with self._lock:
            self.active = False
        if self._in_buffer is None:  # no input event to wait on: read in another thread now
            self.kick()
            return
        # Re-registering sets the event at once if input already arrived (no lost wake-up:
        # set_event checks under the buffer's lock, and every later feed sets it too).
        self._in_buffer.set_event(self._event)


class Outbox:
    """FIFO of pending writes to one destination, flushed by whichever thread gets there first."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._queue: deque[bytes | bytearray] = deque()
        self._lock = threading.Lock()
        self._send = send

    def put(self, data: bytes | bytearray) -> None:
        self._queue.append(data)

    def flush(self) -> None:
        with self._lock:
            while self._queue:
                self._send(self._queue.popleft())


def open_local(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """Connect to the local service with Nagle off (DESIGN §4)."""
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def copy_stream(
    recv: Callable[[int], bytes], send: Callable[[bytes], None], count: Callable[[int], None]
) -> None:
    """Copy until EOF: one blocking reader per direction (no select loop, DESIGN §4)."""
    while data := recv(BUFSIZE):
        count(len(data))
        send(data)


# Deadlines are polled at least this often so a stuck read never outlives the header deadline much.
_MIN_WAIT = 0.05


def recv_until(
    chan: ChannelLike, deadline: float | None, clock: Callable[[], float]
) -> bytes | None:
    """One read from the channel, or None once ``deadline`` (same clock as ``clock``) passed."""
    chan.settimeout(None if deadline is None else max(_MIN_WAIT, deadline - clock()))
    try:
        return chan.recv(BUFSIZE)
    except TimeoutError:
        return None
    finally:
        if deadline is not None:
            chan.settimeout(None)


def close_socket(sock: socket.socket) -> None:
    """Shut down and close, whatever state the socket is in (teardown must not fail)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
