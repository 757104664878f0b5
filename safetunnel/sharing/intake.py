"""How a tunnel takes in new streams: the handler an engine calls, which on an engine that
offers its listening socket lets the relay loop accept as well."""

from __future__ import annotations

import socket
from collections.abc import Callable

from safetunnel.sharing.relayloop import RelayLoop
from safetunnel.ssh.engine import ByteStream, StreamHandler


class LoopIntake:
    """The tunnel's stream handler. Accepting on the relay loop itself (instead of a thread
    that hands each connection over) saves a wake-up per connection, and the GIL the accepting
    thread took from the loop at every system call: measured at 50 clients, the loop's writes
    and connects waited on it."""

    def __init__(self, on_stream: StreamHandler, loop: RelayLoop) -> None:
        self._on_stream = on_stream
        self._loop = loop

    def __call__(self, stream: ByteStream) -> None:
        self._on_stream(stream)

    def accept_on(
        self, listener: socket.socket, wrap: Callable[[socket.socket], ByteStream]
    ) -> bool:
        def take(conn: socket.socket) -> None:
            self._on_stream(wrap(conn))

        self._loop.serve(listener, take)
        return True
