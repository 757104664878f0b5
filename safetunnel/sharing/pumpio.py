"""I/O primitives of the pump: the lazy start hook, ordered outboxes, local connect, raw copy."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from safetunnel.ssh.engine import ByteStream

# Large reads: measured against paramiko channels, 64-256 KiB reads passed on with one sendall
# moved the most bytes per second; smaller reads pay the per-call overhead too often.
BUFSIZE = 256 * 1024

log = logging.getLogger("safetunnel.sharing.pump")


class RemoteStarter:
    """At most one thread reads a channel's remote side, and none waits for it in vain.

    A pool thread is taken only once the remote has sent something (data, EOF or close), as the
    stream notifies; :meth:`park` gives the thread back until the next input, and :meth:`kick`
    starts a reader regardless (deadlines must still fire for silent clients).
    """

    def __init__(self, stream: ByteStream, submit: Callable[[Callable[[], None]], object]) -> None:
        self._stream = stream
        self._submit = submit
        self._lock = threading.Lock()
        self.active = False  # a thread reads (or is about to read) the remote side
        self._runner: Callable[[], None] | None = None
        self._notifies = False

    def start(self, runner: Callable[[], None]) -> None:
        """Submit ``runner`` on the first input; streams that cannot notify start now."""
        self._runner = runner
        self._notifies = self._stream.notify_on_input(self.kick)
        if not self._notifies:
            self.kick()

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

    def forget(self) -> None:
        """The pump is over: drop the runner, a bound method of the pump that holds this starter
        (a reference cycle: every connection's objects would wait for the cyclic garbage
        collector instead of being freed when the pump ends). A late input no longer starts
        anything."""
        with self._lock:
            self._runner = None

    def park(self) -> None:
        """Let the next remote input (data, EOF, close) start a reader; none waits meanwhile."""
        with self._lock:
            self.active = False
        # Re-arming fires at once if input already arrived, so no wake-up is lost.
        if not self._notifies or not self._stream.notify_on_input(self.kick):
            self.kick()


class Outbox:
    """FIFO of pending writes to one destination, flushed by whichever thread gets there first."""

    def __init__(self, send: Callable[[Any], object]) -> None:
        self._queue: deque[bytes | bytearray | memoryview] = deque()
        self._lock = threading.Lock()
        self._send = send

    def put(self, data: bytes | bytearray | memoryview) -> None:
        self._queue.append(data)

    def flush(self) -> None:
        with self._lock:
            while self._queue:
                self._send(self._queue.popleft())

    def flush_nowait(self, send_nowait: Callable[[bytes], bool]) -> None:
        """Send what ``send_nowait`` takes at once, in order; drop the rest (the connection is
        closing and its peer reads nothing)."""
        with self._lock:
            while self._queue and send_nowait(bytes(self._queue.popleft())):
                pass
            self._queue.clear()


def unconnected(data: bytes) -> None:
    """The service outbox's sender until the service is open: a write before then is a bug."""
    raise RuntimeError(f"{len(data)} bytes for the service before it was connected")


# Linux only; elsewhere the service's ACKs keep the kernel's default timing.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
# A send this large is a chunk of a stream, not a request: see quick_ack.
STREAM_CHUNK = 64 * 1024


def quick_ack(sock: socket.socket, sent: int = 0) -> None:
    """ACK what the service sends at once instead of up to 40 ms later.

    A service that writes a response's head and body in two writes, with Nagle on (the
    default), holds the body until the head is ACKed; our socket, which has just sent the
    request, delays that ACK, hoping to piggyback it on data it never sends: every such
    response took ~44 ms through the gate and through ``ssh -R`` alike (measured, 300 keep-alive
    requests). Sending is what puts the socket in that mode, so quick-ACK mode is asked for
    again after every send (one system call); after reads it made no measured difference.

    Not after a stream's large chunks (``sent`` of ``STREAM_CHUNK`` or more): a service answers a
    stream only once it has ended, and the call after every chunk cost about a tenth of the
    bulk throughput (paired runs, OpenSSH engine)."""
    if _QUICKACK is not None and sent < STREAM_CHUNK:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def service_sender(sock: socket.socket) -> Callable[[bytes], None]:
    """``sock.sendall`` followed by :func:`quick_ack`."""

    def send(data: bytes) -> None:
        sock.sendall(data)
        quick_ack(sock, len(data))

    return send


def open_local(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """Connect to the local service with Nagle off: a gated reply is often one small write, and
    waiting for an ACK before sending it would add a round trip to every request."""
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def copy_stream(
    recv: Callable[[int], bytes], send: Callable[[bytes], None], count: Callable[[int], None]
) -> None:
    """Copy until EOF, blocking on ``recv``: one such reader per direction. A select loop over
    paramiko channels cost tens of milliseconds per connection in measurements; this does not."""
    while data := recv(BUFSIZE):
        count(len(data))
        send(data)


def half_close(sock: socket.socket) -> None:
    """No more bytes for the service: it reads EOF, as after ``ssh -R`` passes a remote EOF on."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def pipe_to_remote(sock: socket.socket, stream: ByteStream, count: Callable[[int], None]) -> None:
    """Raw copy service -> remote until the service's EOF, then pass the half-close on."""
    copy_stream(sock.recv, stream.write_all, count)
    with contextlib.suppress(OSError, EOFError):
        stream.half_close()


# Deadlines are polled at least this often so a stuck read never outlives the header deadline much.
_MIN_WAIT = 0.05


def recv_until(
    stream: ByteStream, deadline: float | None, clock: Callable[[], float]
) -> bytes | None:
    """One read from the stream, or None once ``deadline`` (same clock as ``clock``) passed."""
    timeout = None if deadline is None else max(_MIN_WAIT, deadline - clock())
    try:
        return stream.read(BUFSIZE, timeout)
    except TimeoutError:
        return None


def close_socket(sock: socket.socket) -> None:
    """Shut down and close, whatever state the socket is in (teardown must not fail). The
    shutdown wakes a thread blocked reading the socket; a non-blocking socket has none (the relay
    loop polls, and hears of a close from elsewhere by message), so it is only closed."""
    if sock.getblocking():
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
