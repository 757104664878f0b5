"""A paramiko channel as a :class:`~safetunnel.ssh.engine.ByteStream`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import paramiko


class _InputEvent:
    """Stands in for the ``threading.Event`` that paramiko's channel input buffer sets on data,
    EOF and close (``BufferedPipe.set_event``): each ``set`` calls the callback.

    Handing a connection to a pool thread at MSG_CHANNEL_OPEN, only for it to block until the
    first data packet, cost one extra thread wake-up per connection on the transport thread;
    profiled, the lock releases that wake waiting threads were about half of that thread's GIL
    time. ``set`` runs on the transport thread inside the buffer's lock: hand off, never block.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def set(self) -> None:
        self._callback()

    def detach(self) -> None:
        """Forget the callback: it refers back to the channel's reader, and that reference cycle
        would keep a closed channel (and all the input it buffered) alive until a full garbage
        collection."""
        self._callback = _ignore

    def clear(self) -> None:
        """Nothing to clear: every ``set`` is delivered."""

    def is_set(self) -> bool:
        return False


def _ignore() -> None:
    """The input callback of a closed stream."""


class ChannelStream:
    """Wraps one forwarded ``paramiko.Channel``; the pump sees only the ByteStream methods."""

    def __init__(self, channel: paramiko.Channel, origin: tuple[str, int]) -> None:
        self._channel = channel
        self._origin = origin
        self._event: _InputEvent | None = None

    @property
    def origin(self) -> tuple[str, int]:
        return self._origin

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._channel.settimeout(timeout)
        try:
            return self._channel.recv(max_bytes)
        finally:
            if timeout is not None:
                self._channel.settimeout(None)

    def write_all(self, data: bytes) -> None:
        self._channel.sendall(data)

    def write_nowait(self, data: bytes) -> bool:
        """Send ``data`` only if the peer's window and one packet take all of it now (a closing
        alert just before a close); False, nothing sent, otherwise. Never waits on a peer that
        reads nothing."""
        channel = self._channel
        if channel.closed or channel.eof_sent:
            return False
        if len(data) > min(channel.out_window_size, channel.out_max_packet_size):
            return False
        try:
            channel.sendall(data)
        except (OSError, EOFError):
            return False
        return True

    def half_close(self) -> None:
        self._channel.shutdown_write()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._channel.close()  # delivers the close to the callback one last time
        # Input nobody will read: up to a window's worth (2 MiB) per channel, otherwise held
        # until the peer's close arrives, or for as long as anything refers to the channel.
        self.discard_input()
        if self._event is not None:
            self._event.detach()

    def discard_input(self) -> None:
        # paramiko feeds every data packet into the input buffer until the peer closes; the
        # peer may send up to a whole window (2 MiB) that nobody reads. Not reading also means
        # the window is never replenished, so the sender stops there.
        buffer = self._channel.in_buffer
        with contextlib.suppress(Exception):
            buffer.empty()
        setattr(buffer, "feed", _drop)  # noqa: B010 - replaces the bound method on this buffer

    def notify_on_input(self, callback: Callable[[], None]) -> bool:
        in_buffer: Any = getattr(self._channel, "in_buffer", None)
        if in_buffer is None or not hasattr(in_buffer, "set_event"):
            return False
        # set_event fires at once when input is already waiting (checked under the buffer's
        # lock), so re-arming after a read never loses a wake-up.
        self._event = _InputEvent(callback)
        in_buffer.set_event(self._event)
        return True


def _drop(data: bytes | str) -> None:
    """An input buffer's ``feed`` once nothing will read it: the data is thrown away."""
