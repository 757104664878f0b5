"""The remote end of a connection on the relay loop: a socket the loop polls, or a paramiko
channel that tells the loop itself when it may be ready.

A :class:`~safetunnel.sharing.pumploop.LoopPump` reads, writes and watches its remote end only
through this interface, so the one pump serves both engines: the OpenSSH engine's unix sockets
and the paramiko engine's channels. A thread per channel direction cost the paramiko engine
more in GIL hand-offs than in the work once many connections ran at once (strace, 50 clients:
~180 futex calls per connection); on the loop, one thread does every connection's steps.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol

from safetunnel.sharing.looptypes import READ, STREAM, WRITE, LoopClient
from safetunnel.sharing.pumpsock import Buffer, Pending
from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.ssh.engine import ByteStream


class LoopRemote(Protocol):
    """One connection's remote end, as its pump on the loop uses it."""

    fd: int  # what the loop reports this end as (``STREAM`` for one it cannot poll)
    out: Pending  # what waits to be sent to the remote

    def open(self, loop: RelayLoop, client: LoopClient) -> None:
        """Make reads and writes non-blocking, and tell ``client`` on ``loop`` of what it
        watches; called on the loop before the first step."""

    def recv(self, max_bytes: int) -> bytes | None:
        """What has arrived, ``b""`` at EOF (or a reset), None when nothing has yet."""

    def watch(self, mask: int) -> None:
        """Be told (``on_ready``) when the end is ready for ``mask`` (READ/WRITE; 0: never)."""

    def seen(self) -> None:
        """The loop is running a step for this end: later changes must tell it again."""

    def forget(self) -> None:
        """The pump is over: let go of it and of the loop. Holding them made a reference cycle
        (pump, end, pump), which kept every connection's objects for the cyclic collector."""


class NonBlockingStream(Protocol):
    """A stream the loop cannot poll that says when it changes (see ChannelStream)."""

    def watch_nowait(self, on_input: Callable[[], None], on_window: Callable[[], None]) -> None: ...

    def read_nowait(self, max_bytes: int) -> bytes | None: ...

    def send_nowait(self, data: Buffer) -> int: ...

    def readable(self) -> bool: ...

    def writable(self) -> bool: ...


class SocketRemote:
    """A remote end the loop polls: a connected (unix or TCP) socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.fd = sock.fileno()
        self.out = Pending.for_socket(sock)
        self._mask = 0
        self._watcher: Callable[[int], None] = _unopened

    def open(self, loop: RelayLoop, client: LoopClient) -> None:
        self._sock.setblocking(False)
        self._watcher = lambda mask: loop.watch(client, self.fd, mask)

    def recv(self, max_bytes: int) -> bytes | None:
        try:
            return self._sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            return b""

    def watch(self, mask: int) -> None:
        if mask != self._mask:
            self._mask = mask
            self._watcher(mask)

    def seen(self) -> None:
        """poll reports a socket for as long as it is ready: nothing to reset."""

    def forget(self) -> None:
        self._watcher = _unopened


class StreamRemote:
    """A remote end that calls back on change (a paramiko channel): each change pokes the loop,
    once until the loop has seen it, and only for what the pump watches."""

    fd = STREAM

    def __init__(self, stream: NonBlockingStream) -> None:
        self._stream = stream
        self.out = Pending(stream.send_nowait)
        self._mask = 0
        self._poked = False  # a poke is queued that the loop has not run yet
        self._poke: Callable[[], None] = _unopened_poke

    def open(self, loop: RelayLoop, client: LoopClient) -> None:
        self._poke = lambda: loop.poke(client)
        self._stream.watch_nowait(self._input, self._window)

    def recv(self, max_bytes: int) -> bytes | None:
        return self._stream.read_nowait(max_bytes)

    def watch(self, mask: int) -> None:
        """Set first, then look: a change in between pokes twice (harmless), never not at all.
        What is already there pokes now, as poll would report a ready socket."""
        self._mask = mask
        stream = self._stream
        if (mask & READ and stream.readable()) or (mask & WRITE and stream.writable()):
            self._changed()

    def seen(self) -> None:
        self._poked = False

    def forget(self) -> None:
        self._mask = 0
        self._poke = _unopened_poke

    def _input(self) -> None:
        if self._mask & READ:
            self._changed()

    def _window(self) -> None:
        if self._mask & WRITE:
            self._changed()

    def _changed(self) -> None:
        """On the transport thread (or the loop's): hand off, never block."""
        if not self._poked:
            self._poked = True
            self._poke()


def _unopened(mask: int) -> None:
    raise RuntimeError("a remote end is watched before it was opened")


def _unopened_poke() -> None:
    """Nothing to tell before the end is opened: opening looks at what is waiting."""


def loop_remote(stream: ByteStream) -> LoopRemote | None:
    """The remote end of ``stream`` on a relay loop, or None when the loop cannot carry it (a
    stream that is neither a plain socket nor a channel, such as TLS: it keeps a thread of its
    own)."""
    raw = getattr(stream, "raw_socket", None)
    sock = raw() if callable(raw) else None
    if isinstance(sock, socket.socket):
        return SocketRemote(sock)
    if callable(getattr(stream, "watch_nowait", None)):
        nonblocking: NonBlockingStream = stream  # type: ignore[assignment]
        return StreamRemote(nonblocking)
    return None
