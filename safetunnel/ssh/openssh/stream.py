"""A connection that OpenSSH delivered on the gate's unix socket, as a ByteStream."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable


class SocketStream:
    """One accepted unix-socket connection; the pump sees only the ByteStream methods.

    OpenSSH does not pass the remote client's address through a unix socket, so ``origin`` is
    the address the server listens on with port 0 ("somewhere behind this listener"): with a
    loopback bind every client is on the SSH host itself, as the paramiko engine reports too.
    """

    def __init__(self, sock: socket.socket, origin: tuple[str, int]) -> None:
        self._sock = sock
        self._origin = origin
        self._lock = threading.Lock()
        self._closed = False

    @property
    def origin(self) -> tuple[str, int]:
        return self._origin

    def raw_socket(self) -> socket.socket:
        """The socket itself: a pump may move its bytes without the methods below (one thread
        polling both ends), closing it only through :meth:`close`."""
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # The socket stays blocking: a socket timeout would apply to the writer thread's
        # sendall too, so a read's timeout is a poll of its own.
        try:
            if timeout is not None and not self._readable(timeout):
                raise TimeoutError(f"no input within {timeout}s")
            return self._sock.recv(max_bytes)
        except ConnectionResetError:
            return b""
        except OSError as err:
            if self._closed and not isinstance(err, TimeoutError):
                return b""
            raise

    def _readable(self, timeout: float) -> bool:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))

    def write_all(self, data: bytes) -> None:
        self._sock.sendall(data)

    def write_nowait(self, data: bytes) -> bool:
        """Send ``data`` only as far as the socket takes it at once (a closing alert just
        before a close); True when all of it went. Never waits on a peer that reads nothing."""
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT) == len(data)
        except OSError:
            return False

    def half_close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._sock.getblocking():  # a relay pump's socket is non-blocking: no reader to wake
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
        self._sock.close()

    def discard_input(self) -> None:
        """Unread input stays in the kernel's socket buffer, bounded by it, and the SSH window
        behind it stops: nothing to drop here."""

    def notify_on_input(self, callback: Callable[[], None]) -> bool:
        """A reader thread per connection is what the prototype measured; no notifications."""
        return False
