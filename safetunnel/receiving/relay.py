"""One local client's connection carried to the share over one SSH channel.

The preamble (``SAFETUNNEL <token>\\n``) goes into the channel before any byte of the client's,
so the client needs to know nothing of tokens. Two named threads copy the bytes, one per
direction, with blocking reads (no select loop over paramiko channels: it adds latency).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Protocol

READ_SIZE = 128 * 1024
JOIN_TIMEOUT = 5.0


class Channel(Protocol):
    """What the relay uses of a paramiko channel (a socket-like byte stream)."""

    def sendall(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class Relay:
    """Copies bytes both ways until both sides are done; :meth:`close` is the one teardown."""

    def __init__(
        self, client: socket.socket, channel: Channel, name: str, done: Callable[[Relay], None]
    ) -> None:
        self._client = client
        self._channel = channel
        self._done = done
        self._lock = threading.Lock()
        self._running = 2
        self._closed = False
        self._threads = [
            threading.Thread(target=self._up, name=f"{name}-up"),
            threading.Thread(target=self._down, name=f"{name}-down"),
        ]

    def start(self, preamble: bytes) -> None:
        """Present the token, then relay. The preamble is sent before the client is read."""
        self._channel.sendall(preamble)
        for thread in self._threads:
            thread.start()

    def _up(self) -> None:
        """Client -> share; the client's EOF becomes the channel's."""
        try:
            while data := self._client.recv(READ_SIZE):
                self._channel.sendall(data)
            self._channel.shutdown_write()
        except (OSError, EOFError):  # a reset, or close(): the other direction ends too
            with contextlib.suppress(OSError, EOFError):
                self._channel.close()
        finally:
            self._finished()

    def _down(self) -> None:
        """Share -> client; the share's EOF becomes the client's."""
        try:
            while data := self._channel.recv(READ_SIZE):
                self._client.sendall(data)
            self._client.shutdown(socket.SHUT_WR)
        except (OSError, EOFError):
            # A reset (ssh closed a channel the server refused, with the preamble unread), or
            # close(): the client must see its connection end, not wait on it forever.
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RDWR)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self.close()
            self._done(self)

    def close(self) -> None:
        """Close both ends (which ends both threads) and join them. Idempotent."""
        with self._lock:
            first, self._closed = not self._closed, True
        if first:
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RDWR)
            self._client.close()
            self._channel.close()
        for thread in self._threads:
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT)
