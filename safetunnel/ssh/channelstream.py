"""A paramiko channel as a :class:`~safetunnel.ssh.engine.ByteStream`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

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


class _WindowCondition(threading.Condition):
    """Stands in for a channel's ``out_buffer_cv``, which paramiko notifies when the peer opens
    its window (or the channel closes): each ``notify_all`` also calls the callback, under the
    channel's lock on the transport thread, so it must only hand off."""

    def __init__(self, lock: Any, callback: Callable[[], None]) -> None:
        super().__init__(lock)
        self.callback = callback

    def notify_all(self) -> None:
        super().notify_all()
        self.callback()


class ChannelStream:
    """Wraps one forwarded ``paramiko.Channel``; the pump sees only the ByteStream methods."""

    def __init__(self, channel: paramiko.Channel, origin: tuple[str, int]) -> None:
        self._channel = channel
        self._origin = origin
        self._event: _InputEvent | None = None
        self._window: _WindowCondition | None = None
        # Callbacks are installed and the stream closed under this lock: one installed after the
        # close had detached the others would hold the reader (a cycle) until the collector ran.
        self._lock = threading.Lock()
        self._closed = False

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

    # -- for a relay loop, where nothing may wait --------------------------------------------------

    def watch_nowait(self, on_input: Callable[[], None], on_window: Callable[[], None]) -> None:
        """From now on reads and writes never wait; ``on_input`` is called on every input, EOF
        and close, ``on_window`` whenever the peer opens its window (and at a close). Both run
        on the transport thread: they hand off, never block."""
        channel = self._channel
        channel.settimeout(0.0)
        with self._lock:
            if self._closed:
                return  # reads see the close; nothing will change any more
            self._window = _WindowCondition(channel.lock, on_window)
            channel.out_buffer_cv = self._window
        self.notify_on_input(on_input)

    def read_nowait(self, max_bytes: int) -> bytes | None:
        """Up to ``max_bytes`` of what is waiting; ``b""`` at EOF; None while nothing is."""
        try:
            with _connection_errors():  # the window adjust it may send
                return self._channel.recv(max_bytes)
        except TimeoutError:  # paramiko's socket.timeout: nothing waiting
            return None

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the peer's window takes now, in as many packets as that needs; how much
        went. BlockingIOError when the window is shut."""
        channel, view, sent = self._channel, memoryview(data), 0
        while sent < len(view):
            # paramiko writes what it is given into its packet as it is: a view needs no copy.
            chunk = cast(bytes, view[sent : sent + channel.out_max_packet_size])
            try:
                with _connection_errors():
                    count = channel.send(chunk)
            except TimeoutError:
                if sent:
                    break
                raise BlockingIOError("the channel's window is shut") from None
            if count == 0:  # paramiko's answer once EOF was sent: nothing can go any more
                raise BrokenPipeError("the channel takes no more data")
            sent += count
        return sent

    def readable(self) -> bool:
        """Input, EOF or a close is waiting: a read would not come back empty-handed."""
        channel = self._channel
        return bool(channel.in_buffer.read_ready() or channel.eof_received or channel.closed)

    def writable(self) -> bool:
        """The peer's window is open (or the channel closed: a send would say so)."""
        channel = self._channel
        return bool(channel.out_window_size or channel.closed)

    def half_close(self) -> None:
        with _connection_errors():
            self._channel.shutdown_write()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(Exception):
            self._channel.close()  # delivers the close to the callback one last time
        # Input nobody will read: up to a window's worth (2 MiB) per channel, otherwise held
        # until the peer's close arrives, or for as long as anything refers to the channel.
        self.discard_input()
        if self._event is not None:
            self._event.detach()
        if self._window is not None:
            self._window.callback = _ignore

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
        with self._lock:
            if self._closed:
                return False  # the caller reads now, and sees the close
            self._event = _InputEvent(callback)
            in_buffer.set_event(self._event)
        return True


@contextlib.contextmanager
def _connection_errors() -> Iterator[None]:
    """paramiko's own errors in a send (a rekey that never finished, say) as the connection
    error that ends one connection, like a socket's, rather than a bug in the pump."""
    try:
        yield
    except paramiko.SSHException as exc:
        raise ConnectionAbortedError(str(exc)) from exc


def _drop(data: bytes | str) -> None:
    """An input buffer's ``feed`` once nothing will read it: the data is thrown away."""
