"""Non-blocking socket pieces of the relay pump: an outbox that sends what a socket takes now,
and a connect to the service that does not wait."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

from safetunnel.sharing import pumpio

Buffer = bytes | bytearray | memoryview

# How long the service may take to accept a connection, as the blocking connect allowed.
CONNECT_TIMEOUT = 5.0


class Pending(pumpio.Outbox):
    """Bytes waiting for one non-blocking destination, in order. ``send(data)`` sends what the
    destination takes now and returns how much, or raises BlockingIOError when it takes
    nothing. ``flush`` (the threaded pump's contract) sends only what goes now as well: even a
    refusal's delayed answer must not wait for a client that reads nothing."""

    def __init__(
        self, send: Callable[[Buffer], int], after_send: Callable[[int], None] | None = None
    ) -> None:
        super().__init__(send)
        self._send_now = send
        self._after_send = after_send
        self.size = 0

    @classmethod
    def for_socket(
        cls, sock: socket.socket, after_send: Callable[[socket.socket, int], None] | None = None
    ) -> Pending:
        """``after_send(sock, count)`` follows every call that sent ``count`` bytes."""
        return cls(sock.send, None if after_send is None else lambda n: after_send(sock, n))

    def put(self, data: Buffer) -> None:
        if data:
            self._queue.append(data)
            self.size += len(data)

    def send_some(self) -> int:
        """Send what the destination takes now; the rest waits for it to be ready. Returns how
        many bytes went."""
        sent = 0
        while self._queue:
            head = self._queue[0]
            try:
                count = self._send_now(head)
            except BlockingIOError:
                break
            sent += count
            self.size -= count
            if count < len(head):
                self._queue[0] = memoryview(head)[count:]
                break
            self._queue.popleft()
        if sent and self._after_send is not None:
            self._after_send(sent)
        return sent

    def flush(self) -> None:
        with self._lock:
            self.send_some()


def connect_later(address: tuple[str, int]) -> socket.socket:
    """Start connecting to the local service; the socket is writable once connected, and its
    ``SO_ERROR`` then says whether it worked (see :func:`connect_error`). The service's address is
    always a literal loopback address, so there is no name to resolve. Nagle is off: a gated
    reply is often one small write."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
    except BaseException:
        sock.close()
        raise
    return sock


def connect_outcome(sock: socket.socket) -> tuple[bool, OSError | None]:
    """(over, error) of a connect started by :func:`connect_later`. On loopback the handshake
    (or the refusal) usually happens inside the connect call itself: asking at once saves a
    loop round per connection. ``SO_ERROR`` is cleared by reading it, so it is read here only."""
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        return True, OSError(code, os.strerror(code))
    try:
        sock.getpeername()
    except OSError:
        return False, None
    return True, None
